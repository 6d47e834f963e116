"""FaissIndex (flat, HNSW, IVF-PQ) against the exact numpy index.

Recall data: 20,000 unit vectors in 64 dimensions from a mixture of 200 Gaussians (spread 1.0), 100 queries from
the same mixture (other seed). faiss runs single-threaded here so HNSW graphs and k-means are reproducible and
a loaded CI machine does not slow OpenMP down.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from jp_rerank.index import ExactIndex, FaissIndex, IndexCorruptedError, SearchHit, ingest, load_index, make_index
from jp_rerank.snapshots import read_snapshot
from jp_rerank.testing import GaussianMixture

faiss = pytest.importorskip("faiss")
pytestmark = pytest.mark.usefixtures("faiss_single_thread")

DIM = 64
N = 20_000


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], np.ndarray, list[str], list[dict[str, str | int]], np.ndarray]:
    mix = GaussianMixture(DIM, n_clusters=200, spread=1.0, seed=0)
    vectors = mix.sample(N, seed=1)
    queries = mix.sample(100, seed=2)
    ids = [f"p{i:05d}" for i in range(N)]
    texts = [f"段落{i}" for i in range(N)]
    metas: list[dict[str, str | int]] = [{"lang": "ja" if i % 4 else "en", "shard": i % 97} for i in range(N)]
    return ids, vectors, texts, metas, queries


@pytest.fixture(scope="module")
def exact(corpus) -> ExactIndex:
    ids, vectors, texts, metas, _ = corpus
    index = ExactIndex(DIM)
    index.add(ids, vectors, texts, metas)
    return index


def recall(found: list[list[SearchHit]], truth: list[list[SearchHit]]) -> float:
    return float(
        np.mean([len({h.id for h in f} & {h.id for h in t}) / len(t) for f, t in zip(found, truth, strict=True)])
    )


def assert_same_hits(found: list[list[SearchHit]], truth: list[list[SearchHit]], tol: float = 1e-5) -> None:
    """Same hits as the reference, allowing only swaps between scores closer than float32 rounding (``tol``).

    faiss and numpy sum products in different orders, so two passages whose scores differ by ~1e-7 may come out
    in either order; any other difference fails.
    """
    for f, t in zip(found, truth, strict=True):
        assert len(f) == len(t)
        assert [h.score for h in f] == pytest.approx([h.score for h in t], abs=tol)
        ref = {h.id: h for h in t}
        for pos, hit in enumerate(f):
            if hit.id != t[pos].id:  # a near-tie: both orders are correct
                assert abs(hit.score - t[pos].score) <= tol
            if hit.id in ref:
                assert (hit.text, hit.metadata) == (ref[hit.id].text, ref[hit.id].metadata)
                assert hit.score == pytest.approx(ref[hit.id].score, abs=tol)
            else:  # only at the cut-off, tied with the reference's last hit
                assert abs(hit.score - t[-1].score) <= tol


def test_flat_returns_exactly_the_exact_results(corpus, exact):
    ids, vectors, texts, metas, queries = corpus
    flat = FaissIndex(DIM, kind="flat")
    for start in range(0, N, 5000):  # added in batches
        sl = slice(start, start + 5000)
        flat.add(ids[sl], vectors[sl], texts[sl], metas[sl])
    assert len(flat) == N
    assert_same_hits(flat.search_many(queries, k=100), exact.search_many(queries, k=100))
    where = {"lang": "en", "shard": 5}
    assert_same_hits(flat.search_many(queries, k=10, where=where), exact.search_many(queries, k=10, where=where))
    assert_same_hits([flat.search(queries[3], k=7)], [exact.search(queries[3], k=7)])


def test_flat_inner_product_metric_matches_exact():
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((500, 8)).astype(np.float32) * rng.uniform(0.5, 3, (500, 1)).astype(np.float32)
    ids = [f"v{i}" for i in range(500)]
    flat, ref = FaissIndex(8, kind="flat", metric="ip"), ExactIndex(8, metric="ip")
    for index in (flat, ref):
        index.add(ids, vectors, [""] * 500)
    queries = rng.standard_normal((10, 8))
    assert_same_hits(flat.search_many(queries, k=20), ref.search_many(queries, k=20))
    best = float((vectors @ queries[0].astype(np.float32)).max())  # raw inner product, no normalisation
    assert flat.search(queries[0], k=1)[0].score == pytest.approx(best, rel=1e-5)


def test_hnsw_recall_at_10_and_ef_search_per_query(corpus, exact):
    ids, vectors, texts, metas, queries = corpus
    hnsw = FaissIndex(DIM, kind="hnsw", hnsw_m=16, ef_construction=64, ef_search=64)
    hnsw.add(ids, vectors, texts, metas)
    truth = exact.search_many(queries, k=10)
    assert recall(hnsw.search_many(queries, k=10), truth) >= 0.95
    narrow = recall(hnsw.search_many(queries, k=10, ef_search=10), truth)
    assert narrow < recall(hnsw.search_many(queries, k=10, ef_search=128), truth)
    hnsw.ef_search = 10
    assert recall(hnsw.search_many(queries, k=10), truth) == narrow
    # a selective filter is answered exactly (graph search with a small filter can miss matches)
    where = {"shard": 11, "lang": "ja"}
    assert_same_hits(hnsw.search_many(queries, k=10, where=where), exact.search_many(queries, k=10, where=where))


def test_ivfpq_recall_at_100_at_nprobe_32(corpus, exact):
    """IVF-PQ, nlist=128, 32 sub-quantisers of 6 bits (24 bytes per vector), trained on 5,000 vectors."""
    ids, vectors, texts, metas, queries = corpus
    ivf = FaissIndex(DIM, kind="ivfpq", nlist=128, pq_m=32, pq_nbits=6, nprobe=32)
    assert ivf.needs_training
    with pytest.raises(ValueError, match="must be trained first"):
        ivf.add(ids[:1], vectors[:1], texts[:1])
    ivf.train(vectors[:5000])
    ivf.add(ids, vectors, texts, metas)
    truth = exact.search_many(queries, k=100)
    at_32 = recall(ivf.search_many(queries, k=100), truth)
    assert at_32 >= 0.9
    assert recall(ivf.search_many(queries, k=100, nprobe=1), truth) < at_32
    # a small filter probes every list: every match is found
    where = {"shard": 3, "lang": "en"}
    matches = {h.id for h in exact.search(queries[0], k=N, where=where)}
    got = ivf.search(queries[0], k=N, where=where)
    assert {h.id for h in got} == matches
    with pytest.raises(ValueError, match="already trained"):
        ivf.train(vectors[:5000])


def test_refine_lifts_ivfpq_recall_at_100(corpus, exact):
    """8-byte PQ codes alone plateau well below 0.95; re-scoring 4k candidates with an SQ8 copy reaches it.

    Measured here: no refine 0.847 at nprobe=32; sq8 refine_factor=4 0.969, flat 0.970.
    """
    ids, vectors, texts, metas, queries = corpus
    params = {"kind": "ivfpq", "nlist": 128, "pq_m": 8, "pq_nbits": 8, "nprobe": 32}
    truth = exact.search_many(queries, k=100)
    plain = FaissIndex(DIM, **params)  # type: ignore[arg-type]
    sq8 = FaissIndex(DIM, refine="sq8", refine_factor=4, **params)  # type: ignore[arg-type]
    for index in (plain, sq8):
        index.train(vectors[:5000])
        index.add(ids, vectors, texts, metas)
    base = recall(plain.search_many(queries, k=100), truth)
    refined = recall(sq8.search_many(queries, k=100), truth)
    assert base < 0.9
    assert refined >= 0.95
    # refine_factor=1 re-scores only the k PQ hits: the same set as no refine, in a better order
    assert recall(sq8.search_many(queries, k=100, refine_factor=1), truth) == pytest.approx(base)
    sq8.refine_factor = 2
    assert base < recall(sq8.search_many(queries, k=100), truth) <= refined
    # returned scores are the SQ8 copy's inner products: close to the exact ones, unlike PQ's
    top = sq8.search(queries[0], k=10, refine_factor=8)
    want = {h.id: h.score for h in exact.search(queries[0], k=N)}
    assert [h.score for h in top] == pytest.approx([want[h.id] for h in top], abs=0.01)
    assert [h.score for h in top] == sorted((h.score for h in top), reverse=True)


def test_flat_refine_scores_exactly_and_filters(small):
    ids, vectors, texts, metas = small
    index = FaissIndex(
        16, kind="ivfpq", nlist=16, pq_m=4, pq_nbits=4, nprobe=16, refine="flat", exhaustive_filter_limit=100
    )
    index.train(vectors)
    index.add(ids, vectors, texts, metas)
    ref = ExactIndex(16)
    ref.add(ids, vectors, texts, metas)
    # every list probed and every record re-scored: the exact result
    assert_same_hits(index.search_many(vectors[:5], k=20, refine_factor=60), ref.search_many(vectors[:5], k=20))
    # a small filter (<= 100 matches) is scored exactly from the refine copy
    where = {"lang": "en", "n": 3}
    assert_same_hits(index.search_many(vectors[:5], k=50, where=where), ref.search_many(vectors[:5], k=50, where=where))
    # a large filter goes through faiss's selector, then re-scoring: only matches, exact scores
    hits = index.search(vectors[0], k=30, where={"lang": "ja"})
    want = {h.id: h.score for h in ref.search(vectors[0], k=1200, where={"lang": "ja"})}
    assert len(hits) == 30
    assert all(h.id in want and h.score == pytest.approx(want[h.id], abs=1e-5) for h in hits)


def test_refine_round_trips_through_save_and_load(small, tmp_path: Path):
    ids, vectors, _texts, _metas = small
    index = build("ivfpq", small, refine="sq8")
    index.delete(ids[:10])
    index.refine_factor = 3
    index.save(tmp_path / "idx")
    snapshot, manifest = read_snapshot(tmp_path / "idx")
    assert (manifest["params"]["refine"], manifest["params"]["refine_factor"]) == ("sq8", 3)
    assert (snapshot / "refine.faiss").is_file()
    loaded = load_index(tmp_path / "idx")
    assert isinstance(loaded, FaissIndex)
    assert (loaded.refine, loaded.refine_factor, len(loaded)) == ("sq8", 3, 1190)
    for k in (5, 40):
        assert loaded.search_many(vectors[:8], k=k) == index.search_many(vectors[:8], k=k)
    loaded.upsert([ids[20], ids[0]], vectors[[700, 800]], ["moved", "back"])  # still consistent after a load
    assert {h.id for h in loaded.search(vectors[700], k=2)} == {ids[20], ids[700]}
    assert loaded.search(vectors[800], k=1)[0].id in (ids[0], ids[800])
    # a manifest promising a refine copy that faiss cannot read is refused
    (snapshot / "refine.faiss").write_bytes(b"x" * (snapshot / "refine.faiss").stat().st_size)
    with pytest.raises(IndexCorruptedError, match=r"refine\.faiss"):
        load_index(tmp_path / "idx", verify=False)


def test_refine_params_are_checked(small):
    with pytest.raises(ValueError, match="refine must be one of \\['none', 'flat', 'sq8'\\], got 'pq'"):
        FaissIndex(8, kind="ivfpq", refine="pq")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refine='sq8' applies only to kind='ivfpq', not 'hnsw'"):
        FaissIndex(8, kind="hnsw", refine="sq8")
    with pytest.raises(ValueError, match="refine_factor must be positive"):
        FaissIndex(8, kind="ivfpq", refine="flat", refine_factor=0)
    index = build("ivfpq", small, refine="flat")
    with pytest.raises(ValueError, match="refine_factor must be positive"):
        index.search(small[1][0], k=3, refine_factor=-2)
    with pytest.raises(TypeError, match="refine_factor must be an int"):
        index.search_many(small[1][:2], k=3, refine_factor=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refine_factor must be positive"):
        index.refine_factor = 0
    assert index.refine_factor == 4  # unchanged by the rejected value
    assert make_index("faiss-ivfpq", 16, refine="sq8", nlist=4).refine == "sq8"  # type: ignore[attr-defined]


def test_ivfpq_training_checks_sample_size():
    ivf = FaissIndex(8, kind="ivfpq", nlist=64, pq_m=4, pq_nbits=8)
    with pytest.raises(ValueError, match="at least max\\(nlist=64, 2\\*\\*pq_nbits=256\\) vectors, got 100"):
        ivf.train(np.ones((100, 8)))
    with pytest.raises(ValueError, match="pq_m=5 must divide the dimension 8"):
        FaissIndex(8, kind="ivfpq", pq_m=5)
    with pytest.raises(ValueError, match="kind must be one of"):
        FaissIndex(8, kind="lsh")  # type: ignore[arg-type]


def test_ingest_trains_ivfpq_on_the_leading_records():
    mix = GaussianMixture(16, n_clusters=20, seed=4)
    vectors = mix.sample(3000, seed=1)
    texts = [str(i) for i in range(3000)]
    index = FaissIndex(16, kind="ivfpq", pq_m=8, pq_nbits=4)  # nlist chosen from the sample
    report = ingest(
        index,
        ((f"d{i}", texts[i]) for i in range(3000)),
        lambda batch: vectors[[int(t) for t in batch]],
        batch_size=500,
        train_size=1000,
        progress=False,
    )
    assert (report.n_records, report.n_batches, report.trained_on) == (3000, 6, 1000)
    assert index.nlist is not None
    assert 1 <= index.nlist <= 1000 // 39
    assert len(index) == 3000
    assert index.search(vectors[42], k=1, nprobe=index.nlist)[0].id == "d42"


@pytest.fixture
def small() -> tuple[list[str], np.ndarray, list[str], list[dict[str, str | int]]]:
    vectors = GaussianMixture(16, n_clusters=10, seed=7).sample(1200, seed=1)
    ids = [f"s{i:04d}" for i in range(1200)]
    metas: list[dict[str, str | int]] = [{"lang": "ja" if i % 2 else "en", "n": i % 7} for i in range(1200)]
    return ids, vectors, [f"t{i}" for i in range(1200)], metas


def build(kind: str, small, refine: str = "none") -> FaissIndex:
    ids, vectors, texts, metas = small
    index = FaissIndex(16, kind=kind, nlist=16, pq_m=16, pq_nbits=4, nprobe=16, refine=refine)  # type: ignore[arg-type]
    index.train(vectors)
    index.add(ids, vectors, texts, metas)
    return index


KINDS = [("flat", "none"), ("hnsw", "none"), ("ivfpq", "none"), ("ivfpq", "sq8"), ("ivfpq", "flat")]


@pytest.mark.parametrize(("kind", "refine"), KINDS)
def test_delete_and_upsert_semantics(kind, refine, small):
    ids, vectors, _texts, _metas = small
    index = build(kind, small, refine)
    assert index.delete([ids[0], ids[1], "unknown"]) == 2
    assert len(index) == 1198
    assert ids[0] not in index
    assert all(h.id not in (ids[0], ids[1]) for h in index.search(vectors[0], k=50))
    with pytest.raises(ValueError, match="already in the index"):
        index.add([ids[2]], vectors[:1], ["dup"])
    index.upsert([ids[2], ids[0]], vectors[[500, 600]], ["moved", "revived"], [{"lang": "xx"}, None])
    assert len(index) == 1199
    assert index.get([ids[2], ids[0]])[0].text == "moved"
    top = index.search(vectors[500], k=2, nprobe=16)
    assert {h.id for h in top} == {ids[2], ids[500]}
    assert index.search(vectors[600], k=2)[0].id in (ids[0], ids[600])
    assert [h.id for h in index.search(vectors[500], k=5, where={"lang": "xx"})] == [ids[2]]
    if kind == "hnsw":
        assert index.n_tombstones == 3  # two deletes and one replaced vector
        before = index.search_many(vectors[:20], k=10)
        assert index.compact() == 3
        assert index.n_tombstones == 0
        assert [[h.id for h in hs] for hs in index.search_many(vectors[:20], k=10)] == [
            [h.id for h in hs] for hs in before
        ]


@pytest.mark.parametrize(("kind", "refine"), KINDS)
def test_filter_matches_exact_and_k_larger_than_matches(kind, refine, small):
    ids, vectors, texts, metas = small
    index = build(kind, small, refine)
    ref = ExactIndex(16)
    ref.add(ids, vectors, texts, metas)
    where = {"lang": "en", "n": 3}
    n_match = sum(1 for m in metas if m == {"lang": "en", "n": 3})
    got = index.search_many(vectors[:5], k=1000, where=where)
    want = ref.search_many(vectors[:5], k=1000, where=where)
    for g, w in zip(got, want, strict=True):
        assert len(g) == n_match
        assert {h.id for h in g} == {h.id for h in w}
        assert all(h.metadata == {"lang": "en", "n": 3} for h in g)
    assert index.search(vectors[0], k=5, where={"lang": "de"}) == []


def test_query_time_params_are_checked(small):
    index = build("ivfpq", small)
    with pytest.raises(ValueError, match="nprobe must be positive"):
        index.search(small[1][0], k=3, nprobe=0)
    with pytest.raises(TypeError, match="ef_search must be an int"):
        index.search(small[1][0], k=3, ef_search=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nprobe must be positive"):
        index.nprobe = -1


def test_concurrent_searches_and_writes_are_safe(small):
    ids, vectors, _texts, _metas = small
    index = build("hnsw", small)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(30):
                hits = index.search_many(vectors[:8], k=5)
                assert all(len(h) == 5 for h in hits)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(30):
        index.upsert([ids[i]], vectors[i : i + 1], [f"v{i}"])
    for t in threads:
        t.join()
    assert errors == []
    assert index.get([ids[0]])[0].text == "v0"


def test_make_index_builds_faiss_kinds():
    assert make_index("faiss", 8).kind == "flat"  # type: ignore[attr-defined]
    hnsw = make_index("faiss-hnsw", 8, ef_search=99)
    assert isinstance(hnsw, FaissIndex)
    assert hnsw.kind == "hnsw"
    assert hnsw.ef_search == 99


@pytest.mark.parametrize(("kind", "refine"), KINDS)
def test_codes_encoded_in_another_process_build_the_index_add_builds(kind, refine, small, tmp_path: Path):
    import pickle

    ids, vectors, texts, metas = small
    reference = build(kind, small, refine)
    driver = FaissIndex(16, kind=kind, nlist=16, pq_m=16, pq_nbits=4, nprobe=16, refine=refine)  # type: ignore[arg-type]
    driver.train(vectors)
    driver.save(tmp_path / "trained")
    worker = load_index(tmp_path / "trained")  # a copy of the trained index, as a worker process gets it
    for start in range(0, len(ids), 500):
        part = slice(start, start + 500)
        encoded = pickle.loads(pickle.dumps(worker.encode(ids[part], vectors[part], texts[part], metas[part])))
        driver.add_encoded(encoded)
    assert len(worker) == 0  # encoding adds nothing
    reference.save(tmp_path / "a")
    driver.save(tmp_path / "b")
    payload = {"CURRENT", "manifest.json"}  # these name the snapshot (a timestamp); the index files must be equal
    files_a = {p.name: p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file() and p.name not in payload}
    files_b = {p.name: p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file() and p.name not in payload}
    assert files_a
    if kind != "hnsw":  # an HNSW graph depends on insertion batches; its searches are compared below
        assert files_a == files_b
    query = vectors[:5]
    assert [[h.id for h in hs] for hs in driver.search_many(query, 10)] == [
        [h.id for h in hs] for hs in reference.search_many(query, 10)
    ]


def test_add_encoded_refuses_codes_of_another_index(small):
    ids, vectors, texts, _ = small
    a = build("ivfpq", small)
    other = FaissIndex(16, kind="ivfpq", nlist=16, pq_m=8, pq_nbits=4, nprobe=16)
    other.train(vectors)
    with pytest.raises(ValueError, match="do not fit this index"):
        a.add_encoded(other.encode(["new"], vectors[:1], ["t"]))
    with pytest.raises(ValueError, match="already in the index"):
        a.add_encoded(a.encode(ids[:1], vectors[:1], texts[:1]))
    refined = FaissIndex(16, kind="ivfpq", nlist=16, pq_m=16, pq_nbits=4, refine="sq8")
    refined.train(vectors)
    with pytest.raises(ValueError, match="another refine setting"):
        a.add_encoded(refined.encode(["new"], vectors[:1], ["t"]))
    untrained = FaissIndex(16, kind="ivfpq", nlist=16, pq_m=16, pq_nbits=4)
    with pytest.raises(ValueError, match="must be trained first"):
        untrained.encode(["x"], vectors[:1], ["t"])
