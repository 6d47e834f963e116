"""Adapters deep-copy (sharing the loaded model) and pickle (reloading it lazily), as LangChain and workers need."""

from __future__ import annotations

import copy
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from operator import methodcaller
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document

from jp_rerank import Reranker
from jp_rerank.data import load_demo_corpus
from langchain_jp_rerank import JapaneseCrossEncoder, JapaneseEmbeddings, JapaneseReranker

QUERY = "富士山の高さは？"


@pytest.fixture
def docs() -> list[Document]:
    return [Document(row["text"], id=row["id"], metadata={"tags": ["demo"]}) for row in load_demo_corpus()[:8]]


def test_model_copy_deep_shares_the_loaded_model(xlmr_ce_path: Path, dense_path: Path, docs: list[Document]) -> None:
    compressor = JapaneseReranker(model=xlmr_ce_path, device="cpu", top_n=2)
    expected = compressor.compress_documents(docs, QUERY)  # loads the model
    twin = compressor.model_copy(update={"top_n": 3}, deep=True)
    assert twin.reranker is not compressor.reranker
    assert twin.reranker._loaded is compressor.reranker._loaded  # one copy of the weights
    assert twin.compress_documents(docs, QUERY)[:2] == expected
    assert copy.deepcopy(compressor).compress_documents(docs, QUERY) == expected
    embeddings = JapaneseEmbeddings(model_name=dense_path, device="cpu")
    vector = embeddings.embed_query(QUERY)
    twin_embeddings = copy.deepcopy(embeddings)
    assert twin_embeddings.embedder.model is embeddings.embedder.model
    assert twin_embeddings.embed_query(QUERY) == vector
    encoder = JapaneseCrossEncoder(model_name=xlmr_ce_path, device="cpu")
    assert encoder.model_copy(deep=True).score([(QUERY, "富士山")]) == encoder.score([(QUERY, "富士山")])


def test_pickle_round_trips_reload_the_model_lazily(xlmr_ce_path: Path, dense_path: Path, docs: list[Document]) -> None:
    compressor = JapaneseReranker(model=xlmr_ce_path, device="cpu", top_n=3, model_kwargs={"max_length": 128})
    expected = compressor.compress_documents(docs, QUERY)
    data = pickle.dumps(compressor)
    assert len(data) < 50_000  # configuration, not weights
    back = pickle.loads(data)
    assert back.reranker._loaded is None
    assert back.top_n == 3
    assert back.reranker.max_length == 128
    assert back.compress_documents(docs, QUERY) == expected
    embeddings = JapaneseEmbeddings(model_name=dense_path, device="cpu", encode_kwargs={"batch_size": 2})
    back_embeddings = pickle.loads(pickle.dumps(embeddings))
    assert back_embeddings.embedder.batch_size == 2
    assert back_embeddings.embed_documents(["京都"]) == embeddings.embed_documents(["京都"])
    encoder = JapaneseCrossEncoder(model_name=str(xlmr_ce_path), model_kwargs={"device": "cpu"})
    assert pickle.loads(pickle.dumps(encoder)).score([(QUERY, "富士山")]) == encoder.score([(QUERY, "富士山")])


@pytest.mark.slow
def test_unpickled_adapters_work_in_a_spawned_worker(
    xlmr_ce_path: Path, dense_path: Path, docs: list[Document]
) -> None:
    """multiprocessing with the spawn start method (the default on macOS / Windows, and what Ray does)."""
    compressor = JapaneseReranker(model=xlmr_ce_path, device="cpu", top_n=3)
    embeddings = JapaneseEmbeddings(model_name=dense_path, device="cpu")
    engine = Reranker(xlmr_ce_path, device="cpu")
    texts = [d.page_content for d in docs]
    li = pytest.importorskip("llamaindex_jp_rerank")
    embedding = li.JapaneseEmbedding(dense_path, device="cpu", embed_batch_size=4)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        # each object is pickled here and unpickled in the worker, which then loads the model on first use
        ranked = pool.submit(methodcaller("compress_documents", docs, QUERY), compressor)
        vectors = pool.submit(methodcaller("embed_documents", texts), embeddings)
        results = pool.submit(methodcaller("rerank", QUERY, texts), engine)
        nodes = pool.submit(methodcaller("get_text_embedding_batch", texts), embedding)
        assert ranked.result(timeout=600) == compressor.compress_documents(docs, QUERY)
        np.testing.assert_allclose(vectors.result(timeout=600), embeddings.embed_documents(texts), atol=1e-6)
        assert results.result(timeout=600) == engine.rerank(QUERY, texts)
        np.testing.assert_allclose(nodes.result(timeout=600), embedding.get_text_embedding_batch(texts), atol=1e-6)
