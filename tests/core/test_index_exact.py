"""ExactIndex (the numpy reference), the shared input rules of every backend, and streaming ingestion."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from jp_rerank.index import (
    ExactIndex,
    IngestReport,
    Record,
    SearchHit,
    ingest,
    make_index,
)
from jp_rerank.testing import GaussianMixture

DIM = 16


@pytest.fixture
def data() -> tuple[list[str], np.ndarray, list[str], list[dict[str, str | int | bool]]]:
    vectors = GaussianMixture(DIM, n_clusters=8, seed=3).sample(300, seed=1)
    ids = [f"doc-{i:03d}" for i in range(300)]
    texts = [f"本文{i}" for i in range(300)]
    metas: list[dict[str, str | int | bool]] = [
        {"lang": "ja" if i % 3 else "en", "year": 2000 + i % 4, "flag": i % 2 == 0} for i in range(300)
    ]
    return ids, vectors, texts, metas


def brute_force(vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    """Independent reference: float64 cosine, stable sort (ties by position = by id here)."""
    v = vectors.astype(np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    q = query.astype(np.float64) / np.linalg.norm(query)
    return np.argsort(-(v @ q), kind="stable")[:k].tolist()


def test_search_matches_brute_force_and_returns_frozen_float_hits(data):
    ids, vectors, texts, metas = data
    index = ExactIndex(DIM)
    index.add(ids, vectors, texts, metas)
    queries = GaussianMixture(DIM, n_clusters=8, seed=3).sample(20, seed=2)
    results = index.search_many(queries, k=15)
    assert len(results) == 20
    for query, hits in zip(queries, results, strict=True):
        assert [h.id for h in hits] == [ids[i] for i in brute_force(vectors, query, 15)]
        assert all(type(h.score) is float for h in hits)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert hits[0].text == texts[ids.index(hits[0].id)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        results[0][0].score = 2.0  # type: ignore[misc]
    single = index.search(queries[0], k=15)  # same hits; BLAS may round a 1-row product differently
    assert [h.id for h in single] == [h.id for h in results[0]]
    assert [h.score for h in single] == pytest.approx([h.score for h in results[0]], rel=1e-5)


def test_cosine_normalises_copies_and_ip_uses_raw_products():
    raw = np.array([[3.0, 4.0], [1.0, 0.0]])
    before = raw.copy()
    cos = ExactIndex(2, metric="cosine")
    cos.add(["a", "b"], raw, ["", ""])
    np.testing.assert_array_equal(raw, before)  # caller data untouched
    hits = cos.search(np.array([10.0, 0.0]), k=2)
    assert [(h.id, round(h.score, 5)) for h in hits] == [("b", 1.0), ("a", 0.6)]
    ip = ExactIndex(2, metric="ip")
    ip.add(["a", "b"], raw, ["", ""])
    assert [(h.id, round(h.score, 5)) for h in ip.search([10.0, 0.0], k=2)] == [("a", 30.0), ("b", 10.0)]


def test_equal_scores_are_ordered_by_id_even_at_the_cut_off():
    index = ExactIndex(2)
    same = [[1.0, 0.0]] * 4
    index.add(["d", "b", "c", "a"], same + [[0.0, 1.0]] * 0, ["", "", "", ""])
    assert [h.id for h in index.search([1.0, 0.0], k=2)] == ["a", "b"]
    index.add(["z"], [[2.0, 0.1]], [""])
    assert [h.id for h in index.search([1.0, 0.0], k=5)] == ["a", "b", "c", "d", "z"]


def test_add_refuses_stored_ids_upsert_replaces_delete_counts(data):
    ids, vectors, texts, metas = data
    index = ExactIndex(DIM)
    index.add(ids[:10], vectors[:10], texts[:10], metas[:10])
    with pytest.raises(ValueError, match=r"already in the index.*upsert"):
        index.add(["new", ids[3]], vectors[:2], ["x", "y"])
    assert len(index) == 10
    assert "new" not in index
    index.upsert([ids[3], "new"], vectors[[20, 21]], ["replaced", "added"], [{"lang": "xx"}, None])
    assert len(index) == 11
    assert index.get([ids[3]]) == [Record(ids[3], "replaced", {"lang": "xx"})]
    assert index.search(vectors[20], k=1)[0].id == ids[3]
    assert index.delete([ids[0], "missing", ids[1]]) == 2
    assert index.delete(["missing"]) == 0
    assert len(index) == 9
    assert ids[0] not in index
    assert all(h.id != ids[0] for h in index.search(vectors[0], k=9))
    index.add([ids[0]], vectors[:1], ["back"])  # a deleted id can be added again
    assert index.search(vectors[0], k=1)[0] == SearchHit(ids[0], pytest.approx(1.0), "back", {})
    with pytest.raises(KeyError, match="'nope' is not in the index"):
        index.get(["nope"])


def test_metadata_filter_equality_and_conjunction(data):
    ids, vectors, texts, metas = data
    index = ExactIndex(DIM)
    index.add(ids, vectors, texts, metas)
    query = vectors[7]
    where = {"lang": "en", "year": 2001}
    keep = [i for i, m in enumerate(metas) if m["lang"] == "en" and m["year"] == 2001]
    hits = index.search(query, k=5, where=where)
    assert [h.id for h in hits] == [ids[keep[i]] for i in brute_force(vectors[keep], query, 5)]
    assert all(h.metadata["lang"] == "en" and h.metadata["year"] == 2001 for h in hits)
    assert index.search(query, k=5, where={"lang": "fr"}) == []
    assert index.search(query, k=3, where={}) == index.search(query, k=3)
    # bool and int are different values, as in Chroma
    assert all(h.metadata["flag"] is True for h in index.search(query, k=50, where={"flag": True}))
    assert index.search(query, k=5, where={"flag": 1}) == []


def test_returned_and_given_metadata_are_copies(data):
    ids, vectors, texts, _ = data
    meta = {"lang": "ja"}
    index = ExactIndex(DIM)
    index.add(ids[:1], vectors[:1], texts[:1], [meta])
    meta["lang"] = "changed"
    hit = index.search(vectors[0], k=1)[0]
    hit.metadata["lang"] = "mutated"
    assert index.search(vectors[0], k=1)[0].metadata == {"lang": "ja"}


def test_empty_index_and_empty_inputs():
    index = ExactIndex(4)
    assert index.search([1.0, 0, 0, 0], k=3) == []
    assert index.search_many(np.ones((2, 4)), k=3) == [[], []]
    assert index.search_many(np.empty((0, 4)), k=3) == []
    index.add([], np.empty((0, 4)), [])
    assert len(index) == 0
    assert index.delete([]) == 0
    index.add(["a"], [[1.0, 0, 0, 0]], ["x"])
    assert [h.id for h in index.search([1.0, 0, 0, 0], k=10)] == ["a"]  # k above the count


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda ix: ix.add(["a"], np.ones((1, 3)), ["x"]), ValueError, "dimension 3 but the index has dimension 4"),
        (lambda ix: ix.add(["a"], np.ones(4), ["x"]), ValueError, r"shape \(n, 4\)"),
        (lambda ix: ix.add(["a"], [[1.0, np.nan, 0, 0]], ["x"]), ValueError, "row 0 contains NaN or infinite"),
        (lambda ix: ix.add(["a"], [[1.0, np.inf, 0, 0]], ["x"]), ValueError, "NaN or infinite"),
        (lambda ix: ix.add(["a"], [[1e300, 1, 0, 0]], ["x"]), ValueError, "after casting to float32"),
        (lambda ix: ix.add(["a"], [[0.0, 0, 0, 0]], ["x"]), ValueError, "zero length"),
        (lambda ix: ix.add(["a"], [["1", "2", "3", "4"]], ["x"]), ValueError, "must be numeric"),
        (lambda ix: ix.add(["a", "a"], np.ones((2, 4)), ["x", "y"]), ValueError, "'a' more than once"),
        (lambda ix: ix.upsert(["a", "a"], np.ones((2, 4)), ["x", "y"]), ValueError, "more than once"),
        (lambda ix: ix.add(["a", "b"], np.ones((1, 4)), ["x", "y"]), ValueError, "same length"),
        (lambda ix: ix.add(["a"], np.ones((1, 4)), ["x", "y"]), ValueError, "same length"),
        (lambda ix: ix.add(["a"], np.ones((1, 4)), ["x"], [{}, {}]), ValueError, "same length"),
        (lambda ix: ix.add("ab", np.ones((2, 4)), ["x", "y"]), TypeError, "not a single str"),
        (lambda ix: ix.add([1], np.ones((1, 4)), ["x"]), TypeError, r"ids\[0\] must be a str"),
        (lambda ix: ix.add([""], np.ones((1, 4)), ["x"]), ValueError, "empty string"),
        (lambda ix: ix.add(["a"], np.ones((1, 4)), [None]), TypeError, r"texts\[0\] must be a str"),
        (lambda ix: ix.add(["a"], np.ones((1, 4)), ["x"], [{"k": None}]), TypeError, "got NoneType"),
        (lambda ix: ix.add(["a"], np.ones((1, 4)), ["x"], [{"k": [1]}]), TypeError, "got list"),
        (lambda ix: ix.add(["a"], np.ones((1, 4)), ["x"], [{"k": float("nan")}]), ValueError, "must be finite"),
        (lambda ix: ix.add(["a"], np.ones((1, 4)), ["x"], {"k": "v"}), TypeError, "not a single mapping"),
        (lambda ix: ix.search(np.ones(4), k=0), ValueError, "k must be positive"),
        (lambda ix: ix.search(np.ones(4), k=-2), ValueError, "k must be positive"),
        (lambda ix: ix.search(np.ones(4), k=True), TypeError, "k must be an int"),
        (lambda ix: ix.search(np.ones(4), k=2.5), TypeError, "k must be an int"),
        (lambda ix: ix.search(np.ones(5)), ValueError, "dimension 5 but the index has dimension 4"),
        (lambda ix: ix.search(np.ones((1, 4))), ValueError, r"query must have shape \(4,\)"),
        (lambda ix: ix.search_many(np.ones(4)), ValueError, r"queries must have shape \(n, 4\)"),
        (lambda ix: ix.search([np.nan, 1, 1, 1]), ValueError, "NaN"),
        (lambda ix: ix.search(np.ones(4), where={"k": None}), TypeError, r"where\['k'\]"),
        (lambda ix: ix.search(np.ones(4), where=[("k", 1)]), TypeError, "where must be a mapping"),
        (lambda ix: ix.delete("a"), TypeError, "not a single str"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_error(call, error, match):
    index = ExactIndex(4)
    index.add(["z"], [[0.0, 1.0, 0.0, 0.0]], ["kept"])
    with pytest.raises(error, match=match):
        call(index)
    assert [r.id for r in index.records()] == ["z"]  # a rejected call changes nothing


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"dim": 0}, "dim must be positive"), ({"dim": 4, "metric": "l2"}, "metric must be one of")],
)
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExactIndex(**kwargs)


def test_records_iterates_everything_in_pages(data):
    ids, vectors, texts, metas = data
    index = ExactIndex(DIM)
    index.add(ids, vectors, texts, metas)
    index.delete(ids[:5])
    got = list(index.records(batch_size=7))
    assert [r.id for r in got] == ids[5:]
    assert got[0] == Record(ids[5], texts[5], metas[5])


def test_make_index_names_backends():
    assert isinstance(make_index("exact", 8, embedder_id="m"), ExactIndex)
    assert make_index("exact", 8, embedder_id="m").embedder_id == "m"
    with pytest.raises(ValueError, match="unknown vector backend 'annoy'"):
        make_index("annoy", 8)


def test_importing_the_package_does_not_import_faiss_or_chromadb():
    code = "import sys, jp_rerank.index; print(sorted(m for m in ('faiss', 'chromadb', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------------ ingestion


class CountingEmbedder:
    """Embeds texts deterministically and records how far the record stream had been read at each call."""

    def __init__(self, vectors: dict[str, np.ndarray], pulled: list[int]) -> None:
        self.vectors, self.pulled, self.calls = vectors, pulled, []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append((len(texts), self.pulled[0]))
        return np.stack([self.vectors[t] for t in texts])


def test_ingest_streams_in_bounded_batches(data):
    ids, vectors, texts, metas = data
    pulled = [0]

    def stream() -> Iterator[tuple[str, str, dict[str, str | int | bool]]]:
        for i in range(len(ids)):
            pulled[0] += 1
            yield ids[i], texts[i], metas[i]

    embed = CountingEmbedder(dict(zip(texts, vectors, strict=True)), pulled)
    index = ExactIndex(DIM, embedder_id="toy")
    report = ingest(index, stream(), embed, batch_size=64, progress=False)
    assert report == IngestReport(300, 5, 0, pytest.approx(report.seconds))
    assert [n for n, _ in embed.calls] == [64, 64, 64, 64, 44]
    # at each embedding call the stream had been read only up to the end of that batch
    assert [seen for _, seen in embed.calls] == [64, 128, 192, 256, 300]
    reference = ExactIndex(DIM)
    reference.add(ids, vectors, texts, metas)
    assert index.search(vectors[9], k=5) == reference.search(vectors[9], k=5)


def test_ingest_accepts_records_tuples_and_mappings_and_upserts(data, capsys):
    ids, vectors, texts, _ = data
    lookup = dict(zip(texts, vectors, strict=True))

    def embed(batch: list[str]) -> np.ndarray:
        return np.stack([lookup[t] for t in batch])

    items = [
        Record(ids[0], texts[0], {"lang": "ja"}),
        (ids[1], texts[1]),
        (ids[2], texts[2], {"lang": "en"}),
        {"id": ids[3], "text": texts[3]},
    ]
    index = ExactIndex(DIM)
    ingest(index, items, embed, batch_size=3, total=4, progress=True)
    assert "indexing" in capsys.readouterr().err  # tqdm bar on stderr
    assert [r.id for r in index.records()] == ids[:4]
    assert index.get([ids[2]])[0].metadata == {"lang": "en"}
    with pytest.raises(ValueError, match="already in the index"):
        ingest(index, items, embed, progress=False)
    report = ingest(index, items, embed, mode="upsert", progress=False)  # re-running with upsert is safe
    assert report.n_records == 4
    assert len(index) == 4


def test_ingest_rejects_bad_records_and_bad_embeddings(data):
    ids, vectors, texts, _ = data
    index = ExactIndex(DIM)
    with pytest.raises(TypeError, match="record 1 must be a Record"):
        ingest(index, [(ids[0], texts[0]), "just text"], lambda t: vectors[: len(t)], progress=False)
    with pytest.raises(TypeError, match="record 0 is a mapping without 'id' and 'text'"):
        ingest(index, [{"text": "x"}], lambda t: vectors[: len(t)], progress=False)
    with pytest.raises(ValueError, match=r"embed_documents returned shape \(2, 16\) for 3 texts"):
        ingest(index, zip(ids[:3], texts[:3], strict=False), lambda t: vectors[:2], progress=False)
    with pytest.raises(ValueError, match="NaN"):
        ingest(index, zip(ids[:3], texts[:3], strict=False), lambda t: np.full((len(t), DIM), np.nan), progress=False)
    with pytest.raises(ValueError, match="mode must be"):
        ingest(index, [], lambda t: vectors[: len(t)], mode="replace", progress=False)  # type: ignore[arg-type]
    assert len(index) == 0


def test_gaussian_mixture_is_reproducible_unit_and_clustered():
    mix = GaussianMixture(32, n_clusters=5, rank=4, seed=1)
    a = np.concatenate(list(mix.iter_samples(250, seed=3, chunk=100)))
    np.testing.assert_array_equal(a, np.concatenate(list(mix.iter_samples(250, seed=3, chunk=100))))
    assert not np.array_equal(a, mix.sample(250, seed=4))
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    nearest_centre = (a @ mix.centres().T).max(axis=1)
    assert nearest_centre.mean() > 0.5  # points sit near a centre, unlike uniform random vectors in 32-d
    with pytest.raises(ValueError, match="rank 64 exceeds dim 32"):
        GaussianMixture(32, n_clusters=5, rank=64).sample(3, seed=0)
