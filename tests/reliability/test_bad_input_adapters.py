"""Bad-input matrix for the LangChain and LlamaIndex adapters (sync and async entry points).

The adapters reuse the engine's checks, so errors carry the engine's wording; documented results keep every
document (no silent drops), never modify the caller's objects, and expose scores as plain floats.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest

from jp_rerank import Embedder, Reranker

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")

from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from langchain_jp_rerank import (
    JapaneseCrossEncoder,
    JapaneseEmbeddings,
    JapaneseReranker,
    JapaneseRetriever,
)
from llamaindex_jp_rerank import JapaneseEmbedding, JapaneseRerank
from llamaindex_jp_rerank import JapaneseRetriever as LlamaRetriever

pytestmark = pytest.mark.timeout(300)

QUERY = "富士山の高さは？"
MESSY = [
    "富士山は3776メートル。" * 8_000,  # ~100k characters
    "制御\x00文字\x1fとゼロ幅\u200b",
    "😀🎌 絵文字だけ",
    "ｶﾀｶﾅとＡＢＣ",
    "日本語 English 한국어",
    "重複",
    "重複",
    "",
]

BAD_QUERIES: list[tuple[Any, type[Exception], str]] = [
    ("", ValueError, "query is empty or whitespace only"),
    (" \u3000\n", ValueError, "query is empty or whitespace only"),
    ("質問\ud800", ValueError, "query contains a lone surrogate"),
    ("\x00", ValueError, "query is empty or whitespace only once control and format characters"),
    ("\u200b", ValueError, "query is empty or whitespace only once control and format characters"),
    ("\ufeff\u2060", ValueError, "query is empty or whitespace only once control and format characters"),
]


# ------------------------------------------------------------------------------------------------ LangChain


@pytest.fixture(scope="module")
def lc_reranker(module_reranker: Reranker) -> JapaneseReranker:
    return JapaneseReranker(reranker=module_reranker, top_n=None)


@pytest.mark.parametrize(("query", "error", "match"), [*BAD_QUERIES, (None, TypeError, "query must be a str")])
def test_langchain_compressor_rejects_bad_queries(
    lc_reranker: JapaneseReranker, query: Any, error: type[Exception], match: str
) -> None:
    docs = [Document(page_content="本文")]
    with pytest.raises(error, match=match):
        lc_reranker.compress_documents(docs, query)
    with pytest.raises(error, match=match):
        asyncio.run(lc_reranker.acompress_documents(docs, query))


@pytest.mark.parametrize(("item", "name"), [(None, "NoneType"), ("生の文字列", "str"), (3, "int"), (b"bytes", "bytes")])
def test_langchain_compressor_rejects_non_documents_naming_the_position(
    lc_reranker: JapaneseReranker, item: Any, name: str
) -> None:
    with pytest.raises(TypeError, match=rf"documents\[1\] must be a langchain_core Document, got {name}"):
        lc_reranker.compress_documents([Document(page_content="a"), item], QUERY)


def test_langchain_compressor_documented_results(lc_reranker: JapaneseReranker) -> None:
    assert lc_reranker.compress_documents([], QUERY) == []
    docs = [Document(page_content=t, id=f"d{i}", metadata={"i": i, "tags": ["x"]}) for i, t in enumerate(MESSY)]
    out = list(lc_reranker.compress_documents(docs, QUERY))
    assert sorted(d.metadata["i"] for d in out) == list(range(len(MESSY)))  # nothing dropped
    assert all(type(d.metadata["relevance_score"]) is float for d in out)
    assert [d.page_content for d in out] == [MESSY[d.metadata["i"]] for d in out]  # caller text, unnormalised
    assert all("relevance_score" not in d.metadata for d in docs)  # the caller's documents are untouched
    assert [d.id for d in asyncio.run(lc_reranker.acompress_documents(docs, QUERY))] == [d.id for d in out]


def test_langchain_compressor_10k_candidates(lc_reranker: JapaneseReranker) -> None:
    docs = [Document(page_content=f"候補{i}は富士山の話。") for i in range(10_000)]
    out = lc_reranker.compress_documents(docs, QUERY)
    assert len(out) == 10_000
    assert len({id(d) for d in out}) == 10_000


def test_langchain_caps_and_nan(xlmr_ce_path: Path, nan_ce_path: Path, poison: str) -> None:
    capped = JapaneseReranker(model=str(xlmr_ce_path), device="cpu", model_kwargs={"max_documents": 2}, top_n=None)
    with pytest.raises(ValueError, match="3 documents in one call is over the cap max_documents=2"):
        capped.compress_documents([Document(page_content="a")] * 3, QUERY)
    broken = JapaneseReranker(model=str(nan_ce_path), device="cpu", top_n=None)
    out = broken.compress_documents([Document(page_content=f"{poison}の話"), Document(page_content="山の話")], QUERY)
    assert [d.page_content for d in out] == ["山の話", f"{poison}の話"]  # NaN ranks last, still returned
    assert math.isnan(out[-1].metadata["relevance_score"])


def test_langchain_cross_encoder_matrix(module_reranker: Reranker) -> None:
    encoder = JapaneseCrossEncoder(reranker=module_reranker)
    assert encoder.score([]) == []
    with pytest.raises(TypeError, match=r"pairs\[1\]\[1\] must be a str, got NoneType"):
        encoder.score([(QUERY, "a"), (QUERY, None)])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"pairs\[0\] must be a \(query, passage\) pair"):
        encoder.score([QUERY])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="empty or whitespace only"):
        encoder.score([(" ", "a")])
    with pytest.raises(ValueError, match="empty or whitespace only once control and format characters"):
        encoder.score([(QUERY, "a"), ("\u200b\x00", "b")])
    scores = encoder.score([(QUERY, t) for t in MESSY])
    assert len(scores) == len(MESSY)
    assert all(type(s) is float and math.isfinite(s) for s in scores)
    assert scores[5] == scores[6]  # duplicates score the same


def test_langchain_embeddings_matrix(module_embedder: Embedder) -> None:
    emb = JapaneseEmbeddings(embedder=module_embedder)
    assert emb.embed_documents([]) == []
    for bad, name in [(None, "NoneType"), (b"x", "bytes"), (1.5, "float")]:
        with pytest.raises(TypeError, match=rf"texts\[1\] must be a str, got {name}"):
            emb.embed_documents(["a", bad])  # type: ignore[list-item]
    for query, error, match in BAD_QUERIES:
        with pytest.raises(error, match=match):
            emb.embed_query(query)
        with pytest.raises(error, match=match):
            asyncio.run(emb.aembed_query(query))
    vectors = emb.embed_documents(MESSY)
    assert len(vectors) == len(MESSY)
    assert vectors[5] == vectors[6]
    assert all(math.isfinite(x) for v in vectors for x in v)


def test_langchain_retriever_matrix(module_reranker: Reranker) -> None:
    retriever = JapaneseRetriever.from_texts(MESSY, reranker=module_reranker, bm25="char2", k=len(MESSY))
    for query, error, match in BAD_QUERIES:
        with pytest.raises(error, match=match):
            retriever.invoke(query)
    with pytest.raises(ValueError, match=r"duplicate|more than once"):
        JapaneseRetriever.from_texts(["a", "b"], ids=["x", "x"], reranker=module_reranker, bm25="char2")
    hits = retriever.invoke("富士山")
    assert hits
    assert all(type(d.metadata["relevance_score"]) is float for d in hits)


# ------------------------------------------------------------------------------------------------ LlamaIndex


@pytest.fixture(scope="module")
def li_reranker(module_reranker: Reranker) -> JapaneseRerank:
    return JapaneseRerank(reranker=module_reranker, top_n=None)


def nodes(texts: list[str]) -> list[NodeWithScore]:
    return [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=0.5) for i, t in enumerate(texts)]


@pytest.mark.parametrize(("query", "error", "match"), BAD_QUERIES)
def test_llamaindex_postprocessor_rejects_bad_queries(
    li_reranker: JapaneseRerank, query: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        li_reranker.postprocess_nodes(nodes(["本文"]), query_str=query)
    with pytest.raises(error, match=match):
        asyncio.run(li_reranker.apostprocess_nodes(nodes(["本文"]), query_bundle=QueryBundle(query)))


def test_llamaindex_postprocessor_errors(li_reranker: JapaneseRerank) -> None:
    with pytest.raises(ValueError, match="JapaneseRerank needs a query: pass query_str or query_bundle"):
        li_reranker.postprocess_nodes(nodes(["本文"]))
    with pytest.raises(TypeError, match=r"nodes\[1\] must be a NodeWithScore, got NoneType"):
        li_reranker.postprocess_nodes([*nodes(["本文"]), None], query_str=QUERY)  # type: ignore[list-item]


def test_llamaindex_postprocessor_documented_results(li_reranker: JapaneseRerank) -> None:
    assert li_reranker.postprocess_nodes([], query_str=QUERY) == []
    given = nodes(MESSY)
    out = li_reranker.postprocess_nodes(given, query_str=QUERY)
    assert sorted(n.node.node_id for n in out) == sorted(n.node.node_id for n in given)
    assert all(type(n.score) is float for n in out)
    assert all(n.score == 0.5 for n in given)  # inputs untouched
    assert all("relevance_score" not in n.node.metadata for n in out)
    again = asyncio.run(li_reranker.apostprocess_nodes(given, query_bundle=QueryBundle(QUERY)))
    assert [n.node.node_id for n in again] == [n.node.node_id for n in out]


def test_llamaindex_nan_and_10k(nan_ce_path: Path, poison: str, li_reranker: JapaneseRerank) -> None:
    broken = JapaneseRerank(str(nan_ce_path), device="cpu", top_n=None)
    out = broken.postprocess_nodes(nodes([f"{poison}の話", "山の話"]), query_str=QUERY)
    assert [n.node.node_id for n in out] == ["n1", "n0"]
    assert math.isnan(out[-1].score or 0.0)
    many = li_reranker.postprocess_nodes(nodes([f"候補{i}" for i in range(10_000)]), query_str=QUERY)
    assert len(many) == 10_000


def test_llamaindex_embedding_matrix(module_embedder: Embedder) -> None:
    emb = JapaneseEmbedding(embedder=module_embedder)
    assert emb.get_text_embedding_batch([]) == []
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got NoneType"):
        emb.get_text_embedding_batch(["a", None])  # type: ignore[list-item]
    for query, error, match in BAD_QUERIES:
        with pytest.raises(error, match=match):
            emb.get_query_embedding(query)
        with pytest.raises(error, match=match):
            asyncio.run(emb.aget_query_embedding(query))
    vectors = emb.get_text_embedding_batch(MESSY)
    assert len(vectors) == len(MESSY)
    assert vectors[5] == vectors[6]


def test_llamaindex_retriever_matrix(module_reranker: Reranker) -> None:
    text_nodes = [TextNode(text=t, id_=f"n{i}") for i, t in enumerate(MESSY)]
    retriever = LlamaRetriever.from_nodes(text_nodes, reranker=module_reranker, bm25="char2", top_n=len(MESSY))
    for query, error, match in BAD_QUERIES:
        with pytest.raises(error, match=match):
            retriever.retrieve(query)
    with pytest.raises(ValueError, match="duplicate node id 'x'"):
        LlamaRetriever.from_nodes([TextNode(text="a", id_="x"), TextNode(text="b", id_="x")], bm25="char2")
    hits = retriever.retrieve("富士山")
    assert hits
    assert all(type(h.score) is float for h in hits)
