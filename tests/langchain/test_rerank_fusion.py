"""Fusion after the rerank in the LangChain adapters: the score each document arrived with is combined."""

from __future__ import annotations

import math
from copy import deepcopy

import numpy as np
import pytest
from langchain_core.documents import Document

from jp_rerank import Reranker
from jp_rerank.data import load_demo_corpus
from jp_rerank.fusion import RerankFusion
from langchain_jp_rerank import JapaneseReranker, JapaneseRetriever

QUERY = "富士山の高さは？"


@pytest.fixture
def docs() -> list[Document]:
    rows = load_demo_corpus()[:8]
    # first-stage scores that disagree with any model: descending in input order, on a BM25-like scale
    return [
        Document(row["text"], id=row["id"], metadata={"title": row["title"], "score": 10.0 - 1.5 * i})
        for i, row in enumerate(rows)
    ]


def _z(values: np.ndarray) -> np.ndarray:
    std = values.std()
    return np.zeros_like(values) if std == 0 else (values - values.mean()) / std


def test_zscore_fusion_matches_hand_computed_scores(reranker: Reranker, docs: list[Document]) -> None:
    weight = 0.3
    out = JapaneseReranker(
        reranker=reranker, top_n=None, rerank_fusion=RerankFusion("zscore", weight)
    ).compress_documents(docs, QUERY)
    ce = reranker.score(QUERY, [d.page_content for d in docs]).astype(np.float64)
    first = np.array([d.metadata["score"] for d in docs])
    expected = weight * _z(ce) + (1 - weight) * _z(first)
    order = sorted(range(len(docs)), key=lambda i: (-expected[i], i))
    assert [d.id for d in out] == [docs[i].id for i in order]
    np.testing.assert_allclose([d.metadata["relevance_score"] for d in out], expected[order], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([d.metadata["rerank_score"] for d in out], ce[order], rtol=1e-6)
    assert [d.metadata["first_stage_score"] for d in out] == first[order].tolist()
    assert all(type(d.metadata[k]) is float for d in out for k in ("relevance_score", "rerank_score"))


def test_weight_zero_keeps_the_first_stage_order_and_one_keeps_the_rerank_order(
    reranker: Reranker, docs: list[Document]
) -> None:
    shuffled = [docs[i] for i in (3, 0, 7, 5, 1, 6, 2, 4)]
    by_first = JapaneseReranker(reranker=reranker, top_n=None, rerank_fusion=RerankFusion("minmax", 0.0))
    assert [d.id for d in by_first.compress_documents(shuffled, QUERY)] == [d.id for d in docs]
    only = JapaneseReranker(reranker=reranker, top_n=None).compress_documents(shuffled, QUERY)
    by_rerank = JapaneseReranker(reranker=reranker, top_n=None, rerank_fusion=RerankFusion("zscore", 1.0))
    assert [d.id for d in by_rerank.compress_documents(shuffled, QUERY)] == [d.id for d in only]


def test_default_is_rerank_only_and_writes_no_new_keys(reranker: Reranker, docs: list[Document]) -> None:
    compressor = JapaneseReranker(reranker=reranker, top_n=3)
    assert not compressor.rerank_fusion.active
    out = compressor.compress_documents(docs, QUERY)
    assert all(set(d.metadata) == {"title", "score", "relevance_score"} for d in out)


def test_documents_without_scores_use_their_order_as_the_first_stage(reranker: Reranker, docs: list[Document]) -> None:
    bare = [Document(d.page_content, id=d.id) for d in docs]
    out = JapaneseReranker(reranker=reranker, top_n=None, rerank_fusion=RerankFusion("rrf", 0.0)).compress_documents(
        bare, QUERY
    )
    assert [d.id for d in out] == [d.id for d in bare]
    assert all("first_stage_score" not in d.metadata for d in out)
    np.testing.assert_allclose(
        [d.metadata["rerank_score"] for d in out], reranker.score(QUERY, [d.page_content for d in bare]), rtol=1e-6
    )


def test_a_document_missing_its_score_ties_with_the_first_stages_last(reranker: Reranker, docs: list[Document]) -> None:
    broken = deepcopy(docs)
    broken[0].metadata["score"] = "10"  # a string is not a score
    broken[1].metadata["score"] = math.nan
    del broken[2].metadata["score"]
    out = JapaneseReranker(reranker=reranker, top_n=None, rerank_fusion=RerankFusion("minmax", 0.0)).compress_documents(
        broken, QUERY
    )
    # the three without a score tie with the lowest-scored one (ties: input order), after the others
    assert [d.id for d in out] == [d.id for d in broken[3:7]] + [d.id for d in broken[:3]] + [broken[7].id]
    assert [d.metadata.get("first_stage_score") for d in out[4:7]] == [None, None, None]
    assert next(d for d in out if d.id == broken[0].id).metadata["score"] == "10"  # left as given


def test_the_first_key_holding_a_number_is_used(reranker: Reranker, docs: list[Document]) -> None:
    mixed = [
        Document(d.page_content, id=d.id, metadata={"first_stage_score": None, "relevance_score": float(i)})
        for i, d in enumerate(docs)
    ]
    out = JapaneseReranker(reranker=reranker, top_n=2, rerank_fusion=RerankFusion("zscore", 0.0)).compress_documents(
        mixed, QUERY
    )
    assert [d.id for d in out] == [docs[-1].id, docs[-2].id]
    assert out[0].metadata["first_stage_score"] == float(len(docs) - 1)
    custom = JapaneseReranker(
        reranker=reranker, top_n=1, rerank_fusion="zscore", first_stage_score_keys=("bm25",)
    ).compress_documents(mixed, QUERY)
    assert "first_stage_score" in custom[0].metadata
    assert custom[0].metadata["first_stage_score"] is None


def test_callers_documents_are_untouched(reranker: Reranker, docs: list[Document]) -> None:
    before = deepcopy(docs)
    out = JapaneseReranker(reranker=reranker, top_n=None, rerank_fusion="rrf").compress_documents(docs, QUERY)
    assert docs == before
    assert all(a.metadata is not b.metadata for a in out for b in docs)


def test_single_candidate_ties_and_threshold(reranker: Reranker, docs: list[Document]) -> None:
    one = JapaneseReranker(reranker=reranker, rerank_fusion="zscore").compress_documents(docs[:1], QUERY)
    assert len(one) == 1
    assert one[0].metadata["relevance_score"] == 0.0  # z-scores of one candidate are 0
    same = [Document("同じ文です。", id=str(i), metadata={"score": 1.0}) for i in range(4)]
    tied = JapaneseReranker(reranker=reranker, top_n=None, rerank_fusion="minmax").compress_documents(same, QUERY)
    assert [d.id for d in tied] == ["0", "1", "2", "3"]  # all tied: input order
    kept = JapaneseReranker(
        reranker=reranker, top_n=None, rerank_fusion=RerankFusion("minmax", 0.0), score_threshold=0.5
    ).compress_documents(docs, QUERY)
    assert all(d.metadata["relevance_score"] >= 0.5 for d in kept)
    assert 0 < len(kept) < len(docs)
    assert JapaneseReranker(reranker=reranker, rerank_fusion="rrf").compress_documents([], QUERY) == []


def test_bad_settings_are_refused(reranker: Reranker) -> None:
    with pytest.raises(ValueError, match="rerank fusion must be"):
        JapaneseReranker(reranker=reranker, rerank_fusion="sum")
    with pytest.raises(ValueError, match=r"weight must be a number in \[0, 1\]"):
        JapaneseReranker(reranker=reranker, rerank_fusion=RerankFusion("zscore", 1.5))
    with pytest.raises(TypeError, match="rerank fusion must be a method name"):
        JapaneseReranker(reranker=reranker, rerank_fusion=0.5)


def test_retriever_reports_combined_and_rerank_scores(reranker: Reranker) -> None:
    rows = load_demo_corpus()
    docs = [Document(r["text"], id=r["id"]) for r in rows]
    plain = JapaneseRetriever.from_documents(docs, reranker=reranker, k=5)
    fused = JapaneseRetriever.from_documents(docs, reranker=reranker, k=5, rerank_fusion=RerankFusion("zscore", 0.0))
    first_only = JapaneseRetriever.from_documents(docs, reranker=None, k=5)
    assert "rerank_score" not in plain.invoke(QUERY)[0].metadata
    out = fused.invoke(QUERY)
    assert [d.id for d in out] == [d.id for d in first_only.invoke(QUERY)]  # weight 0: the BM25 order
    assert all(type(d.metadata["rerank_score"]) is float for d in out)
    scores = [d.metadata["relevance_score"] for d in out]
    assert scores == sorted(scores, reverse=True)
