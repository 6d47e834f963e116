"""TwoStageRetriever: first stages (BM25, dense, sparse, hybrid), fusion, rerank parity, batching, errors."""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from jp_rerank import Embedder, Reranker
from jp_rerank.data import load_demo_corpus
from jp_rerank.embed import SparseEmbedder
from jp_rerank.fusion import reciprocal_rank_fusion, weighted_score_fusion
from jp_rerank.hits import SearchHit
from jp_rerank.index import SparseIndex
from jp_rerank.lexical import BM25Index
from jp_rerank.pipeline import DenseRetriever, TwoStageRetriever

QUERIES = ["富士山の高さは？", "日本で一番長い川は何ですか？", "東海道新幹線はいつ開業しましたか？"]


@pytest.fixture(scope="module")
def corpus() -> list[dict[str, str]]:
    return load_demo_corpus()


@pytest.fixture(scope="module")
def texts(corpus: list[dict[str, str]]) -> list[str]:
    return [d["text"] for d in corpus]


@pytest.fixture(scope="module")
def ids(corpus: list[dict[str, str]]) -> list[str]:
    return [d["id"] for d in corpus]


@pytest.fixture(scope="module")
def metadatas(corpus: list[dict[str, str]]) -> list[dict[str, str | int]]:
    return [{"title": d["title"], "n": i} for i, d in enumerate(corpus)]


@pytest.fixture(scope="module")
def sparse(splade_path: Path) -> SparseEmbedder:
    return SparseEmbedder(splade_path, device="cpu").load()


@pytest.fixture(scope="module")
def hybrid(
    texts: list[str],
    ids: list[str],
    metadatas: list[dict[str, str | int]],
    embedder: Embedder,
    sparse: SparseEmbedder,
    reranker: Reranker,
) -> TwoStageRetriever:
    return TwoStageRetriever.from_texts(
        texts, ids=ids, metadatas=metadatas, embedder=embedder, sparse=sparse, reranker=reranker, first_k=20, top_n=5
    )


def test_bm25_only_puts_the_lexical_match_in_the_candidates(texts: list[str], ids: list[str]) -> None:
    retriever = TwoStageRetriever.from_texts(texts, ids=ids, top_n=10)
    passages = retriever.retrieve("富士山の標高は何メートルですか？")
    assert passages[0].id == "doc-001"
    for p in passages:
        assert p.rerank_score is None
        assert p.score == p.first_stage_score
        assert type(p.score) is float
    scores = [p.score for p in passages]
    assert scores == sorted(scores, reverse=True)
    # the same scores as the BM25 index itself
    hits = BM25Index("mecab").index(texts, ids=ids).search("富士山の標高は何メートルですか？", k=10)
    assert [(p.id, p.score) for p in passages] == [(h.id, h.score) for h in hits]


def test_rerank_scores_equal_reranker_score_on_the_candidates(
    texts: list[str], ids: list[str], reranker: Reranker
) -> None:
    retriever = TwoStageRetriever.from_texts(texts, ids=ids, reranker=reranker, first_k=15, top_n=4)
    query = QUERIES[0]
    candidates = BM25Index("mecab").index(texts, ids=ids).search(query, k=15)
    cand_texts = [h.text for h in candidates]
    expected_scores = reranker.score(query, cand_texts)
    order = sorted(range(len(candidates)), key=lambda i: (-float(expected_scores[i]), candidates[i].id))[:4]
    passages = retriever.retrieve(query)
    assert len(passages) == 4
    assert [p.id for p in passages] == [candidates[i].id for i in order]
    for p, i in zip(passages, order, strict=True):
        assert p.rerank_score == pytest.approx(float(expected_scores[i]), abs=1e-6)
        assert p.score == p.rerank_score
        assert p.first_stage_score == candidates[i].score
        assert p.text == cand_texts[i]
        assert type(p.score) is float
        assert type(p.first_stage_score) is float


def test_hybrid_fuses_stage_rankings_with_rrf(
    hybrid: TwoStageRetriever, reranker: Reranker, texts: list[str], ids: list[str]
) -> None:
    text_of = dict(zip(ids, texts, strict=True))
    assert [s.name for s in hybrid.first_stages] == ["dense", "sparse", "bm25"]
    query = QUERIES[1]
    rankings = [[h.id for h in stage.search_many([query], 20)[0]] for stage in hybrid.first_stages]
    fused = reciprocal_rank_fusion(rankings, k=60, top_n=20)
    first_stage = {f.id: f.score for f in fused}
    passages = hybrid.retrieve(query)
    assert len(passages) == 5
    for p in passages:
        assert p.first_stage_score == pytest.approx(first_stage[p.id], rel=1e-12)
    # reranked among exactly the fused candidates
    reranked = reranker.score(query, [text_of[f.id] for f in fused])
    best = sorted(range(len(fused)), key=lambda i: (-float(reranked[i]), fused[i].id))[:5]
    assert [p.id for p in passages] == [fused[i].id for i in best]


def test_hybrid_is_deterministic(
    texts: list[str],
    ids: list[str],
    embedder: Embedder,
    sparse: SparseEmbedder,
    hybrid: TwoStageRetriever,
) -> None:
    again = TwoStageRetriever.from_texts(texts, ids=ids, embedder=embedder, sparse=sparse, first_k=20, top_n=20)
    first = [(p.id, p.first_stage_score) for p in again.retrieve(QUERIES[2])]
    assert first == [(p.id, p.first_stage_score) for p in again.retrieve(QUERIES[2])]
    # the same candidates, fused identically, as the reranking retriever's
    fused_hybrid = [(p.id, p.first_stage_score) for p in hybrid.retrieve(QUERIES[2], top_n=20)]
    assert sorted(fused_hybrid) == sorted(first)


def test_weighted_fusion_path(hybrid: TwoStageRetriever) -> None:
    dense, _, bm25 = hybrid.first_stages
    retriever = TwoStageRetriever(
        first_stages=[dense, bm25],
        fusion="weighted",
        normalization="zscore",
        weights={"bm25": 2.0},
        first_k=10,
        top_n=10,
    )
    assert retriever.weights == (1.0, 2.0)
    query = QUERIES[0]
    rankings = [[(h.id, h.score) for h in stage.search_many([query], 10)[0]] for stage in retriever.first_stages]
    expected = weighted_score_fusion(rankings, weights=[1.0, 2.0], normalization="zscore", top_n=10)
    got = retriever.retrieve(query)
    assert [p.id for p in got] == [f.id for f in expected]
    assert [p.score for p in got] == pytest.approx([f.score for f in expected], rel=1e-12)


def test_retrieve_many_equals_retrieve(hybrid: TwoStageRetriever) -> None:
    batched = hybrid.retrieve_many(QUERIES, top_n=3, first_k=10)
    single = [hybrid.retrieve(q, top_n=3, first_k=10) for q in QUERIES]
    assert len(batched) == len(QUERIES)
    for b, s in zip(batched, single, strict=True):
        assert [p.id for p in b] == [p.id for p in s]
        assert [p.score for p in b] == pytest.approx([p.score for p in s], abs=1e-5)
        assert [p.first_stage_score for p in b] == [p.first_stage_score for p in s]
    assert hybrid.retrieve_many([]) == []


def test_metadata_is_copied_never_mutated(texts: list[str], ids: list[str]) -> None:
    metas = [{"title": f"t{i}", "rank": i} for i in range(len(texts))]
    snapshot = copy.deepcopy(metas)
    retriever = TwoStageRetriever.from_texts(texts, ids=ids, metadatas=metas, top_n=3)
    metas[0]["title"] = "changed after indexing"
    query = "富士山の標高は何メートルですか？"
    passages = retriever.retrieve(query)
    assert passages[0].id == "doc-001"
    assert passages[0].metadata == {"title": "t0", "rank": 0}
    passages[0].metadata["title"] = "mutated result"
    assert retriever.retrieve(query)[0].metadata == {"title": "t0", "rank": 0}
    metas[0]["title"] = "t0"
    assert metas == snapshot
    with pytest.raises(TypeError, match=r"metadatas\[0\]\['tags'\] must be str, int, float or bool"):
        TwoStageRetriever.from_texts(texts[:1], metadatas=[{"tags": ["a"]}])


def test_timings_are_reported(hybrid: TwoStageRetriever, texts: list[str]) -> None:
    hybrid.retrieve(QUERIES[0])
    timings = hybrid.last_timings
    assert set(timings) == {"dense", "sparse", "bm25", "fusion", "rerank", "total"}
    assert all(isinstance(v, float) and v >= 0 for v in timings.values())
    assert timings["total"] >= timings["rerank"]
    bm25_only = TwoStageRetriever.from_texts(texts)
    assert bm25_only.last_timings == {}
    bm25_only.retrieve("京都の寺")
    assert set(bm25_only.last_timings) == {"bm25", "total"}


def test_score_threshold(texts: list[str], ids: list[str], reranker: Reranker) -> None:
    plain = TwoStageRetriever.from_texts(texts, ids=ids, reranker=reranker, first_k=10, top_n=10)
    scores = [p.score for p in plain.retrieve(QUERIES[0])]
    cut = scores[len(scores) // 2]
    strict = TwoStageRetriever.from_texts(texts, ids=ids, reranker=reranker, first_k=10, top_n=10, score_threshold=cut)
    kept = strict.retrieve(QUERIES[0])
    assert [p.score for p in kept] == [s for s in scores if s >= cut]
    # without a reranker the threshold applies to the first-stage score
    lexical = TwoStageRetriever.from_texts(texts, ids=ids, top_n=10, score_threshold=1e9)
    assert lexical.retrieve(QUERIES[0]) == []


def test_first_k_bounds_the_candidates(texts: list[str], ids: list[str], reranker: Reranker) -> None:
    retriever = TwoStageRetriever.from_texts(texts, ids=ids, reranker=reranker, first_k=2, top_n=10)
    assert len(retriever.retrieve(QUERIES[0])) == 2
    assert len(retriever.retrieve(QUERIES[0], first_k=5)) == 5


def test_sparse_and_dense_stages_alone(hybrid: TwoStageRetriever, embedder: Embedder) -> None:
    dense_stage, sparse_stage, _ = hybrid.first_stages
    assert isinstance(dense_stage, DenseRetriever)
    assert isinstance(sparse_stage, SparseIndex)
    dense = TwoStageRetriever(first_stages=[dense_stage], top_n=3)
    expected = dense_stage.index.search(embedder.embed_query(QUERIES[0]), k=3)
    assert [(p.id, p.score) for p in dense.retrieve(QUERIES[0])] == [(h.id, h.score) for h in expected]
    only_sparse = TwoStageRetriever(first_stages=[sparse_stage], top_n=3)
    hits = sparse_stage.search(QUERIES[0], k=3)
    assert [(p.id, p.score) for p in only_sparse.retrieve(QUERIES[0])] == [(h.id, h.score) for h in hits]


def test_faiss_backend_matches_exact(
    hybrid: TwoStageRetriever, texts: list[str], ids: list[str], embedder: Embedder
) -> None:
    exact = TwoStageRetriever(first_stages=hybrid.first_stages[:1], top_n=5)
    flat = TwoStageRetriever.from_texts(
        texts, ids=ids, embedder=embedder, bm25=None, top_n=5, vector_backend="faiss-flat"
    )
    stage = flat.first_stages[0]
    assert isinstance(stage, DenseRetriever)
    assert stage.index.backend == "faiss"
    a, b = exact.retrieve(QUERIES[1]), flat.retrieve(QUERIES[1])
    assert [p.id for p in a] == [p.id for p in b]
    assert [p.score for p in a] == pytest.approx([p.score for p in b], abs=1e-5)


class _FixedStage:
    """A custom first stage: the protocol is all a retriever needs."""

    name = "fixed"

    def search_many(self, queries: Sequence[str], k: int) -> list[list[SearchHit]]:
        hits = [SearchHit("x", 2.0, "固定の文書", {"src": "custom"}), SearchHit("y", 1.0, "別の文書")]
        return [hits[:k] for _ in queries]


def test_custom_first_stage_and_bm25_index(texts: list[str], ids: list[str]) -> None:
    index = BM25Index("char2", name="char2").index(texts, ids=ids)
    retriever = TwoStageRetriever(first_stages=[_FixedStage(), index], rrf_k=0, top_n=3)
    passages = retriever.retrieve("富士山の高さ")
    top_bm25 = index.search("富士山の高さ", k=1)[0]
    # rank 1 in the char-bigram list, tied with "x" (1/1): ascending id, so "doc-..." comes before "x"
    assert passages[1] == SearchHit(
        id="x",
        score=1.0,
        text="固定の文書",
        metadata={"src": "custom"},
        scores={"fixed": 2.0, "first_stage": 1.0},
    )
    assert (passages[1].first_stage_score, passages[1].rerank_score) == (1.0, None)
    assert passages[0].id == top_bm25.id
    assert passages[0].text == top_bm25.text
    assert passages[0].scores == {"char2": top_bm25.score, "first_stage": 1.0}


def test_concurrent_retrieve_matches_sequential(hybrid: TwoStageRetriever) -> None:
    expected = {q: hybrid.retrieve(q) for q in QUERIES}
    results: dict[int, list[SearchHit]] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = hybrid.retrieve(QUERIES[i % len(QUERIES)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, got in results.items():
        want = expected[QUERIES[i % len(QUERIES)]]
        assert [p.id for p in got] == [p.id for p in want]
        assert [p.score for p in got] == pytest.approx([p.score for p in want], abs=1e-5)


def test_bad_input(texts: list[str], ids: list[str]) -> None:
    retriever = TwoStageRetriever.from_texts(texts, ids=ids)
    with pytest.raises(ValueError, match="query is empty or whitespace only"):
        retriever.retrieve("  ")
    with pytest.raises(TypeError, match="query must be a str"):
        retriever.retrieve(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="top_n must be positive"):
        retriever.retrieve("京都", top_n=0)
    with pytest.raises(ValueError, match="first_k must be positive"):
        retriever.retrieve("京都", first_k=-1)
    with pytest.raises(ValueError, match=r"queries\[1\] is empty"):
        retriever.retrieve_many(["京都", ""])
    with pytest.raises(ValueError, match="top_n must be positive"):
        TwoStageRetriever.from_texts(texts, top_n=0)
    with pytest.raises(ValueError, match="texts is empty"):
        TwoStageRetriever.from_texts([])
    with pytest.raises(ValueError, match="no first stage"):
        TwoStageRetriever.from_texts(texts, bm25=None)
    with pytest.raises(ValueError, match="contains 'a' more than once"):
        TwoStageRetriever.from_texts(["x", "y"], ids=["a", "a"])
    with pytest.raises(ValueError, match="got 2 texts but 1 ids"):
        TwoStageRetriever.from_texts(["x", "y"], ids=["a"])
    with pytest.raises(ValueError, match="first_stages is empty"):
        TwoStageRetriever(first_stages=[])
    with pytest.raises(ValueError, match="names must be unique"):
        TwoStageRetriever(first_stages=[_FixedStage(), _FixedStage()])
    with pytest.raises(TypeError, match=r"first_stages\[0\] has no name and search_many"):
        TwoStageRetriever(first_stages=[object()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"weights name unknown first stages \['dense'\]"):
        TwoStageRetriever(first_stages=[_FixedStage()], weights={"dense": 1.0})
    with pytest.raises(ValueError, match="fusion must be 'rrf' or 'weighted'"):
        TwoStageRetriever(first_stages=[_FixedStage()], fusion="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="score_threshold must not be NaN"):
        TwoStageRetriever(first_stages=[_FixedStage()], score_threshold=float("nan"))
    with pytest.raises(TypeError, match=r"score_threshold must be a number or None, got '0\.5'"):
        TwoStageRetriever(first_stages=[_FixedStage()], score_threshold="0.5")  # type: ignore[arg-type]
    dup = _FixedStage()
    dup.search_many = lambda queries, k: [[SearchHit("x", 1.0, "a"), SearchHit("x", 0.5, "a")] for _ in queries]  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="first stage 'fixed' returned id 'x' more than once"):
        TwoStageRetriever(first_stages=[dup]).retrieve("京都")
    with pytest.raises(ValueError, match="name must be a non-empty str"):
        BM25Index(name="")


def test_a_retriever_pickles_and_keeps_answering(texts: list[str], ids: list[str]) -> None:
    import pickle

    retriever = TwoStageRetriever.from_texts(texts, ids=ids, top_n=3)
    clone = pickle.loads(pickle.dumps(retriever))
    assert clone.retrieve(QUERIES[0]) == retriever.retrieve(QUERIES[0])
    assert clone.last_timings  # its own timings lock works
