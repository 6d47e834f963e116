"""JapaneseReranker (document compressor): ordering, top_n, threshold, copies, async and LangChain composition."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda
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
    with pytest.raises(TypeError, match=r"reranker must be a jp_rerank\.Reranker"):
        JapaneseReranker(reranker="xsmall")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        JapaneseReranker(top_k=3)


def test_model_path_builds_a_lazy_engine(xlmr_ce_path: Path, docs: list[Document]) -> None:
    compressor = JapaneseReranker(model=xlmr_ce_path, device="cpu", model_kwargs={"batch_size": 4}, top_n=2)
    assert compressor.model == str(xlmr_ce_path)
    assert compressor.reranker.batch_size == 4
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
