"""End to end with real llama-index-core objects: VectorStoreIndex + our embedding, query engine + our reranker."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from llama_index.core import Settings, VectorStoreIndex
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.schema import MetadataMode, TextNode
from llama_index.core.vector_stores import SimpleVectorStore

from jp_rerank import Embedder, Reranker
from llamaindex_jp_rerank import JapaneseEmbedding, JapaneseRerank, RerankedNode

QUERY = "富士山の高さは？"


def _vector(index: VectorStoreIndex, node_id: str) -> list[float]:
    store = index.vector_store
    assert isinstance(store, SimpleVectorStore)
    return store.get(node_id)


@pytest.fixture
def index(embedder: Embedder, corpus_nodes: list[TextNode]) -> VectorStoreIndex:
    return VectorStoreIndex(corpus_nodes, embed_model=JapaneseEmbedding(embedder=embedder))


def test_index_stores_document_embeddings(index: VectorStoreIndex, embedder: Embedder) -> None:
    node = index.docstore.get_node("doc-001")
    stored = _vector(index, "doc-001")
    expected = embedder.embed_documents([node.get_content(metadata_mode=MetadataMode.EMBED)])[0]
    np.testing.assert_allclose(stored, expected, atol=1e-5)


def test_query_engine_returns_the_reranked_nodes(
    index: VectorStoreIndex, reranker: Reranker, instrument_events: list[Any]
) -> None:
    rerank = JapaneseRerank(reranker=reranker, top_n=3)
    engine = index.as_query_engine(llm=MockLLM(max_tokens=8), similarity_top_k=10, node_postprocessors=[rerank])
    response = engine.query(QUERY)

    candidates = index.as_retriever(similarity_top_k=10).retrieve(QUERY)
    expected = rerank.postprocess_nodes(candidates, query_str=QUERY)
    got = [(n.node.node_id, n.score) for n in response.source_nodes]
    assert got == [(n.node.node_id, n.score) for n in expected]
    assert len(got) == 3
    assert all(isinstance(n, RerankedNode) for n in response.source_nodes)
    retrieval = {c.node.node_id: c.score for c in candidates}
    firsts = [n.retrieval_score for n in response.source_nodes if isinstance(n, RerankedNode)]
    assert firsts == [retrieval[i] for i, _ in got]
    assert any(isinstance(e, ReRankStartEvent) for e in instrument_events)
    assert any(isinstance(e, ReRankEndEvent) for e in instrument_events)
    assert str(response)  # the mock LLM answered from the reranked context


def test_async_query_gives_the_same_nodes(index: VectorStoreIndex, reranker: Reranker) -> None:
    rerank = JapaneseRerank(reranker=reranker, top_n=4)
    engine = index.as_query_engine(llm=MockLLM(max_tokens=8), similarity_top_k=12, node_postprocessors=[rerank])
    sync = engine.query(QUERY).source_nodes
    out = asyncio.run(engine.aquery(QUERY)).source_nodes
    assert [(n.node.node_id, n.score) for n in out] == [(n.node.node_id, n.score) for n in sync]


def test_async_index_build_matches_sync(embedder: Embedder, corpus_nodes: list[TextNode]) -> None:
    nodes = corpus_nodes[:16]
    embed = JapaneseEmbedding(embedder=embedder, embed_batch_size=4, num_workers=4)
    sync = VectorStoreIndex(nodes, embed_model=embed)

    async def build() -> VectorStoreIndex:
        return VectorStoreIndex(nodes, embed_model=embed, use_async=True)

    built = asyncio.run(build())
    for node in nodes:
        np.testing.assert_allclose(_vector(built, node.node_id), _vector(sync, node.node_id), atol=1e-6)


def test_package_leaves_global_settings_alone(index: VectorStoreIndex, reranker: Reranker) -> None:
    llm_before, embed_before = Settings._llm, Settings._embed_model
    rerank = JapaneseRerank(reranker=reranker, top_n=2)
    index.as_query_engine(llm=MockLLM(), node_postprocessors=[rerank]).query(QUERY)
    assert Settings._llm is llm_before
    assert Settings._embed_model is embed_before
