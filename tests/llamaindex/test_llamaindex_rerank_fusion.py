"""Fusion after the rerank in the LlamaIndex adapters: ``NodeWithScore.score`` is the first-stage score."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

from jp_rerank import Reranker
from jp_rerank.fusion import RerankFusion
from llamaindex_jp_rerank import JapaneseRerank, JapaneseRetriever, RerankedNode

QUERY = "富士山の高さは？"


def _scored(nodes: list[TextNode], scores: list[float | None]) -> list[NodeWithScore]:
    return [NodeWithScore(node=n, score=s) for n, s in zip(nodes, scores, strict=False)]


def _texts(nodes: list[NodeWithScore]) -> list[str]:
    return [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]


def _snapshot(nodes: list[NodeWithScore]) -> list[dict[str, Any]]:
    return [n.model_dump() for n in nodes]


def test_rrf_matches_hand_computed_scores(reranker: Reranker, corpus_nodes: list[TextNode]) -> None:
    first = [0.9, 0.2, 0.7, 0.4, 0.8, 0.1]
    nodes = _scored(corpus_nodes[:6], list(first))
    out = JapaneseRerank(
        reranker=reranker, top_n=None, rerank_fusion=RerankFusion("rrf", 0.25, rrf_k=10)
    ).postprocess_nodes(nodes, query_str=QUERY)
    ce = reranker.score(QUERY, _texts(nodes)).astype(np.float64)
    rank_ce = {i: r + 1 for r, i in enumerate(sorted(range(6), key=lambda i: (-ce[i], i)))}
    rank_first = {i: r + 1 for r, i in enumerate(sorted(range(6), key=lambda i: -first[i]))}
    expected = [0.25 / (10 + rank_ce[i]) + 0.75 / (10 + rank_first[i]) for i in range(6)]
    order = sorted(range(6), key=lambda i: (-expected[i], i))
    assert [o.node.node_id for o in out] == [nodes[i].node.node_id for i in order]
    np.testing.assert_allclose([o.score for o in out], [expected[i] for i in order], rtol=1e-9)
    assert all(isinstance(o, RerankedNode) and type(o.score) is float for o in out)
    np.testing.assert_allclose([o.rerank_score for o in out], ce[order], rtol=1e-6)  # type: ignore[attr-defined]
    assert [o.retrieval_score for o in out] == [first[i] for i in order]  # type: ignore[attr-defined]


def test_default_is_rerank_only(reranker: Reranker, corpus_nodes: list[TextNode]) -> None:
    nodes = _scored(corpus_nodes[:6], [0.9, 0.2, 0.7, 0.4, 0.8, 0.1])
    out = JapaneseRerank(reranker=reranker, top_n=None).postprocess_nodes(nodes, query_str=QUERY)
    expected = reranker.rerank(QUERY, _texts(nodes))
    assert [o.score for o in out] == [r.score for r in expected]
    assert all(o.rerank_score is None for o in out)  # type: ignore[attr-defined]


def test_weight_zero_follows_the_node_scores(reranker: Reranker, corpus_nodes: list[TextNode]) -> None:
    first = [0.3, 0.9, 0.1, 0.5, 0.7]
    nodes = _scored(corpus_nodes[:5], first)
    out = JapaneseRerank(reranker=reranker, top_n=3, rerank_fusion=RerankFusion("zscore", 0.0)).postprocess_nodes(
        nodes, query_str=QUERY
    )
    assert [o.node.node_id for o in out] == [nodes[i].node.node_id for i in (1, 4, 3)]


def test_nodes_without_scores(reranker: Reranker, corpus_nodes: list[TextNode]) -> None:
    bare = _scored(corpus_nodes[:5], [None] * 5)
    out = JapaneseRerank(reranker=reranker, top_n=None, rerank_fusion=RerankFusion("minmax", 0.0)).postprocess_nodes(
        bare, query_str=QUERY
    )
    assert [o.node.node_id for o in out] == [n.node.node_id for n in bare]  # no scores: their order
    some = _scored(corpus_nodes[:4], [None, 0.2, math.nan, 0.9])
    mixed = JapaneseRerank(reranker=reranker, top_n=None, rerank_fusion=RerankFusion("rrf", 0.0)).postprocess_nodes(
        some, query_str=QUERY
    )
    ids = [o.node.node_id for o in mixed]
    assert ids[:2] == [some[3].node.node_id, some[1].node.node_id]
    assert set(ids[2:]) == {some[0].node.node_id, some[2].node.node_id}  # no share from the first stage


def test_callers_nodes_untouched_and_keep_retrieval_score_false(
    reranker: Reranker, corpus_nodes: list[TextNode]
) -> None:
    nodes = _scored(corpus_nodes[:6], [0.9, 0.2, 0.7, 0.4, 0.8, 0.1])
    before = _snapshot(nodes)
    rerank = JapaneseRerank(reranker=reranker, top_n=2, rerank_fusion="zscore", keep_retrieval_score=False)
    out = rerank.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
    assert _snapshot(nodes) == before
    assert all(o.retrieval_score is None and o.rerank_score is not None for o in out)  # type: ignore[attr-defined]


def test_single_node_and_async(reranker: Reranker, corpus_nodes: list[TextNode]) -> None:
    import asyncio

    rerank = JapaneseRerank(reranker=reranker, rerank_fusion="minmax")
    one = rerank.postprocess_nodes(_scored(corpus_nodes[:1], [3.0]), query_str=QUERY)
    assert len(one) == 1
    assert one[0].score == 1.0  # min-max of one candidate: 1 for both
    nodes = _scored(corpus_nodes[:6], [0.9, 0.2, 0.7, 0.4, 0.8, 0.1])
    sync = rerank.postprocess_nodes(nodes, query_str=QUERY)
    got = asyncio.run(rerank.apostprocess_nodes(nodes, query_str=QUERY))
    assert [(o.node.node_id, o.score) for o in got] == [(o.node.node_id, o.score) for o in sync]


def test_bad_fusion_is_refused(reranker: Reranker) -> None:
    with pytest.raises(ValueError, match="rerank fusion must be"):
        JapaneseRerank(reranker=reranker, rerank_fusion="mean")


def test_retriever_combines_and_reports_the_rerank_score(reranker: Reranker, corpus_nodes: list[TextNode]) -> None:
    fused = JapaneseRetriever.from_nodes(
        corpus_nodes, reranker=reranker, top_n=5, rerank_fusion=RerankFusion("zscore", 0.0)
    )
    bm25 = JapaneseRetriever.from_nodes(corpus_nodes, top_n=5)
    out = fused.retrieve(QUERY)
    assert [o.node.node_id for o in out] == [o.node.node_id for o in bm25.retrieve(QUERY)]
    assert all(isinstance(o, RerankedNode) and type(o.rerank_score) is float for o in out)
