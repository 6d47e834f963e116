"""JapaneseReranker (document compressor): ordering, top_n, threshold, copies, async and LangChain composition."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough
from langchain_core.tracers.context import collect_runs
from langchain_core.vectorstores import InMemoryVectorStore

from jp_rerank import Embedder, Reranker, RerankResult
from jp_rerank.data import load_demo_corpus, load_demo_queries
from langchain_jp_rerank import JapaneseEmbeddings, JapaneseReranker

QUERY = "富士山の高さは？"


@pytest.fixture
def docs() -> list[Document]:
    return [
        Document(row["text"], id=row["id"], metadata={"title": row["title"], "tags": ["demo"]})
        for row in load_demo_corpus()[:12]
    ]


def expected_order(reranker: Reranker, query: str, docs: Sequence[Document]) -> list[tuple[int, float]]:
    scores = reranker.score(query, [d.page_content for d in docs]).astype(np.float64)
    order = sorted(range(len(docs)), key=lambda i: (-scores[i], i))
    return [(i, float(scores[i])) for i in order]


def test_order_and_scores_follow_the_engine(reranker: Reranker, docs: list[Document]) -> None:
    out = JapaneseReranker(reranker=reranker, top_n=None).compress_documents(docs, QUERY)
    expected = expected_order(reranker, QUERY, docs)
    assert [d.id for d in out] == [docs[i].id for i, _ in expected]
    scores = [d.metadata["relevance_score"] for d in out]
    assert all(type(s) is float for s in scores)
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_allclose(scores, [s for _, s in expected], rtol=1e-6)


@pytest.mark.parametrize("top_n", [1, 3, 12, 50])
def test_top_n(reranker: Reranker, docs: list[Document], top_n: int) -> None:
    out = JapaneseReranker(reranker=reranker, top_n=top_n).compress_documents(docs, QUERY)
    best = expected_order(reranker, QUERY, docs)[:top_n]
    assert [d.id for d in out] == [docs[i].id for i, _ in best]


def test_default_top_n_is_three(reranker: Reranker, docs: list[Document]) -> None:
    assert len(JapaneseReranker(reranker=reranker).compress_documents(docs, QUERY)) == 3


def test_score_threshold(reranker: Reranker, docs: list[Document]) -> None:
    ranked = expected_order(reranker, QUERY, docs)
    cut = ranked[4][1]
    out = JapaneseReranker(reranker=reranker, top_n=None, score_threshold=cut).compress_documents(docs, QUERY)
    assert [d.id for d in out] == [docs[i].id for i, s in ranked if s >= cut]
    assert all(d.metadata["relevance_score"] >= cut for d in out)
    above_all = JapaneseReranker(reranker=reranker, score_threshold=ranked[0][1] + 1.0)
    assert above_all.compress_documents(docs, QUERY) == []


def test_input_documents_are_not_mutated(reranker: Reranker, docs: list[Document]) -> None:
    before = deepcopy(docs)
    out = JapaneseReranker(reranker=reranker, top_n=None).compress_documents(docs, QUERY)
    assert docs == before
    assert all("relevance_score" not in d.metadata for d in docs)
    by_id = {d.id: d for d in docs}
    for copy in out:
        original = by_id[copy.id]
        assert copy is not original
        assert copy.page_content == original.page_content
        assert {k: v for k, v in copy.metadata.items() if k != "relevance_score"} == original.metadata
        assert copy.metadata["tags"] is not original.metadata["tags"]  # deep copy
    out[0].metadata["tags"].append("changed")
    assert by_id[out[0].id].metadata["tags"] == ["demo"]


def test_empty_in_empty_out(reranker: Reranker) -> None:
    compressor = JapaneseReranker(reranker=reranker)
    assert compressor.compress_documents([], QUERY) == []
    assert asyncio.run(compressor.acompress_documents([], QUERY)) == []


def test_documents_without_ids_keep_none(reranker: Reranker) -> None:
    docs = [Document("富士山は3776メートルです。"), Document("")]
    out = JapaneseReranker(reranker=reranker, top_n=None).compress_documents(docs, QUERY)
    assert len(out) == 2
    assert all(d.id is None for d in out)
    assert {d.page_content for d in out} == {"富士山は3776メートルです。", ""}


def test_bad_arguments(reranker: Reranker, docs: list[Document]) -> None:
    with pytest.raises(ValueError, match="top_n must be positive"):
        JapaneseReranker(reranker=reranker, top_n=0)
    with pytest.raises(TypeError, match="top_n must be an int"):
        JapaneseReranker(reranker=reranker, top_n=True)
    compressor = JapaneseReranker(reranker=reranker)
    with pytest.raises(ValueError, match="top_n must be positive"):
        compressor.top_n = -1
    with pytest.raises(ValueError, match="query is empty"):
        compressor.compress_documents(docs, " ")
    with pytest.raises(TypeError, match="query must be a str"):
        compressor.compress_documents(docs, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"documents\[1\] must be a langchain_core Document, got str"):
        compressor.compress_documents([docs[0], "富士山"], QUERY)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="NaN"):
        JapaneseReranker(reranker=reranker, score_threshold=float("nan")).compress_documents(docs, QUERY)
    with pytest.raises(ValueError, match="either reranker= or device, model"):
        JapaneseReranker(reranker=reranker, model="xsmall", device="cpu")
    with pytest.raises(ValueError, match="either reranker= or model_kwargs"):
        JapaneseReranker(reranker=reranker, model_kwargs={"device": "cpu"})
    with pytest.raises(TypeError, match=r"reranker must be a jp_rerank\.Reranker"):
        JapaneseReranker(reranker="xsmall")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        JapaneseReranker(top_k=3)


def test_model_path_builds_a_lazy_engine(xlmr_ce_path: Path, docs: list[Document]) -> None:
    compressor = JapaneseReranker(model=xlmr_ce_path, device="cpu", model_kwargs={"batch_size": 3}, top_n=2)
    assert compressor.model == str(xlmr_ce_path)
    assert compressor.reranker.batch_size == 3
    assert compressor.reranker._loaded is None  # nothing loaded until first use
    assert len(compressor.compress_documents(docs, QUERY)) == 2


@pytest.mark.asyncio
async def test_async_matches_sync_and_runs_off_the_loop(xlmr_ce_path: Path, docs: list[Document]) -> None:
    threads: list[int] = []

    class RecordingReranker(Reranker):
        def rerank(self, *args: Any, **kwargs: Any) -> list[RerankResult]:
            threads.append(threading.get_ident())
            return super().rerank(*args, **kwargs)

    compressor = JapaneseReranker(reranker=RecordingReranker(xlmr_ce_path, device="cpu"), top_n=5)
    got = await compressor.acompress_documents(docs, QUERY)
    assert threads[0] != threading.get_ident()
    assert got == compressor.compress_documents(docs, QUERY)


@pytest.mark.asyncio
async def test_many_concurrent_tasks_give_identical_results(reranker: Reranker, docs: list[Document]) -> None:
    compressor = JapaneseReranker(reranker=reranker, top_n=4)
    queries = [str(q["text"]) for q in load_demo_queries()[:4]] * 3
    expected = [compressor.compress_documents(docs, q) for q in queries]
    got = await asyncio.gather(*(compressor.acompress_documents(docs, q) for q in queries))
    assert list(got) == expected


def test_contextual_compression_retriever(reranker: Reranker, dense_path: Path, docs: list[Document]) -> None:
    store = InMemoryVectorStore(JapaneseEmbeddings(embedder=Embedder(dense_path, device="cpu")))
    store.add_documents(docs)
    compressor = JapaneseReranker(reranker=reranker, top_n=2)
    retriever = ContextualCompressionRetriever(
        base_compressor=compressor, base_retriever=store.as_retriever(search_kwargs={"k": 6})
    )
    out = retriever.invoke(QUERY)
    candidates = store.as_retriever(search_kwargs={"k": 6}).invoke(QUERY)
    assert out == list(compressor.compress_documents(candidates, QUERY))
    assert len(out) == 2
    assert all(isinstance(d.metadata["relevance_score"], float) for d in out)
    assert asyncio.run(retriever.ainvoke(QUERY)) == out


def test_in_an_lcel_chain(reranker: Reranker, docs: list[Document]) -> None:
    compressor = JapaneseReranker(reranker=reranker, top_n=2)

    def rerank(query: str) -> Sequence[Document]:
        return compressor.compress_documents(docs, query)

    def ids(ranked: Sequence[Document]) -> list[str | None]:
        return [d.id for d in ranked]

    chain = RunnableLambda(rerank) | RunnableLambda(ids)
    assert chain.invoke(QUERY) == ids(compressor.compress_documents(docs, QUERY))
    assert asyncio.run(chain.ainvoke(QUERY)) == chain.invoke(QUERY)


def test_one_engine_serves_langchain_and_llamaindex(reranker: Reranker, docs: list[Document]) -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import NodeWithScore, TextNode

    from llamaindex_jp_rerank import JapaneseRerank

    ours = JapaneseReranker(reranker=reranker, top_n=3)
    theirs = JapaneseRerank(reranker=reranker, top_n=3)
    assert ours.reranker is theirs.reranker is reranker
    nodes = [NodeWithScore(node=TextNode(id_=str(d.id), text=d.page_content)) for d in docs]
    ranked_nodes = theirs.postprocess_nodes(nodes, query_str=QUERY)
    ranked_docs = ours.compress_documents(docs, QUERY)
    assert [n.node.node_id for n in ranked_nodes] == [d.id for d in ranked_docs]
    np.testing.assert_allclose([n.score for n in ranked_nodes], [d.metadata["relevance_score"] for d in ranked_docs])


# ------------------------------------------------------------------------------ the configuration pattern


@pytest.mark.parametrize("named_device", [None, "cpu"])
def test_model_kwargs_device_works_with_and_without_device(
    xlmr_ce_path: Path, docs: list[Document], named_device: str | None
) -> None:
    """HuggingFaceEmbeddings' most-copied idiom, in all three LangChain adapters."""
    from langchain_jp_rerank import JapaneseCrossEncoder

    common: dict[str, Any] = {"model_kwargs": {"device": "cpu"}, "device": named_device}
    compressor = JapaneseReranker(model=xlmr_ce_path, top_n=2, **common)
    encoder = JapaneseCrossEncoder(model_name=xlmr_ce_path, **common)
    assert compressor.device == encoder.device == "cpu"
    assert compressor.reranker.device == "cpu"
    assert len(compressor.compress_documents(docs, QUERY)) == 2
    assert len(encoder.score([(QUERY, docs[0].page_content)])) == 1
    with pytest.raises(ValueError, match=r"device is given twice with different values: device='cuda'"):
        JapaneseReranker(model=xlmr_ce_path, device="cuda", model_kwargs={"device": "cpu"})


def test_familiar_names_and_clear_errors(xlmr_ce_path: Path) -> None:
    compressor = JapaneseReranker(model=xlmr_ce_path, model_kwargs={"device": "cpu", "max_length": 64})
    assert compressor.model == str(xlmr_ce_path)
    assert compressor.reranker.max_length == 64
    with pytest.raises(ValueError, match="extra"):
        JapaneseReranker(model_name="small")  # CohereRerank's name only: model
    with pytest.raises(TypeError, match=r"model_kwargs has 'automodel_args', which jp_rerank\.Reranker does not take"):
        JapaneseReranker(model=xlmr_ce_path, model_kwargs={"automodel_args": {}})
    with pytest.raises(ValueError, match="model_kwargs names the model"):
        JapaneseReranker(model_kwargs={"model": "xsmall"})


def test_preset_reaches_the_engine(xlmr_ce_path: Path) -> None:
    compressor = JapaneseReranker(model=xlmr_ce_path, preset="small")
    assert compressor.reranker.preset is not None
    assert compressor.reranker.preset.alias == "small"


def test_adapters_configured_alike_share_one_engine(xlmr_ce_path: Path, docs: list[Document]) -> None:
    pytest.importorskip("llama_index.core")
    from langchain_jp_rerank import JapaneseCrossEncoder
    from llamaindex_jp_rerank import JapaneseRerank

    compressor = JapaneseReranker(model=xlmr_ce_path, device="cpu", model_kwargs={"max_length": 96})
    encoder = JapaneseCrossEncoder(model_name=str(xlmr_ce_path), model_kwargs={"device": "cpu", "max_length": 96})
    postprocessor = JapaneseRerank(xlmr_ce_path, device="cpu", cross_encoder_kwargs={"max_length": 96})
    assert compressor.reranker is encoder.reranker is postprocessor.reranker
    compressor.compress_documents(docs, QUERY)
    assert postprocessor.reranker._loaded is compressor.reranker._loaded is not None  # loaded once, for all
    other = JapaneseReranker(model=xlmr_ce_path, device="cpu", model_kwargs={"max_length": 64})
    assert other.reranker is not compressor.reranker  # other options: another engine


# ------------------------------------------------------------------------------ LCEL and tracing


class RecordingHandler(BaseCallbackHandler):
    """A callback handler as an application writes one: it records the chain runs it is told about."""

    def __init__(self) -> None:
        self.starts: list[dict[str, Any]] = []
        self.ends: dict[UUID, Any] = {}
        self.errors: dict[UUID, BaseException] = {}

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.starts.append({"inputs": inputs, "run_id": run_id, **kwargs})

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.ends[run_id] = outputs

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.errors[run_id] = error


def test_is_an_lcel_step(reranker: Reranker, docs: list[Document]) -> None:
    compressor = JapaneseReranker(reranker=reranker, top_n=2)
    assert isinstance(compressor, Runnable)
    retriever = RunnableLambda(lambda query: docs)
    chain = {"query": RunnablePassthrough(), "documents": retriever} | compressor
    expected = list(compressor.compress_documents(docs, QUERY))
    assert chain.invoke(QUERY) == expected
    assert chain.batch([QUERY, "京都の寺"]) == [expected, list(compressor.compress_documents(docs, "京都の寺"))]
    assert asyncio.run(chain.ainvoke(QUERY)) == expected

    async def stream() -> list[Any]:
        return [chunk async for chunk in chain.astream(QUERY)]

    assert asyncio.run(stream()) == [expected]
    assert compressor.invoke({"query": QUERY, "documents": docs}) == expected


def test_lcel_input_errors_show_the_idiom(reranker: Reranker, docs: list[Document]) -> None:
    compressor = JapaneseReranker(reranker=reranker)
    with pytest.raises(TypeError, match=r"takes \{'query': str, 'documents': \[Document, \.\.\.\]\}, got list"):
        (RunnableLambda(lambda q: docs) | compressor).invoke(QUERY)  # the documents alone: no query
    with pytest.raises(TypeError, match=r"got \['question'\]; in a chain: \{'query': RunnablePassthrough\(\)"):
        compressor.invoke({"question": QUERY})  # type: ignore[typeddict-item]


def test_a_callback_handler_sees_the_rerank_step(reranker: Reranker, docs: list[Document]) -> None:
    handler = RecordingHandler()
    compressor = JapaneseReranker(reranker=reranker, top_n=3)
    out = compressor.compress_documents(docs, QUERY, callbacks=[handler])
    [start] = handler.starts
    assert start["name"] == "JapaneseReranker"
    assert start["inputs"]["query"] == QUERY
    assert list(start["inputs"]["documents"]) == docs  # documents in
    assert start["metadata"]["rerank_model"] == reranker.model_id
    assert start["metadata"]["rerank_top_n"] == 3
    assert handler.ends[start["run_id"]] == list(out)  # documents out, with their scores
    assert all(type(d.metadata["relevance_score"]) is float for d in handler.ends[start["run_id"]])
    asyncio.run(compressor.acompress_documents(docs, QUERY, callbacks=[handler]))
    assert len(handler.starts) == len(handler.ends) == 2
    with pytest.raises(ValueError, match="query is empty"):
        compressor.compress_documents(docs, " ", callbacks=[handler])
    assert isinstance(handler.errors[handler.starts[-1]["run_id"]], ValueError)


@pytest.mark.usefixtures("tiny_hub")
def test_traced_as_a_child_of_the_compression_retriever(reranker: Reranker, docs: list[Document]) -> None:
    store = InMemoryVectorStore(JapaneseEmbeddings(model_name="static-ja"))
    store.add_documents(docs)
    retriever = ContextualCompressionRetriever(
        base_compressor=JapaneseReranker(reranker=reranker, top_n=2),
        base_retriever=store.as_retriever(search_kwargs={"k": 6}),
    )
    with collect_runs() as collected:
        out = retriever.invoke(QUERY)
    [root] = collected.traced_runs
    assert root.run_type == "retriever"
    [rerank_run] = [run for run in root.child_runs if run.name == "JapaneseReranker"]
    assert rerank_run.run_type == "chain"
    assert len(rerank_run.inputs["documents"]) == 6
    assert rerank_run.outputs is not None
    assert [d.metadata["relevance_score"] for d in rerank_run.outputs["output"]] == [
        d.metadata["relevance_score"] for d in out
    ]
    assert rerank_run.end_time is not None
    assert rerank_run.end_time >= rerank_run.start_time  # the latency a tracer shows


# ------------------------------------------------------------------------------ list-wise normalisation (issue 14)


def _exp_normalize(x: np.ndarray) -> np.ndarray:
    """The Korean reranking walkthrough's formula on one query's raw logits: ``exp(x - max) / sum``."""
    y = np.exp(x - x.max())
    return y / y.sum()


@pytest.fixture(scope="module")
def spread_ce(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ModernBERT cross-encoder whose random logits spread out, so the shares differ."""
    from jp_rerank import testing

    return testing.build_modernbert_cross_encoder(tmp_path_factory.mktemp("lc-listwise") / "m", initializer_range=0.3)


def _raw_logits(path: Path, query: str, docs: Sequence[Document]) -> np.ndarray:
    """One logit per document from a plain transformers forward pass (no jp-rerank scoring code)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from jp_rerank.text import normalize_text

    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    out = []
    with torch.inference_mode():
        for doc in docs:
            encoded = tok(normalize_text(query), normalize_text(doc.page_content), return_tensors="pt")
            out.append(float(model(**encoded).logits[0, 0]))
    return np.array(out)


def test_listwise_softmax_scores_are_shares_of_the_raw_logits(spread_ce: Path, docs: list[Document]) -> None:
    reranker = Reranker(spread_ce, device="cpu", precision="fp32")
    shares = _exp_normalize(_raw_logits(spread_ce, QUERY, docs))
    assert shares.max() - shares.min() > 0.01  # the shares really differ
    out = JapaneseReranker(reranker=reranker, top_n=None, listwise="softmax").compress_documents(docs, QUERY)
    order = sorted(range(len(docs)), key=lambda i: (-shares[i], i))
    assert [d.id for d in out] == [docs[i].id for i in order]
    got = [d.metadata["relevance_score"] for d in out]
    assert all(type(s) is float for s in got)
    np.testing.assert_allclose(got, shares[order], rtol=1e-4, atol=1e-6)
    assert sum(got) == pytest.approx(1.0, abs=1e-5)
    # the default follows the engine: per-document sigmoid scores, same ranking
    plain = JapaneseReranker(reranker=reranker, top_n=None).compress_documents(docs, QUERY)
    assert [d.id for d in plain] == [d.id for d in out]
    assert sum(d.metadata["relevance_score"] for d in plain) > 2  # about 0.5 each, not shares


def test_listwise_top_n_and_threshold_apply_to_the_shares(spread_ce: Path, docs: list[Document]) -> None:
    reranker = Reranker(spread_ce, device="cpu", precision="fp32")
    shares = _exp_normalize(_raw_logits(spread_ce, QUERY, docs))
    cut = float(np.sort(shares)[-3])  # the third largest share
    kept = JapaneseReranker(
        reranker=reranker, top_n=None, score_threshold=cut - 1e-6, listwise="softmax"
    ).compress_documents(docs, QUERY)
    assert [d.id for d in kept] == [docs[i].id for i in np.argsort(-shares, kind="stable")[:3]]
    top = JapaneseReranker(reranker=reranker, top_n=2, listwise="softmax").compress_documents(docs, QUERY)
    assert [d.id for d in top] == [d.id for d in kept[:2]]
    assert sum(d.metadata["relevance_score"] for d in top) < 1.0  # shares of all documents given, not of the kept
    # a threshold meant for sigmoid scores keeps (almost) nothing of the shares
    high = JapaneseReranker(reranker=reranker, score_threshold=float(shares.max()) + 1e-3, listwise="softmax")
    assert high.compress_documents(docs, QUERY) == []


def test_listwise_default_comes_from_the_engine_and_the_field_overrides_it(
    spread_ce: Path, docs: list[Document]
) -> None:
    shares = _exp_normalize(_raw_logits(spread_ce, QUERY, docs))
    engine = Reranker(spread_ce, device="cpu", precision="fp32", listwise="softmax")
    adapter = JapaneseReranker(reranker=engine, top_n=None)
    assert adapter.listwise is None
    by_engine = adapter.compress_documents(docs, QUERY)
    np.testing.assert_allclose(sorted(d.metadata["relevance_score"] for d in by_engine), np.sort(shares), rtol=1e-4)
    per_doc = JapaneseReranker(reranker=engine, top_n=None, listwise="none").compress_documents(docs, QUERY)
    sigmoid = JapaneseReranker(
        reranker=Reranker(spread_ce, device="cpu", precision="fp32"), top_n=None
    ).compress_documents(docs, QUERY)
    assert [(d.id, d.metadata["relevance_score"]) for d in per_doc] == [
        (d.id, d.metadata["relevance_score"]) for d in sigmoid
    ]
    built = JapaneseReranker(model=spread_ce, model_kwargs={"listwise": "softmax", "precision": "fp32"}, top_n=None)
    assert built.reranker.listwise == "softmax"
    np.testing.assert_allclose(
        [d.metadata["relevance_score"] for d in built.compress_documents(docs, QUERY)],
        [d.metadata["relevance_score"] for d in by_engine],
        rtol=1e-6,
    )
    again = asyncio.run(adapter.acompress_documents(docs, QUERY))
    assert [d.metadata["relevance_score"] for d in again] == [d.metadata["relevance_score"] for d in by_engine]


def test_listwise_shares_are_what_rerank_fusion_combines(spread_ce: Path, docs: list[Document]) -> None:
    from jp_rerank.fusion import RerankFusion

    reranker = Reranker(spread_ce, device="cpu", precision="fp32")
    first = np.array([10.0 - 1.5 * i for i in range(len(docs))])
    scored_docs = [
        Document(d.page_content, id=d.id, metadata={"score": float(s)}) for d, s in zip(docs, first, strict=True)
    ]
    out = JapaneseReranker(
        reranker=reranker, top_n=None, listwise="softmax", rerank_fusion=RerankFusion("minmax", 0.5)
    ).compress_documents(scored_docs, QUERY)
    shares = _exp_normalize(_raw_logits(spread_ce, QUERY, docs))

    def minmax(x: np.ndarray) -> np.ndarray:
        return (x - x.min()) / (x.max() - x.min())

    expected = 0.5 * minmax(shares) + 0.5 * minmax(first)
    order = sorted(range(len(docs)), key=lambda i: (-expected[i], i))
    assert [d.id for d in out] == [docs[i].id for i in order]
    np.testing.assert_allclose([d.metadata["relevance_score"] for d in out], expected[order], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose([d.metadata["rerank_score"] for d in out], shares[order], rtol=1e-4, atol=1e-6)


def test_listwise_bad_value_is_refused(reranker: Reranker) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="listwise"):
        JapaneseReranker(reranker=reranker, listwise="sum")
