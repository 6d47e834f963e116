from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload, LlamaDebugHandler
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

from jp_rerank import DEFAULT_RERANKER, Reranker, get_preset
from llamaindex_jp_rerank import JapaneseRerank, RerankedNode

QUERY = "富士山の高さは？"


def _scored(nodes: list[TextNode]) -> list[NodeWithScore]:
    return [NodeWithScore(node=n, score=1.0 - i / 100) for i, n in enumerate(nodes)]


def _retrieval(node: NodeWithScore) -> float | None:
    assert isinstance(node, RerankedNode)
    return node.retrieval_score


def _snapshot(nodes: list[NodeWithScore]) -> list[dict[str, Any]]:
    return [n.model_dump() for n in nodes]


def test_reranks_like_the_engine_and_returns_new_nodes(reranker: Reranker, corpus_nodes: list[TextNode]) -> None:
    nodes = _scored(corpus_nodes[:12])
    rerank = JapaneseRerank(reranker=reranker, top_n=4)
    out = rerank.postprocess_nodes(nodes, query_str=QUERY)

    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    expected = reranker.rerank(QUERY, texts, top_n=4)
    assert [o.node.node_id for o in out] == [nodes[r.index].node.node_id for r in expected]
    assert [o.score for o in out] == [r.score for r in expected]
    assert all(type(o.score) is float for o in out)
    assert all(isinstance(o, RerankedNode) for o in out)
    # first-stage scores travel on the wrapper, the node objects are shared, never copied into metadata
    assert [_retrieval(o) for o in out] == [nodes[r.index].score for r in expected]
    assert all(o.node is nodes[r.index].node for o, r in zip(out, expected, strict=True))
    assert all("retrieval_score" not in o.node.metadata for o in out)


def test_inputs_are_not_mutated(reranker: Reranker, corpus_nodes: list[TextNode]) -> None:
    nodes = _scored(corpus_nodes[:8])
    before = _snapshot(nodes)
    ids = [id(n) for n in nodes]
    rerank = JapaneseRerank(reranker=reranker, top_n=3)
    out = rerank.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
    out_async = asyncio.run(rerank.apostprocess_nodes(nodes, query_str=QUERY))
    assert _snapshot(nodes) == before
    assert [id(n) for n in nodes] == ids
    assert not {id(o) for o in out + out_async} & set(ids)


def test_async_gives_the_same_nodes(reranker: Reranker, corpus_nodes: list[TextNode]) -> None:
    nodes = _scored(corpus_nodes[:10])
    rerank = JapaneseRerank(reranker=reranker, top_n=5)
    sync = rerank.postprocess_nodes(nodes, query_str=QUERY)
    out = asyncio.run(rerank.apostprocess_nodes(nodes, query_str=QUERY))
    assert [(o.node.node_id, o.score) for o in out] == [(s.node.node_id, s.score) for s in sync]


def test_top_n_none_keeps_all_sorted(reranker: Reranker, corpus_nodes: list[TextNode]) -> None:
    nodes = _scored(corpus_nodes[:7])
    out = JapaneseRerank(reranker=reranker, top_n=None).postprocess_nodes(nodes, query_str=QUERY)
    scores = [o.get_score() for o in out]
    assert len(out) == 7
    assert scores == sorted(scores, reverse=True)


def test_score_threshold_filters(reranker: Reranker, corpus_nodes: list[TextNode]) -> None:
    nodes = _scored(corpus_nodes[:10])
    all_scores = sorted(
        o.get_score() for o in JapaneseRerank(reranker=reranker, top_n=None).postprocess_nodes(nodes, query_str=QUERY)
    )
    threshold = all_scores[5]
    out = JapaneseRerank(reranker=reranker, top_n=None, score_threshold=threshold).postprocess_nodes(
        nodes, query_str=QUERY
    )
    assert len(out) == sum(s >= threshold for s in all_scores)
    assert all(o.get_score() >= threshold for o in out)


@pytest.mark.parametrize("mode", [MetadataMode.EMBED, MetadataMode.NONE, MetadataMode.LLM])
def test_metadata_mode_selects_the_scored_text(reranker: Reranker, mode: MetadataMode) -> None:
    node = TextNode(
        text="標高は3776メートルです。",
        metadata={"title": "富士山", "file": "a.txt"},
        excluded_embed_metadata_keys=["file"],
        excluded_llm_metadata_keys=["title"],
    )
    out = JapaneseRerank(reranker=reranker, metadata_mode=mode).postprocess_nodes(
        [NodeWithScore(node=node)], query_str=QUERY
    )
    expected = float(reranker.score(QUERY, [node.get_content(metadata_mode=mode)])[0])
    assert out[0].score == pytest.approx(expected, abs=1e-6)
    assert _retrieval(out[0]) is None


def test_default_metadata_mode_is_embed(reranker: Reranker) -> None:
    assert JapaneseRerank(reranker=reranker).metadata_mode is MetadataMode.EMBED


def test_missing_query_is_a_clear_error(reranker: Reranker, corpus_nodes: list[TextNode]) -> None:
    rerank = JapaneseRerank(reranker=reranker)
    with pytest.raises(ValueError, match="needs a query"):
        rerank.postprocess_nodes(_scored(corpus_nodes[:2]))
    with pytest.raises(ValueError, match="needs a query"):
        asyncio.run(rerank.apostprocess_nodes([]))
    with pytest.raises(ValueError, match="query is empty"):
        rerank.postprocess_nodes(_scored(corpus_nodes[:2]), query_str="  ")


def test_empty_nodes_give_empty_list(reranker: Reranker) -> None:
    assert JapaneseRerank(reranker=reranker).postprocess_nodes([], query_str=QUERY) == []


def test_events_and_callback_are_emitted(
    reranker: Reranker, corpus_nodes: list[TextNode], instrument_events: list[Any]
) -> None:
    debug = LlamaDebugHandler()
    rerank = JapaneseRerank(reranker=reranker, top_n=2, callback_manager=CallbackManager([debug]))
    nodes = _scored(corpus_nodes[:5])
    out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    asyncio.run(rerank.apostprocess_nodes(nodes, query_str=QUERY))

    starts = [e for e in instrument_events if isinstance(e, ReRankStartEvent)]
    ends = [e for e in instrument_events if isinstance(e, ReRankEndEvent)]
    assert len(starts) == len(ends) == 2
    assert starts[0].top_n == 2
    assert starts[0].model_name == reranker.model_id
    assert len(starts[0].nodes) == 5
    assert [n.node.node_id for n in ends[0].nodes] == [o.node.node_id for o in out]

    pairs = debug.get_event_pairs(CBEventType.RERANKING)
    assert len(pairs) == 2
    start, end = pairs[0]
    assert start.payload is not None
    assert start.payload[EventPayload.QUERY_STR] == QUERY
    assert start.payload[EventPayload.TOP_K] == 2
    assert end.payload is not None
    assert end.payload[EventPayload.NODES] == out


def test_injected_engine_is_shared(reranker: Reranker) -> None:
    a = JapaneseRerank(reranker=reranker)
    b = JapaneseRerank(reranker=reranker, top_n=1)
    assert a.reranker is b.reranker is reranker
    assert a.model == reranker.model_id


def test_builds_engine_from_a_path(xlmr_ce_path: Path, corpus_nodes: list[TextNode]) -> None:
    rerank = JapaneseRerank(xlmr_ce_path, top_n=2, batch_size=4, overflow="window")
    assert rerank.reranker.batch_size == 4
    assert rerank.reranker.overflow == "window"
    assert rerank.model == str(xlmr_ce_path.resolve())
    assert len(rerank.postprocess_nodes(_scored(corpus_nodes[:3]), query_str=QUERY)) == 2


def test_default_model_comes_from_presets() -> None:
    rerank = JapaneseRerank()  # lazy: nothing is loaded or downloaded
    assert rerank.model == get_preset(DEFAULT_RERANKER).model_id


def test_engine_options_conflict_with_an_injected_engine(reranker: Reranker) -> None:
    with pytest.raises(ValueError, match=r"\['device'\] cannot be set here"):
        JapaneseRerank(reranker=reranker, device="cpu")
    with pytest.raises(ValueError, match=r"\['model'\] cannot be set here"):
        JapaneseRerank("xsmall", reranker=reranker)
    with pytest.raises(TypeError, match=r"expected a jp_rerank\.Reranker"):
        JapaneseRerank(reranker="xsmall")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"top_n": 0}, ValueError, "top_n must be a positive"),
        ({"top_n": 1.5}, TypeError, "top_n must be an int"),
        ({"score_threshold": float("nan")}, ValueError, "must not be NaN"),
    ],
)
def test_bad_arguments_use_the_engine_checks(
    reranker: Reranker, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        JapaneseRerank(reranker=reranker, **kwargs)


def test_serialises_without_the_engine(reranker: Reranker) -> None:
    data = JapaneseRerank(reranker=reranker, top_n=2).to_dict()
    assert data["class_name"] == "JapaneseRerank"
    assert data["top_n"] == 2
    assert data["model"] == reranker.model_id
    assert "_engine" not in data
    assert JapaneseRerank.class_name() == "JapaneseRerank"
