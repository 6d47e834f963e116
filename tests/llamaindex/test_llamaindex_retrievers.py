from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import Document, MetadataMode, NodeWithScore, TextNode

from jp_rerank import Embedder, Reranker
from jp_rerank.pipeline import TwoStageRetriever
from llamaindex_jp_rerank import JapaneseEmbedding, JapaneseRerank, JapaneseRetriever, RerankedNode

QUERY = "富士山の高さは？"


def _snapshot(nodes: list[TextNode]) -> list[dict[str, Any]]:
    return [n.model_dump() for n in nodes]


def test_bm25_finds_japanese_answers(corpus_nodes: list[TextNode], demo_queries: list[dict[str, Any]]) -> None:
    retriever = JapaneseRetriever.from_nodes(corpus_nodes, top_n=3)
    top1 = top3 = 0
    for q in demo_queries:
        hits = retriever.retrieve(q["text"])
        ids = [h.node.node_id for h in hits]
        top1 += ids[0] in q["relevant"]
        top3 += any(i in q["relevant"] for i in ids)
        scores = [h.get_score() for h in hits]
        assert scores == sorted(scores, reverse=True)
        assert all(s > 0 for s in scores)
    assert top3 == len(demo_queries)
    assert top1 >= len(demo_queries) - 2


def test_returns_the_callers_nodes_unmodified(corpus_nodes: list[TextNode]) -> None:
    before = _snapshot(corpus_nodes)
    retriever = JapaneseRetriever.from_nodes(corpus_nodes, top_n=5)
    hits = retriever.retrieve(QUERY)
    by_id = {n.node_id: n for n in corpus_nodes}
    assert len(hits) == 5
    assert all(type(h) is NodeWithScore for h in hits)
    assert all(h.node is by_id[h.node.node_id] for h in hits)
    assert all(type(h.score) is float for h in hits)
    assert _snapshot(corpus_nodes) == before


def test_metadata_mode_decides_the_indexed_text() -> None:
    nodes = [
        TextNode(id_="a", text="標高は3776メートル。", metadata={"title": "富士山"}),
        TextNode(id_="b", text="寺が多い町。", metadata={"title": "京都"}),
    ]
    with_title = JapaneseRetriever.from_nodes(nodes, metadata_mode=MetadataMode.EMBED)
    text_only = JapaneseRetriever.from_nodes(nodes, metadata_mode=MetadataMode.NONE)
    assert [h.node.node_id for h in with_title.retrieve("富士山")] == ["a"]
    assert text_only.retrieve("富士山") == []  # the word is only in the metadata


def test_with_reranker_returns_reranked_nodes(reranker: Reranker, corpus_nodes: list[TextNode]) -> None:
    retriever = JapaneseRetriever.from_nodes(corpus_nodes, reranker=JapaneseRerank(reranker=reranker), top_n=4)
    assert retriever.pipeline.reranker is reranker
    hits = retriever.retrieve(QUERY)
    assert len(hits) == 4
    assert all(isinstance(h, RerankedNode) for h in hits)
    texts = [h.node.get_content(metadata_mode=MetadataMode.EMBED) for h in hits]
    expected = reranker.score(QUERY, texts)
    assert [h.score for h in hits] == pytest.approx([float(s) for s in expected], abs=1e-5)
    bm25_only = {h.node.node_id: h.score for h in JapaneseRetriever.from_nodes(corpus_nodes, top_n=100).retrieve(QUERY)}
    for h in hits:
        assert isinstance(h, RerankedNode)
        assert h.retrieval_score == pytest.approx(bm25_only[h.node.node_id])


def test_hybrid_fuses_bm25_and_dense(embedder: Embedder, corpus_nodes: list[TextNode]) -> None:
    retriever = JapaneseRetriever.from_nodes(
        corpus_nodes, embedder=JapaneseEmbedding(embedder=embedder), top_n=5, first_k=10
    )
    assert [s.name for s in retriever.pipeline.first_stages] == ["dense", "bm25"]
    hits = retriever.retrieve(QUERY)
    assert len(hits) == 5
    scores = [h.get_score() for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(0 < s <= 2 / 61 for s in scores)  # reciprocal rank fusion of two rankings (k=60)


def test_async_matches_sync(corpus_nodes: list[TextNode]) -> None:
    retriever = JapaneseRetriever.from_nodes(corpus_nodes, top_n=5)
    sync = retriever.retrieve(QUERY)
    out = asyncio.run(retriever.aretrieve(QUERY))
    assert [(h.node.node_id, h.score) for h in out] == [(h.node.node_id, h.score) for h in sync]


def test_per_call_limits_override_the_pipeline(corpus_nodes: list[TextNode]) -> None:
    pipeline = TwoStageRetriever.from_texts(
        [n.get_content(metadata_mode=MetadataMode.EMBED) for n in corpus_nodes],
        ids=[n.node_id for n in corpus_nodes],
        top_n=10,
    )
    assert len(JapaneseRetriever(pipeline, corpus_nodes).retrieve(QUERY)) == 10
    assert len(JapaneseRetriever(pipeline, corpus_nodes, similarity_top_k=2).retrieve(QUERY)) == 2


def test_from_documents_chunks_and_links_nodes() -> None:
    text = "富士山は日本一高い山です。" * 20 + "京都には寺が多い。" * 5
    doc = Document(text=text, metadata={"source": "guide.txt"})
    before = doc.model_dump()
    retriever = JapaneseRetriever.from_documents([doc], chunk_size=60, chunk_overlap=10, top_n=1)
    hits = retriever.retrieve("京都の寺")
    node = hits[0].node
    assert "京都" in node.get_content()
    assert len(node.get_content()) <= 60
    assert node.metadata == {"source": "guide.txt"}
    assert node.ref_doc_id == doc.doc_id
    assert doc.model_dump() == before


def test_in_a_query_engine_with_a_reranker(reranker: Reranker, corpus_nodes: list[TextNode]) -> None:
    retriever = JapaneseRetriever.from_nodes(corpus_nodes, top_n=8)
    rerank = JapaneseRerank(reranker=reranker, top_n=3)
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM(max_tokens=8), node_postprocessors=[rerank])
    response = engine.query(QUERY)
    expected = rerank.postprocess_nodes(retriever.retrieve(QUERY), query_str=QUERY)
    assert [(n.node.node_id, n.score) for n in response.source_nodes] == [(n.node.node_id, n.score) for n in expected]


def test_bad_arguments(corpus_nodes: list[TextNode]) -> None:
    pipeline = TwoStageRetriever.from_texts(["富士山"], ids=["x"])
    with pytest.raises(ValueError, match="duplicate node id 'doc-001'"):
        JapaneseRetriever.from_nodes([corpus_nodes[0], corpus_nodes[0]])
    with pytest.raises(ValueError, match="duplicate node id"):
        JapaneseRetriever(pipeline, [corpus_nodes[0], corpus_nodes[0]])
    with pytest.raises(ValueError, match="no first stage"):
        JapaneseRetriever.from_nodes(corpus_nodes, bm25=None)
    with pytest.raises(ValueError, match="similarity_top_k must be positive"):
        JapaneseRetriever(pipeline, corpus_nodes, similarity_top_k=0)
    with pytest.raises(TypeError, match="TwoStageRetriever"):
        JapaneseRetriever(object(), corpus_nodes)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="query is empty"):
        JapaneseRetriever.from_nodes(corpus_nodes).retrieve(" ")
    with pytest.raises(KeyError, match="not one of the nodes"):
        JapaneseRetriever(pipeline, corpus_nodes[:1]).retrieve("富士山")


def test_similarity_top_k_as_for_llamaindex_retrievers(corpus_nodes: list[TextNode]) -> None:
    retriever = JapaneseRetriever.from_nodes(corpus_nodes, similarity_top_k=3)
    assert retriever.similarity_top_k == 3
    assert len(retriever.retrieve(QUERY)) == 3
    pipeline = retriever.pipeline
    assert len(JapaneseRetriever(pipeline, corpus_nodes, similarity_top_k=2).retrieve(QUERY)) == 2
    with pytest.raises(TypeError, match="unexpected keyword argument 'top_n'"):
        JapaneseRetriever(pipeline, corpus_nodes, top_n=2)  # type: ignore[call-arg]  # LlamaIndex's name only
    docs = [Document(text="富士山は日本一高い山です。" * 5 + "京都には寺が多い。" * 5)]
    assert (
        len(JapaneseRetriever.from_documents(docs, chunk_size=40, chunk_overlap=5, similarity_top_k=1).retrieve("京都"))
        == 1
    )
    with pytest.raises(ValueError, match="similarity_top_k must be positive"):
        JapaneseRetriever(pipeline, corpus_nodes, similarity_top_k=0)


def test_models_named_by_path_are_the_shared_engines(
    xlmr_ce_path: Path, dense_path: Path, corpus_nodes: list[TextNode]
) -> None:
    rerank = JapaneseRerank(xlmr_ce_path)
    embedding = JapaneseEmbedding(dense_path)
    retriever = JapaneseRetriever.from_nodes(
        corpus_nodes[:6], reranker=str(xlmr_ce_path), embedder=dense_path, similarity_top_k=2
    )
    assert retriever.pipeline.reranker is rerank.reranker
    assert retriever.pipeline.first_stages[0].embedder is embedding.embedder  # type: ignore[attr-defined]
    assert len(retriever.retrieve(QUERY)) == 2
