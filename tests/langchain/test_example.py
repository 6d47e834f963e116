"""examples/langchain_rag.py runs offline end to end (tiny local models, echo chat model)."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore

from jp_rerank import Embedder, Reranker
from langchain_jp_rerank import JapaneseEmbeddings, JapaneseReranker

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langchain_rag.py"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("langchain_rag_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("retriever", ["vector", "bm25", "hybrid"])
def test_example_runs_offline(
    example: ModuleType,
    xlmr_ce_path: Path,
    dense_path: Path,
    retriever: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["--reranker", str(xlmr_ce_path), "--embedder", str(dense_path), "--retriever", retriever, "--top-n", "2"]
    result = example.main([*args, "--question", "富士山の高さは？"])
    assert len(result["docs"]) == 2
    scores = [d.metadata["relevance_score"] for d in result["docs"]]
    assert scores == sorted(scores, reverse=True)
    assert f"[{result['docs'][0].id}]" in result["answer"]  # the echo model quotes the best passage
    printed = capsys.readouterr().out
    assert "Q: 富士山の高さは？" in printed
    assert f"1. [{result['docs'][0].id}]" in printed


@pytest.mark.filterwarnings("ignore:.*langchain-community.* is being sunset:DeprecationWarning")
def test_example_with_a_faiss_store(example: ModuleType, xlmr_ce_path: Path, dense_path: Path) -> None:
    pytest.importorskip("faiss")
    pytest.importorskip("langchain_community.vectorstores")
    args = ["--reranker", str(xlmr_ce_path), "--embedder", str(dense_path), "--store", "faiss", "--first-k", "5"]
    result = example.main(args)
    assert len(result["candidates"]) == 5
    assert len(result["docs"]) == 3
    assert {d.id for d in result["docs"]} <= {d.id for d in result["candidates"]}


def test_chain_async_matches_sync(example: ModuleType, xlmr_ce_path: Path, dense_path: Path) -> None:
    docs = [Document("富士山は3776メートルです。", id="a"), Document("京都には寺が多い。", id="b")]
    store = InMemoryVectorStore(JapaneseEmbeddings(embedder=Embedder(dense_path)))
    store.add_documents(docs)
    chain = example.build_chain(
        store.as_retriever(search_kwargs={"k": 2}),
        JapaneseReranker(reranker=Reranker(xlmr_ce_path), top_n=1),
        example.make_llm("echo"),
    )
    sync = chain.invoke("富士山の高さ")
    assert asyncio.run(chain.ainvoke("富士山の高さ")) == sync
    assert sync["answer"].endswith(f"[{sync['docs'][0].id}] {sync['docs'][0].page_content}")
    assert len(sync["candidates"]) == 2


def test_unknown_llm_is_refused(example: ModuleType) -> None:
    with pytest.raises(SystemExit, match="unknown --llm 'gpt'"):
        example.make_llm("gpt")
