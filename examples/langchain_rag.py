"""LangChain RAG over the bundled Japanese demo corpus: first-stage retriever → rerank → prompt → chat model.

An LCEL chain: a first stage (a vector store over JapaneseEmbeddings: in-memory, FAISS or Chroma; or
jp-rerank's Japanese BM25 / hybrid JapaneseRetriever) fetches candidates, JapaneseReranker (a Runnable step taking
{"query", "documents"}) keeps the best few, and a prompt + chat model answers. Every step, the rerank included,
shows up in LangChain callbacks and tracers (LangSmith).
Runs offline with an echo model by default (it quotes the best passage instead of generating); pass --llm to use
a real chat model. Models default to the jp-rerank presets; when they are not in the Hugging Face cache and the hub
is unreachable, tiny random-weight models are built instead (everything runs, but the ranking is meaningless).

    python examples/langchain_rag.py
    python examples/langchain_rag.py --question "日本で二番目に高い山は？" --retriever hybrid
    python examples/langchain_rag.py --reranker /models/reranker --embedder /models/ruri-v3-30m
    python examples/langchain_rag.py --store faiss     # needs langchain-community and faiss-cpu
    python examples/langchain_rag.py --store chroma    # needs langchain-chroma
    python examples/langchain_rag.py --llm openai:gpt-4o-mini   # needs langchain-openai and OPENAI_API_KEY
    python examples/langchain_rag.py --llm ollama:qwen2.5       # needs langchain-ollama and a local Ollama
"""

from __future__ import annotations

import argparse
from operator import itemgetter
from typing import Any

from _offline import load_or_toy_engines
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompt_values import PromptValue
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore, VectorStore

from jp_rerank import DEFAULT_EMBEDDER, DEFAULT_RERANKER
from jp_rerank.data import load_demo_corpus
from langchain_jp_rerank import JapaneseEmbeddings, JapaneseReranker, JapaneseRetriever

PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "あなたは日本語の質問に答えるアシスタントです。次の資料だけを根拠に、簡潔に答えてください。\n\n{context}",
        ),
        ("human", "{question}"),
    ]
)


def echo_answer(prompt: PromptValue) -> AIMessage:
    """An offline stand-in for a chat model: answers with the first passage of the prompt's context."""
    system = prompt.to_messages()[0].content
    first = next((line for line in str(system).splitlines() if line.startswith("[")), "（資料なし）")
    return AIMessage(content=f"（echo: 生成ではなく最上位の資料を引用）{first}")


def make_llm(spec: str) -> Runnable[Any, Any]:
    """``echo`` (offline), ``openai[:model]`` or ``ollama[:model]`` (their LangChain packages installed)."""
    name, _, model = spec.partition(":")
    chat: BaseChatModel
    if name == "echo":
        return RunnableLambda(echo_answer)
    if name == "openai":
        from langchain_openai import ChatOpenAI  # pip install langchain-openai

        chat = ChatOpenAI(model=model or "gpt-4o-mini", temperature=0)
    elif name == "ollama":
        from langchain_ollama import ChatOllama  # pip install langchain-ollama

        chat = ChatOllama(model=model or "qwen2.5", temperature=0)
    else:
        raise SystemExit(f"unknown --llm {spec!r}: use echo, openai[:model] or ollama[:model]")
    return chat


def make_store(kind: str, embeddings: JapaneseEmbeddings, docs: list[Document]) -> VectorStore:
    """A LangChain vector store over ``docs`` embedded with ``embeddings`` (document prompt applied)."""
    if kind == "faiss":
        from langchain_community.vectorstores import FAISS  # pip install langchain-community faiss-cpu

        # JapaneseEmbeddings returns unit vectors, so inner product = cosine similarity.
        return FAISS.from_documents(docs, embeddings, distance_strategy="MAX_INNER_PRODUCT")
    if kind == "chroma":
        from langchain_chroma import Chroma  # pip install langchain-chroma

        store: VectorStore = Chroma(
            collection_name="jp_rerank_demo",
            embedding_function=embeddings,
            collection_metadata={"hnsw:space": "cosine"},
        )
        store.add_documents(docs)
        return store
    return InMemoryVectorStore.from_documents(docs, embeddings)


def prompt_inputs(state: dict[str, Any]) -> dict[str, str]:
    """The prompt's variables: the reranked passages (with their ids) as context, and the question."""
    context = "\n".join(f"[{doc.id}] {doc.page_content}" for doc in state["docs"])
    return {"context": context, "question": state["question"]}


def build_chain(first_stage: BaseRetriever, reranker: JapaneseReranker, llm: Runnable[Any, Any]) -> Runnable[str, Any]:
    """Build ``question → {question, candidates} → {+ docs (reranked)} → {+ answer}``."""
    rerank = {"query": itemgetter("question"), "documents": itemgetter("candidates")} | reranker
    answer = RunnableLambda(prompt_inputs) | PROMPT | llm | StrOutputParser()
    return (
        RunnableParallel(candidates=first_stage, question=RunnablePassthrough())
        | RunnablePassthrough.assign(docs=rerank)
        | RunnablePassthrough.assign(answer=answer)
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", default="富士山の高さは？")
    parser.add_argument("--retriever", choices=["vector", "bm25", "hybrid"], default="vector")
    parser.add_argument(
        "--store", choices=["memory", "faiss", "chroma"], default="memory", help="for --retriever vector"
    )
    parser.add_argument("--reranker", default=DEFAULT_RERANKER, help="alias, hub id or local folder")
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER, help="alias, hub id or local folder")
    parser.add_argument("--llm", default="echo", help="echo | openai[:model] | ollama[:model]")
    parser.add_argument("--first-k", type=int, default=10, help="candidates retrieved before reranking")
    parser.add_argument("--top-n", type=int, default=3, help="passages kept after reranking")
    args = parser.parse_args(argv)

    reranker, embedder, why = load_or_toy_engines(args.reranker, args.embedder)
    if why:
        print(f"!! {why}\n!! using tiny random-weight models instead: the ranking below is meaningless\n")
    docs = [Document(d["text"], id=d["id"], metadata={"title": d["title"]}) for d in load_demo_corpus()]
    first_stage: BaseRetriever
    if args.retriever == "vector":
        store = make_store(args.store, JapaneseEmbeddings(embedder=embedder), docs)
        first_stage = store.as_retriever(search_kwargs={"k": args.first_k})
    else:  # Japanese BM25 (MeCab), fused with the dense embedder for "hybrid"; reranking happens in the chain
        first_stage = JapaneseRetriever.from_documents(
            docs, reranker=None, embedder=embedder if args.retriever == "hybrid" else None, k=args.first_k
        )
    chain = build_chain(first_stage, JapaneseReranker(reranker=reranker, top_n=args.top_n), make_llm(args.llm))

    result: dict[str, Any] = chain.invoke(args.question)
    print(f"Q: {result['question']}\nA: {result['answer']}\n")
    for rank, doc in enumerate(result["docs"], 1):
        print(f"{rank}. [{doc.id}] rerank={doc.metadata['relevance_score']:.3f} {doc.metadata['title']}")
        print(f"   {doc.page_content[:70]}")
    return result


if __name__ == "__main__":
    main()
