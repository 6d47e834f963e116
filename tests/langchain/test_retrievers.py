"""JapaneseRetriever (two-stage pipeline) and a compression retriever around JapaneseReranker.

Both run LangChain's standard ``RetrieversIntegrationTests`` suite, plus contract tests of our own.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from copy import deepcopy
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import RetrieversIntegrationTests

from jp_rerank import BM25Index, Embedder, Reranker
from jp_rerank.data import load_demo_corpus, load_demo_queries
from jp_rerank.pipeline import TwoStageRetriever
from langchain_jp_rerank import JapaneseEmbeddings, JapaneseReranker, JapaneseRetriever

QUERY = "富士山の高さは？"
RARE = "寿司"  # MeCab BM25 matches one passage of the demo corpus


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


@pytest.fixture(scope="module")
def bm25_only() -> JapaneseRetriever:
    """BM25 (MeCab) as the only first stage, no reranker: the retriever LangChain users start from."""
    return JapaneseRetriever.from_documents(corpus_documents(), reranker=None)


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore:.*is marked with '@pytest.mark.asyncio' but it is not an async function")
class TestBM25OnlyRetrieverStandard(RetrieversIntegrationTests):
    """LangChain's retriever suite on BM25 alone, with a query only one passage shares a word with."""

    @pytest.fixture(autouse=True)
    def _pipeline(self, bm25_only: JapaneseRetriever) -> None:
        self.shared_pipeline = bm25_only.pipeline

    @property
    def retriever_constructor(self) -> type[JapaneseRetriever]:
        return JapaneseRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"pipeline": self.shared_pipeline}

    @property
    def retriever_query_example(self) -> str:
        return RARE


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


@pytest.mark.usefixtures("tiny_hub")
def test_any_metadata_a_vector_store_takes_is_kept(reranker: Reranker) -> None:
    metadata = {"tags": ["山", "日本"], "info": {"height": 3776, "unit": "m"}, "page": None, "score": float("nan")}
    docs = [Document("富士山は日本一高い山です。", id="a", metadata=metadata), Document("京都の寺。", id="b")]
    before = deepcopy(docs)
    retriever = JapaneseRetriever.from_documents(docs, reranker=reranker, bm25="char2", k=2)
    store = InMemoryVectorStore.from_documents(docs, JapaneseEmbeddings(model_name="static-ja"))  # takes it as well
    assert store.get_by_ids(["a"])[0].metadata["tags"] == ["山", "日本"]
    out = {d.id: d for d in retriever.invoke("富士山")}
    got = out["a"].metadata
    assert got["tags"] == ["山", "日本"]
    assert got["info"] == {"height": 3776, "unit": "m"}
    assert got["page"] is None
    assert got["score"] != got["score"]  # NaN, as given
    assert set(got) == {*metadata, "relevance_score", "first_stage_score"}
    got["tags"].append("changed")  # a copy: neither the caller's nor the retriever's
    assert retriever.invoke("富士山")[0].metadata["tags"] == ["山", "日本"]
    assert docs == before  # the caller's documents are untouched
    # the engine's index stores JSON text for what it cannot store as is
    stage = retriever.pipeline.first_stages[0]
    hit = next(h for h in stage.search("富士山", k=2) if h.id == "a")
    assert json.loads(str(hit.metadata["tags"])) == ["山", "日本"]
    assert hit.metadata["page"] == "null"
    # a retriever sharing the pipeline alone gets the index's view
    bare = JapaneseRetriever(pipeline=retriever.pipeline, k=2)
    assert next(d for d in bare.invoke("富士山") if d.id == "a").metadata["info"] == '{"height": 3776, "unit": "m"}'


def test_metadata_that_cannot_be_stored_is_a_clear_error(reranker: Reranker) -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(TypeError, match=r"metadatas\[0\]\['loop'\] cannot be stored: Circular reference"):
        JapaneseRetriever.from_texts(["富士山"], [{"loop": loop}], reranker=None)
    with pytest.raises(TypeError, match=r"metadatas\[0\] keys must be non-empty str, got 1"):
        JapaneseRetriever.from_texts(["富士山"], [{1: "a"}], reranker=None)  # type: ignore[dict-item]
    with pytest.raises(TypeError, match=r"metadatas\[1\] must be a mapping, got list"):
        JapaneseRetriever.from_texts(["富士山", "京都"], [{}, ["a"]], reranker=None)  # type: ignore[list-item]


def test_bm25_only_returns_k_documents_when_the_corpus_has_them(bm25_only: JapaneseRetriever) -> None:
    matching = [h.id for h in BM25Index().index([d.page_content for d in corpus_documents()]).search(RARE)]
    assert len(matching) == 1  # the query shares a word with one passage only
    docs = bm25_only.invoke(RARE, k=5)
    assert len(docs) == 5
    assert docs[0].metadata["relevance_score"] > 0
    rest = docs[1:]
    assert all(d.metadata["relevance_score"] == d.metadata["first_stage_score"] == 0.0 for d in rest)
    assert [d.id for d in rest] == sorted(d.id for d in rest)  # the tie rule: ascending id
    assert all(d.metadata["title"] for d in rest)  # full documents, metadata included
    assert len(bm25_only.invoke(RARE, k=48)) == 48
    assert len(bm25_only.invoke(RARE, k=100)) == 48  # never more than the corpus


def test_bm25_only_with_a_reranker_reranks_the_filled_candidates(reranker: Reranker) -> None:
    retriever = JapaneseRetriever.from_documents(corpus_documents(), reranker=reranker, k=4, fetch_k=10)
    docs = retriever.invoke(RARE)
    assert len(docs) == 4
    candidates = retriever.pipeline.first_stages[0].search(RARE, k=10)
    assert len(candidates) == 10
    scores = reranker.score(RARE, [c.text for c in candidates]).tolist()
    best = sorted(range(10), key=lambda i: (-scores[i], candidates[i].id))[:4]  # ties: ascending id
    assert [d.id for d in docs] == [candidates[i].id for i in best]
    assert [d.metadata["relevance_score"] for d in docs] == pytest.approx([scores[i] for i in best], abs=1e-6)


def test_relevance_score_without_a_reranker_is_the_documented_first_stage_score(
    bm25_only: JapaneseRetriever,
) -> None:
    docs = bm25_only.invoke(QUERY)
    index = BM25Index().index([d.page_content for d in corpus_documents()], [str(d.id) for d in corpus_documents()])
    raw = dict(zip([d.id for d in docs], index.score(QUERY, [str(d.id) for d in docs]), strict=True))
    assert [d.metadata["relevance_score"] for d in docs] == pytest.approx([raw[d.id] for d in docs])
    assert docs[0].metadata["relevance_score"] > 1  # raw BM25, not in [0, 1], as the docstring says
    assert "without one it is the first-stage score, which is not in [0, 1]" in " ".join(
        str(JapaneseRetriever.__doc__).split()
    )


def test_bm25s_debug_logs_do_not_reach_the_application() -> None:
    app = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format='%(name)s %(message)s')\n"
        "from langchain_jp_rerank import JapaneseRetriever\n"
        "r = JapaneseRetriever.from_texts(['富士山は高い。', '京都の寺。'], reranker=None, bm25='char2')\n"
        "print('hits', len(r.invoke('富士山')))\n"
        "logging.getLogger('app').warning('still logging')\n"
    )
    out = subprocess.run([sys.executable, "-c", app], capture_output=True, text=True, check=True, timeout=300)
    lines = out.stdout.splitlines()
    assert "hits 2" in lines
    assert "app still logging" in lines  # the application's own warnings still show
    assert not [line for line in lines if line.startswith("bm25s")], out.stdout


def test_deep_copies_share_the_index_and_models(hybrid: JapaneseRetriever) -> None:
    twin = hybrid.model_copy(update={"k": 2}, deep=True)
    assert twin.pipeline is hybrid.pipeline
    assert twin.k == 2
    assert [d.id for d in twin.invoke(QUERY)] == [d.id for d in hybrid.invoke(QUERY)][:2]
    assert deepcopy(hybrid).pipeline is hybrid.pipeline


def test_models_named_by_path_are_shared_with_the_other_adapters(xlmr_ce_path: Path, dense_path: Path) -> None:
    compressor = JapaneseReranker(model=xlmr_ce_path)
    embeddings = JapaneseEmbeddings(model_name=dense_path)
    retriever = JapaneseRetriever.from_documents(
        corpus_documents()[:5], reranker=str(xlmr_ce_path), embedder=str(dense_path)
    )
    assert retriever.pipeline.reranker is compressor.reranker
    assert retriever.pipeline.first_stages[0].embedder is embeddings.embedder  # type: ignore[attr-defined]


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
