"""LlamaIndex RAG over the bundled Japanese demo corpus: Japanese embeddings, hybrid retrieval and reranking.

Runs offline with a mock LLM by default (the answer text is a placeholder; the retrieved and reranked passages
are real). Models default to the jp-rerank presets; when they are not in the Hugging Face cache and the hub is
unreachable, tiny random-weight models are built instead (everything runs, but the ranking is meaningless).

    python examples/llamaindex_query_engine.py
    python examples/llamaindex_query_engine.py --question "日本で二番目に高い山は？" --retriever hybrid
    python examples/llamaindex_query_engine.py --reranker /models/reranker --embedder /models/ruri-v3-30m
    python examples/llamaindex_query_engine.py --llm openai:gpt-4o-mini   # needs llama-index-llms-openai
    python examples/llamaindex_query_engine.py --llm ollama:qwen2.5       # needs llama-index-llms-ollama
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from _offline import load_or_toy_engines
from llama_index.core import VectorStoreIndex
from llama_index.core.llms import LLM, MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import TextNode

from jp_rerank import DEFAULT_EMBEDDER, DEFAULT_RERANKER
from jp_rerank.data import load_demo_corpus
from llamaindex_jp_rerank import JapaneseEmbedding, JapaneseRerank, JapaneseRetriever


def make_llm(spec: str) -> LLM:
    """``mock`` (offline), ``openai[:model]`` or ``ollama[:model]`` (their llama-index packages installed)."""
    name, _, model = spec.partition(":")
    if name == "mock":
        return MockLLM(max_tokens=32)
    if name == "openai":
        from llama_index.llms.openai import OpenAI  # pip install llama-index-llms-openai

        return OpenAI(model=model or "gpt-4o-mini")
    if name == "ollama":
        from llama_index.llms.ollama import Ollama  # pip install llama-index-llms-ollama

        return Ollama(model=model or "qwen2.5", request_timeout=120.0)
    raise SystemExit(f"unknown --llm {spec!r}: use mock, openai[:model] or ollama[:model]")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", default="富士山の高さは？")
    parser.add_argument("--retriever", choices=["vector", "bm25", "hybrid"], default="vector")
    parser.add_argument("--reranker", default=DEFAULT_RERANKER, help="alias, hub id or local folder")
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER, help="alias, hub id or local folder")
    parser.add_argument("--llm", default="mock", help="mock | openai[:model] | ollama[:model]")
    parser.add_argument("--first-k", type=int, default=10, help="candidates retrieved before reranking")
    parser.add_argument("--top-n", type=int, default=3, help="passages kept after reranking")
    args = parser.parse_args(argv)

    reranker, embedder, why = load_or_toy_engines(args.reranker, args.embedder)
    if why:
        print(f"!! {why}\n!! using tiny random-weight models instead: the ranking below is meaningless\n")
    nodes = [TextNode(id_=d["id"], text=d["text"], metadata={"title": d["title"]}) for d in load_demo_corpus()]
    embed_model = JapaneseEmbedding(embedder=embedder)
    rerank = JapaneseRerank(reranker=reranker, top_n=args.top_n)
    llm = make_llm(args.llm)

    if args.retriever == "vector":
        index = VectorStoreIndex(nodes, embed_model=embed_model)
        engine: Any = index.as_query_engine(llm=llm, similarity_top_k=args.first_k, node_postprocessors=[rerank])
    else:
        retriever = JapaneseRetriever.from_nodes(
            nodes,
            embedder=embedder if args.retriever == "hybrid" else None,
            first_k=args.first_k,
            similarity_top_k=args.first_k,
        )
        engine = RetrieverQueryEngine.from_args(retriever, llm=llm, node_postprocessors=[rerank])

    response = asyncio.run(engine.aquery(args.question))
    note = "  (mock LLM: placeholder text)" if args.llm == "mock" else ""
    print(f"Q: {args.question}\nA: {response}{note}\n")
    for rank, hit in enumerate(response.source_nodes, 1):
        first = getattr(hit, "retrieval_score", None)
        first_str = "-" if first is None else f"{first:.3f}"
        print(f"{rank}. [{hit.node.node_id}] rerank={hit.get_score():.3f} first-stage={first_str}")
        print(f"   {hit.node.get_content()[:70]}")


if __name__ == "__main__":
    main()
