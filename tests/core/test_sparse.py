"""SparseEmbedder and SparseIndex: parity with SparseEncoder, brute-force search, persistence, errors."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sentence_transformers import SparseEncoder

from jp_rerank.data import load_demo_corpus
from jp_rerank.embed import SparseEmbedder
from jp_rerank.errors import IndexMismatchError
from jp_rerank.index import SparseIndex
from jp_rerank.index.base import IndexCorruptedError, SearchHit

TEXTS = ["富士山は日本一高い山です。", "京都には寺が多い。", "東京タワーの高さは333メートル。", ""]
QUERIES = ["日本で一番高い山は？", "京都の寺"]


@pytest.fixture(scope="module")
def embedder(splade_path: Path) -> SparseEmbedder:
    return SparseEmbedder(splade_path, device="cpu", normalize_text=False).load()


@pytest.fixture(scope="module")
def encoder(splade_path: Path) -> SparseEncoder:
    return SparseEncoder(str(splade_path), device="cpu")


@pytest.fixture(scope="module")
def corpus() -> list[dict[str, str]]:
    return load_demo_corpus()


def test_embed_documents_equals_sparse_encoder(embedder: SparseEmbedder, encoder: SparseEncoder) -> None:
    rows = embedder.embed_documents(TEXTS)
    assert isinstance(rows, sp.csr_matrix)
    assert rows.dtype == np.float32
    assert rows.shape == (len(TEXTS), embedder.vocab_size)
    assert rows.has_sorted_indices
    assert (rows.data != 0).all()  # no explicit zeros
    ref = encoder.encode_document(TEXTS).to_dense().numpy()
    np.testing.assert_allclose(rows.toarray(), ref, atol=1e-6)


def test_embed_queries_uses_encode_query(embedder: SparseEmbedder, encoder: SparseEncoder) -> None:
    ref = encoder.encode_query(QUERIES).to_dense().numpy()
    np.testing.assert_allclose(embedder.embed_queries(QUERIES).toarray(), ref, atol=1e-6)
    one = embedder.embed_query(QUERIES[0])
    assert one.shape == (1, embedder.vocab_size)
    np.testing.assert_allclose(one.toarray()[0], ref[0], atol=1e-6)


def test_query_prefix_override_changes_the_vector(splade_path: Path, encoder: SparseEncoder) -> None:
    emb = SparseEmbedder(splade_path, device="cpu", normalize_text=False, query_prefix="質問: ")
    assert emb.prefix("query") == "質問: "
    assert emb.prefix("document") == ""
    ref = encoder.encode_query([QUERIES[0]], prompt="質問: ").to_dense().numpy()
    got = emb.embed_query(QUERIES[0]).toarray()
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert not np.allclose(got, encoder.encode_query([QUERIES[0]]).to_dense().numpy(), atol=1e-4)


def test_normalisation_applies_to_inputs(splade_path: Path) -> None:
    emb = SparseEmbedder(splade_path, device="cpu")
    a = emb.embed_documents(["ﾃｽﾄ　ＡＢＣ"]).toarray()
    b = emb.embed_documents(["テスト ABC"]).toarray()
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_max_active_dims_limits_nonzeros(splade_path: Path) -> None:
    emb = SparseEmbedder(splade_path, device="cpu", max_active_dims=5)
    rows = emb.embed_documents(TEXTS[:2])
    assert np.diff(rows.indptr).max() <= 5


def test_empty_inputs_and_errors(embedder: SparseEmbedder) -> None:
    assert embedder.embed_documents([]).shape == (0, embedder.vocab_size)
    with pytest.raises(ValueError, match="empty or whitespace"):
        embedder.embed_query("  ")
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        embedder.embed_documents(["a", None])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="not a single str"):
        embedder.embed_documents("abc")
    with pytest.raises(ValueError, match="batch_size must be positive"):
        SparseEmbedder("splade-ja", batch_size=0)


def test_decode_lists_heaviest_tokens(embedder: SparseEmbedder) -> None:
    row = embedder.embed_query("富士山")
    decoded = embedder.decode(row, top_k=3)
    assert len(decoded) == 3
    weights = [w for _, w in decoded]
    assert weights == sorted(weights, reverse=True)
    assert weights[0] == pytest.approx(float(row.data.max()))
    assert all(isinstance(tok, str) for tok, _ in decoded)


def _brute_force(query: np.ndarray, docs: np.ndarray, ids: list[str], k: int) -> list[tuple[int, float]]:
    scores = docs.astype(np.float64) @ query.astype(np.float64)
    order = sorted((i for i in range(len(scores)) if scores[i] > 0), key=lambda i: (-scores[i], ids[i]))
    return [(i, float(scores[i])) for i in order[:k]]


def test_index_search_equals_brute_force_dot_product(
    embedder: SparseEmbedder, encoder: SparseEncoder, corpus: list[dict[str, str]]
) -> None:
    texts = [d["text"] for d in corpus]
    ids = [d["id"] for d in corpus]
    index = SparseIndex(embedder)
    assert index.add(texts, ids=ids) == ids
    docs = encoder.encode_document(texts, convert_to_sparse_tensor=False).numpy()
    queries = ["富士山の高さは？", "日本で一番長い川", "新幹線の開業"]
    q = encoder.encode_query(queries, convert_to_sparse_tensor=False).numpy()
    results = index.search_many(queries, k=7)
    for qi, hits in enumerate(results):
        expected = _brute_force(q[qi], docs, ids, 7)
        assert [h.id for h in hits] == [ids[i] for i, _ in expected]
        np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], rtol=1e-5)
        assert all(type(h.score) is float and isinstance(h, SearchHit) for h in hits)
        assert all(h.text == texts[ids.index(h.id)] for h in hits)
    # search and search_many encode the query in batches of different sizes: BLAS may round the last float bit
    # either way on some CPUs (62.58366 vs 62.58365 was seen), so the contract is the same ranking, scores within
    # float32 rounding, not bit-identical floats.
    alone = index.search(queries[0], k=7)
    assert [h.id for h in alone] == [h.id for h in results[0]]
    np.testing.assert_allclose([h.score for h in alone], [h.score for h in results[0]], rtol=1e-5)


def test_index_ties_by_ascending_id_and_zero_scores_are_left_out() -> None:
    vectors = sp.csr_matrix(np.array([[0, 1, 0], [0, 2, 0], [0, 2, 0], [1, 0, 0], [0, 2, 0]], dtype=np.float32))
    index = SparseIndex()
    index.add(["a", "e", "c", "d", "b"], ids=["a", "e", "c", "d", "b"], vectors=vectors)
    query = sp.csr_matrix(np.array([[0, 1, 0]], dtype=np.float32))
    assert [(h.id, h.score) for h in index.search(query, k=2)] == [("b", 2.0), ("c", 2.0)]
    all_hits = index.search(query, k=10)
    assert [h.id for h in all_hits] == ["b", "c", "e", "a"]  # "d" shares no dimension: left out


def test_index_copies_metadata(embedder: SparseEmbedder) -> None:
    meta = {"source": "wiki", "year": 2024}
    index = SparseIndex(embedder)
    index.add(TEXTS[:2], metadatas=[meta, None])
    meta["source"] = "changed"
    hit = next(h for h in index.search("富士山", k=2) if h.id == "0")
    assert hit.metadata == {"source": "wiki", "year": 2024}
    hit.metadata["source"] = "mutated"  # hits are copies too
    again = next(h for h in index.search("富士山", k=2) if h.id == "0")
    assert again.metadata == {"source": "wiki", "year": 2024}
    with pytest.raises(TypeError, match=r"metadatas\[0\]\['tags'\] must be str, int, float or bool"):
        index.add(["x"], metadatas=[{"tags": ["山"]}])


def test_index_add_appends_with_default_ids_and_rejects_duplicates(embedder: SparseEmbedder) -> None:
    index = SparseIndex(embedder)
    assert index.add(TEXTS[:2]) == ["0", "1"]
    assert index.add(TEXTS[2:3]) == ["2"]
    assert len(index) == 3
    with pytest.raises(ValueError, match=r"already in the index \(e.g. '1'\)"):
        index.add(["x"], ids=["1"])
    with pytest.raises(ValueError, match="contains 'z' more than once"):
        index.add(["x", "y"], ids=["z", "z"])
    with pytest.raises(ValueError, match="got 1 texts but 2 ids"):
        index.add(["x"], ids=["p", "q"])
    with pytest.raises(ValueError, match="got 1 texts but 2 metadatas"):
        index.add(["x"], metadatas=[{}, {}])
    with pytest.raises(TypeError, match=r"metadatas\[0\] must be a mapping"):
        index.add(["x"], metadatas=["meta"])  # type: ignore[list-item]
    assert len(index) == 3  # failed adds change nothing


def test_index_errors() -> None:
    index = SparseIndex()
    with pytest.raises(ValueError, match="no embedder"):
        index.add(["x"])
    index.add(["x"], vectors=sp.csr_matrix(np.ones((1, 4), dtype=np.float32)))
    with pytest.raises(ValueError, match="no embedder"):
        index.search("query")
    with pytest.raises(ValueError, match="k must be positive"):
        index.search(sp.csr_matrix(np.ones((1, 4), dtype=np.float32)), k=0)
    with pytest.raises(ValueError, match="3 columns but the index holds 4-column"):
        index.search(sp.csr_matrix(np.ones((1, 3), dtype=np.float32)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        index.add(["y"], vectors=sp.csr_matrix(np.array([[np.nan, 0, 0, 1]], dtype=np.float32)))
    with pytest.raises(TypeError, match=r"must be a 2-D scipy\.sparse matrix"):
        index.add(["y"], vectors=np.ones((1, 4)))  # type: ignore[arg-type]
    assert SparseIndex().search(sp.csr_matrix(np.ones((1, 4), dtype=np.float32))) == []


def test_index_save_load_roundtrip(tmp_path: Path, embedder: SparseEmbedder) -> None:
    index = SparseIndex(embedder)
    index.add(TEXTS, ids=["f", "k", "t", "e"], metadatas=[{"n": 1}, {"n": 2}, {"n": 3.5, "ok": True}, {}])
    snapshot = index.save(tmp_path / "idx")
    assert sorted(p.name for p in snapshot.iterdir()) == ["docs.jsonl", "manifest.json", "matrix.npz"]
    manifest = json.loads((snapshot / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["backend"] == "sparse"
    assert manifest["count"] == 4
    assert manifest["vocab_size"] == embedder.vocab_size
    assert manifest["embedder_id"] == embedder.model_id
    loaded = SparseIndex.load(tmp_path / "idx", embedder)
    assert loaded.ids == ["f", "k", "t", "e"]
    assert (loaded.matrix != index.matrix).nnz == 0  # type: ignore[operator]
    assert loaded.search_many(QUERIES, k=3) == index.search_many(QUERIES, k=3)
    assert loaded.add(["追加の文書"]) == ["4"]
    index.add(["もう一つ"], ids=["x"])
    index.save(tmp_path / "idx")  # a second save replaces the snapshot
    assert SparseIndex.load(tmp_path / "idx").ids == ["f", "k", "t", "e", "x"]


def test_index_load_errors(tmp_path: Path, embedder: SparseEmbedder) -> None:
    with pytest.raises(FileNotFoundError, match="not a saved jp-rerank index"):
        SparseIndex.load(tmp_path / "missing")
    index = SparseIndex()
    index.add(["x"], vectors=sp.csr_matrix(np.ones((1, 4), dtype=np.float32)))
    snapshot = index.save(tmp_path / "small")
    with pytest.raises(IndexMismatchError, match="vocabulary size"):
        SparseIndex.load(tmp_path / "small", embedder)
    docs = snapshot / "docs.jsonl"
    docs.write_text(docs.read_text(encoding="utf-8").replace('"x"', '"y"'), encoding="utf-8")
    with pytest.raises(IndexCorruptedError, match="SHA-256"):
        SparseIndex.load(tmp_path / "small")


def test_load_refuses_a_vector_index(tmp_path: Path) -> None:
    from jp_rerank.index.exact import ExactIndex

    exact = ExactIndex(2)
    exact.add(["a"], [[1.0, 0.0]], ["犬"])
    exact.save(tmp_path / "dense")
    with pytest.raises(IndexMismatchError, match="not a sparse index"):
        SparseIndex.load(tmp_path / "dense")


def test_concurrent_searches_agree(embedder: SparseEmbedder) -> None:
    index = SparseIndex(embedder)
    index.add(TEXTS)
    expected = index.search(QUERIES[0], k=3)
    results: list[list[SearchHit]] = []

    def work() -> None:
        results.append(index.search(QUERIES[0], k=3))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4
