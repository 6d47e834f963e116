from __future__ import annotations

import asyncio
import copy
import pickle
from pathlib import Path
from typing import Any

import numpy as np
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
    # the first-stage score travels on the wrapper and, as SentenceTransformerRerank puts it, in the metadata of a
    # copy of the node, excluded from what is embedded or shown to the LLM; the caller's nodes stay as they were
    assert [_retrieval(o) for o in out] == [nodes[r.index].score for r in expected]
    assert [o.node.metadata["retrieval_score"] for o in out] == [nodes[r.index].score for r in expected]
    for o, r in zip(out, expected, strict=True):
        original = nodes[r.index].node
        assert o.node is not original
        assert "retrieval_score" not in original.metadata
        for mode in (MetadataMode.EMBED, MetadataMode.LLM):
            assert o.node.get_content(metadata_mode=mode) == original.get_content(metadata_mode=mode)
        assert "retrieval_score" in o.node.get_content(metadata_mode=MetadataMode.ALL)


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
    rerank = JapaneseRerank(xlmr_ce_path, top_n=2, cross_encoder_kwargs={"batch_size": 4, "overflow": "window"})
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


# ------------------------------------------------------------------------------ names from SentenceTransformerRerank


def test_sentence_transformer_rerank_arguments_carry_over(xlmr_ce_path: Path, corpus_nodes: list[TextNode]) -> None:
    rerank = JapaneseRerank(
        model=str(xlmr_ce_path),
        top_n=2,
        device="cpu",
        keep_retrieval_score=True,
        trust_remote_code=False,
        cross_encoder_kwargs={"max_length": 64, "cache_folder": str(xlmr_ce_path.parent)},
    )
    assert rerank.reranker.max_length == 64
    assert rerank.reranker.device == "cpu"
    given = _scored(corpus_nodes[:5])
    first_stage = {n.node.node_id: n.score for n in given}
    out = rerank.postprocess_nodes(given, query_str=QUERY)
    assert len(out) == 2
    assert [_retrieval(o) for o in out] == [first_stage[o.node.node_id] for o in out]
    assert [o.node.metadata["retrieval_score"] for o in out] == [first_stage[o.node.node_id] for o in out]
    assert all("retrieval_score" not in n.node.metadata for n in given)  # the caller's nodes are untouched
    with pytest.raises(TypeError, match="unexpected keyword argument 'model_kwargs'"):
        JapaneseRerank(xlmr_ce_path, model_kwargs={})  # type: ignore[call-arg]


def test_keep_retrieval_score_false(reranker: Reranker, corpus_nodes: list[TextNode]) -> None:
    out = JapaneseRerank(reranker=reranker, keep_retrieval_score=False).postprocess_nodes(
        _scored(corpus_nodes[:4]), query_str=QUERY
    )
    assert [o.retrieval_score for o in out if isinstance(o, RerankedNode)] == [None] * 3
    assert all("retrieval_score" not in o.node.metadata for o in out)


def test_a_text_node_instead_of_node_with_score_is_a_clear_error(
    reranker: Reranker, corpus_nodes: list[TextNode]
) -> None:
    rerank = JapaneseRerank(reranker=reranker)
    with pytest.raises(TypeError, match=r"nodes\[1\] must be a NodeWithScore, got TextNode \(wrap it: NodeWithScore"):
        rerank.postprocess_nodes([NodeWithScore(node=corpus_nodes[0]), corpus_nodes[1]], query_str=QUERY)  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"nodes\[0\] must be a NodeWithScore, got str$"):
        asyncio.run(rerank.apostprocess_nodes(["富士山"], query_str=QUERY))  # type: ignore[list-item]


def test_pickled_postprocessor_works(xlmr_ce_path: Path, corpus_nodes: list[TextNode]) -> None:
    rerank = JapaneseRerank(xlmr_ce_path, device="cpu", top_n=2, cross_encoder_kwargs={"max_length": 100})
    nodes = _scored(corpus_nodes[:6])
    expected = rerank.postprocess_nodes(nodes, query_str=QUERY)
    back = pickle.loads(pickle.dumps(rerank))
    assert back.reranker._loaded is None
    assert back.reranker.max_length == 100
    assert back.top_n == 2
    got = back.postprocess_nodes(nodes, query_str=QUERY)
    assert [(o.node.node_id, o.score) for o in got] == [(o.node.node_id, o.score) for o in expected]
    twin = copy.deepcopy(rerank)
    assert twin.reranker._loaded is rerank.reranker._loaded


# ------------------------------------------------------------------------------ list-wise normalisation (issue 14)


def _exp_normalize(x: np.ndarray) -> np.ndarray:
    """The Korean reranking walkthrough's formula on one query's raw logits: ``exp(x - max) / sum``."""
    y = np.exp(x - x.max())
    return y / y.sum()


@pytest.fixture(scope="module")
def spread_ce(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ModernBERT cross-encoder whose random logits spread out, so the shares differ."""
    from jp_rerank import testing

    return testing.build_modernbert_cross_encoder(tmp_path_factory.mktemp("li-listwise") / "m", initializer_range=0.3)


def _raw_logits(path: Path, query: str, texts: list[str]) -> np.ndarray:
    """One logit per text from a plain transformers forward pass (no jp-rerank scoring code)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from jp_rerank.text import normalize_text

    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    with torch.inference_mode():
        return np.array(
            [
                float(model(**tok(normalize_text(query), normalize_text(t), return_tensors="pt")).logits[0, 0])
                for t in texts
            ]
        )


def _texts(nodes: list[NodeWithScore]) -> list[str]:
    return [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]


def test_listwise_softmax_scores_are_shares_of_the_raw_logits(spread_ce: Path, corpus_nodes: list[TextNode]) -> None:
    nodes = _scored(corpus_nodes[:12])
    reranker = Reranker(spread_ce, device="cpu", precision="fp32")
    shares = _exp_normalize(_raw_logits(spread_ce, QUERY, _texts(nodes)))
    assert shares.max() - shares.min() > 0.01
    out = JapaneseRerank(reranker=reranker, top_n=None, listwise="softmax").postprocess_nodes(nodes, query_str=QUERY)
    order = sorted(range(len(nodes)), key=lambda i: (-shares[i], i))
    assert [o.node.node_id for o in out] == [nodes[i].node.node_id for i in order]
    assert all(type(o.score) is float for o in out)
    np.testing.assert_allclose([o.score or 0.0 for o in out], shares[order], rtol=1e-4, atol=1e-6)
    assert sum(o.score or 0.0 for o in out) == pytest.approx(1.0, abs=1e-5)
    assert [_retrieval(o) for o in out] == [nodes[i].score for i in order]  # the first-stage score is kept
    again = asyncio.run(
        JapaneseRerank(reranker=reranker, top_n=None, listwise="softmax").apostprocess_nodes(nodes, query_str=QUERY)
    )
    assert [(o.node.node_id, o.score) for o in again] == [(o.node.node_id, o.score) for o in out]


def test_listwise_top_n_and_threshold_apply_to_the_shares(spread_ce: Path, corpus_nodes: list[TextNode]) -> None:
    nodes = _scored(corpus_nodes[:12])
    reranker = Reranker(spread_ce, device="cpu", precision="fp32")
    shares = _exp_normalize(_raw_logits(spread_ce, QUERY, _texts(nodes)))
    cut = float(np.sort(shares)[-3])
    kept = JapaneseRerank(
        reranker=reranker, top_n=None, score_threshold=cut - 1e-6, listwise="softmax"
    ).postprocess_nodes(nodes, query_str=QUERY)
    assert [o.node.node_id for o in kept] == [nodes[i].node.node_id for i in np.argsort(-shares, kind="stable")[:3]]
    top = JapaneseRerank(reranker=reranker, top_n=2, listwise="softmax").postprocess_nodes(nodes, query_str=QUERY)
    assert [o.node.node_id for o in top] == [o.node.node_id for o in kept[:2]]
    assert sum(o.score or 0.0 for o in top) < 1.0  # shares of all nodes given, not renormalised over the kept
    high = JapaneseRerank(reranker=reranker, score_threshold=float(shares.max()) + 1e-3, listwise="softmax")
    assert high.postprocess_nodes(nodes, query_str=QUERY) == []


def test_listwise_default_comes_from_the_engine_and_the_argument_overrides_it(
    spread_ce: Path, corpus_nodes: list[TextNode]
) -> None:
    nodes = _scored(corpus_nodes[:8])
    shares = _exp_normalize(_raw_logits(spread_ce, QUERY, _texts(nodes)))
    engine = Reranker(spread_ce, device="cpu", precision="fp32", listwise="softmax")
    by_engine = JapaneseRerank(reranker=engine, top_n=None)
    assert by_engine.listwise is None
    got = by_engine.postprocess_nodes(nodes, query_str=QUERY)
    np.testing.assert_allclose(sorted(o.score or 0.0 for o in got), np.sort(shares), rtol=1e-4)
    per_node = JapaneseRerank(reranker=engine, top_n=None, listwise="none").postprocess_nodes(nodes, query_str=QUERY)
    sigmoid = Reranker(spread_ce, device="cpu", precision="fp32").rerank(QUERY, _texts(nodes))
    assert [(o.node.node_id, o.score) for o in per_node] == [(nodes[r.index].node.node_id, r.score) for r in sigmoid]
    built = JapaneseRerank(spread_ce, top_n=None, cross_encoder_kwargs={"listwise": "softmax", "precision": "fp32"})
    assert built.reranker.listwise == "softmax"
    assert [o.score for o in built.postprocess_nodes(nodes, query_str=QUERY)] == pytest.approx(
        [o.score for o in got], rel=1e-6
    )
    back = pickle.loads(pickle.dumps(JapaneseRerank(reranker=engine, listwise="none")))
    assert back.listwise == "none"


def test_listwise_shares_are_what_rerank_fusion_combines(spread_ce: Path, corpus_nodes: list[TextNode]) -> None:
    from jp_rerank.fusion import RerankFusion

    first = [10.0 - 1.5 * i for i in range(8)]
    nodes = [NodeWithScore(node=n, score=s) for n, s in zip(corpus_nodes[:8], first, strict=True)]
    reranker = Reranker(spread_ce, device="cpu", precision="fp32")
    out = JapaneseRerank(
        reranker=reranker, top_n=None, listwise="softmax", rerank_fusion=RerankFusion("minmax", 0.5)
    ).postprocess_nodes(nodes, query_str=QUERY)
    shares = _exp_normalize(_raw_logits(spread_ce, QUERY, _texts(nodes)))

    def minmax(x: np.ndarray) -> np.ndarray:
        return (x - x.min()) / (x.max() - x.min())

    expected = 0.5 * minmax(shares) + 0.5 * minmax(np.array(first))
    order = sorted(range(8), key=lambda i: (-expected[i], i))
    assert [o.node.node_id for o in out] == [nodes[i].node.node_id for i in order]
    np.testing.assert_allclose([o.score or 0.0 for o in out], expected[order], rtol=1e-4, atol=1e-6)
    rerank_scores = [o.rerank_score or 0.0 for o in out if isinstance(o, RerankedNode)]
    np.testing.assert_allclose(rerank_scores, shares[order], rtol=1e-4, atol=1e-6)


def test_listwise_bad_value_is_refused(reranker: Reranker) -> None:
    with pytest.raises(ValueError, match="listwise"):
        JapaneseRerank(reranker=reranker, listwise="sum")  # type: ignore[arg-type]
