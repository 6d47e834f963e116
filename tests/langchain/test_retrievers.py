"""JapaneseRetriever (two-stage pipeline) and a compression retriever around JapaneseReranker.

Both run LangChain's standard ``RetrieversIntegrationTests`` suite, plus contract tests of our own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from copy import deepcopy
from functools import partial
from typing import Any

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import RetrieversIntegrationTests

from jp_rerank import Embedder, Reranker
from jp_rerank.data import load_demo_corpus, load_demo_queries
from jp_rerank.pipeline import TwoStageRetriever
from langchain_jp_rerank import JapaneseEmbeddings, JapaneseReranker, JapaneseRetriever

QUERY = "富士山の高さは？"


def corpus_documents() -> list[Document]:
    return [
        Document(row["text"], id=row["id"], metadata={"title": row["title"], "source": row["source"]})
        for row in load_demo_corpus()
    ]


@pytest.fixture(scope="module")
def hybrid(reranker: Reranker, embedder: Embedder) -> JapaneseRetriever:
    """BM25 (MeCab) + dense first stage, fused, reranked by the tiny cross-encoder."""
    return JapaneseRetriever.from_documents(corpus_documents(), reranker=reranker, embedder=embedder, fetch_k=20)


# The suite's async test is a plain ``async def`` (LangChain runs it with asyncio_mode=auto); our pytest config is
# strict, so the class is marked for pytest-asyncio and the "sync test marked asyncio" notice is silenced.
@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore:.*is marked with '@pytest.mark.asyncio' but it is not an async function")
class TestJapaneseRetrieverStandard(RetrieversIntegrationTests):
    """LangChain's retriever suite on our two-stage retriever (``k`` in the constructor and per call)."""

    @pytest.fixture(autouse=True)
    def _pipeline(self, hybrid: JapaneseRetriever) -> None:
        self.shared_pipeline = hybrid.pipeline

    @property
    def retriever_constructor(self) -> type[JapaneseRetriever]:
        return JapaneseRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"pipeline": self.shared_pipeline, "fetch_k": 20}

    @property
    def retriever_query_example(self) -> str:
        return QUERY


def compression_retriever(
    store: InMemoryVectorStore, reranker: Reranker, *, k: int = 4
) -> ContextualCompressionRetriever:
    """A vector-store retriever (our embeddings) fetching 10 candidates, reranked down to ``k`` by our compressor.

    A ``k`` given per call reaches the base retriever (LangChain forwards invoke kwargs to it), so asking for
    fewer than the compressor keeps still returns exactly that many.
    """
    return ContextualCompressionRetriever(
        base_compressor=JapaneseReranker(reranker=reranker, top_n=k),
        base_retriever=store.as_retriever(search_kwargs={"k": 10}),
    )


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore:.*is marked with '@pytest.mark.asyncio' but it is not an async function")
class TestCompressionRetrieverStandard(RetrieversIntegrationTests):
    """LangChain's retriever suite on ContextualCompressionRetriever(JapaneseReranker, vector store retriever)."""

    @pytest.fixture(autouse=True)
    def _parts(self, reranker: Reranker, embedder: Embedder) -> None:
        self.store = InMemoryVectorStore(JapaneseEmbeddings(embedder=embedder))
        self.store.add_documents(corpus_documents())
        self.engine = reranker

    @property
    def retriever_constructor(self) -> Callable[..., BaseRetriever]:  # type: ignore[override]
        return partial(compression_retriever, self.store, self.engine)

    @property
    def retriever_query_example(self) -> str:
        return QUERY


def test_results_follow_the_pipeline(hybrid: JapaneseRetriever) -> None:
    docs = hybrid.invoke(QUERY)
    passages = hybrid.pipeline.retrieve(QUERY, top_n=4, first_k=20)
    assert [d.id for d in docs] == [p.id for p in passages]
    assert [d.page_content for d in docs] == [p.text for p in passages]
    scores = [d.metadata["relevance_score"] for d in docs]
    assert all(type(s) is float for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert all(type(d.metadata["first_stage_score"]) is float for d in docs)
    by_id = {d.id: d for d in corpus_documents()}
    for doc in docs:
        assert doc.metadata["title"] == by_id[doc.id].metadata["title"]


def test_k_and_fetch_k_per_call(hybrid: JapaneseRetriever) -> None:
    assert len(hybrid.invoke(QUERY, k=7)) == 7
    assert len(hybrid.invoke(QUERY, k=7, fetch_k=3)) == 3
    assert len(hybrid.invoke(QUERY)) == hybrid.k == 4
    with pytest.raises(ValueError, match="top_n must be positive"):
        hybrid.invoke(QUERY, k=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'top_k'"):
        hybrid.invoke(QUERY, top_k=2)
    with pytest.raises(ValueError, match="query is empty"):
        hybrid.invoke("  ")


def test_input_documents_are_not_mutated_nor_shared(reranker: Reranker) -> None:
    docs = corpus_documents()[:10]
    before = deepcopy(docs)
    retriever = JapaneseRetriever.from_documents(docs, reranker=reranker, k=10)
    assert docs == before
    out = retriever.invoke(QUERY)
    assert all("relevance_score" not in d.metadata for d in docs)
    out[0].metadata["title"] = "changed"
    for doc in docs:
        doc.metadata["source"] = "changed after indexing"
    again = retriever.invoke(QUERY)
    assert [d.id for d in again] == [d.id for d in out]
    assert all(d.metadata["source"] == "jp-rerank demo corpus" for d in again)
    assert again[0].metadata["title"] != "changed"


def test_metadata_must_be_flat(reranker: Reranker) -> None:
    nested = [Document("富士山", id="a", metadata={"tags": ["山"]})]
    with pytest.raises(TypeError, match=r"metadatas\[0\]\['tags'\] must be str, int, float or bool"):
        JapaneseRetriever.from_documents(nested, reranker=reranker)


def test_documents_without_ids_get_positions(reranker: Reranker) -> None:
    docs = [Document("富士山は日本一高い山です。"), Document("京都には寺が多い。", id="kyoto")]
    retriever = JapaneseRetriever.from_documents(docs, reranker=reranker, bm25="char2")
    assert {d.id for d in retriever.invoke("富士山と京都")} == {"0", "kyoto"}


def test_without_reranker_returns_the_first_stage_order(embedder: Embedder) -> None:
    retriever = JapaneseRetriever.from_documents(corpus_documents(), reranker=None, embedder=embedder, k=5)
    docs = retriever.invoke(QUERY)
    assert [d.metadata["relevance_score"] for d in docs] == [d.metadata["first_stage_score"] for d in docs]
    assert retriever.pipeline.reranker is None


def test_shares_engines_with_the_other_adapters(reranker: Reranker, embedder: Embedder) -> None:
    compressor = JapaneseReranker(reranker=reranker)
    embeddings = JapaneseEmbeddings(embedder=embedder)
    retriever = JapaneseRetriever.from_documents(corpus_documents(), reranker=compressor, embedder=embeddings)
    assert retriever.pipeline.reranker is reranker
    shared = JapaneseRetriever(pipeline=retriever.pipeline, k=2)
    assert [d.id for d in shared.invoke(QUERY)] == [d.id for d in retriever.invoke(QUERY)][:2]


def test_bad_arguments(hybrid: JapaneseRetriever) -> None:
    with pytest.raises(TypeError, match=r"pipeline must be a jp_rerank\.pipeline\.TwoStageRetriever"):
        JapaneseRetriever(pipeline="bm25")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be positive"):
        JapaneseRetriever(pipeline=hybrid.pipeline, k=0)
    with pytest.raises(ValueError, match="fetch_k must be positive"):
        JapaneseRetriever(pipeline=hybrid.pipeline, fetch_k=-2)
    with pytest.raises(ValueError, match="texts is empty"):
        JapaneseRetriever.from_documents([], reranker=None)
    assert isinstance(hybrid.pipeline, TwoStageRetriever)


@pytest.mark.asyncio
async def test_async_equals_sync_under_concurrency(hybrid: JapaneseRetriever) -> None:
    queries = [str(q["text"]) for q in load_demo_queries()[:4]] * 3
    expected = [hybrid.invoke(q) for q in queries]
    got = await asyncio.gather(*(hybrid.ainvoke(q) for q in queries))
    assert list(got) == expected
