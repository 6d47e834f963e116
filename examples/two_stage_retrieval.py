"""Two-stage Japanese retrieval with the engine alone: BM25 (+ dense) first stage → cross-encoder rerank.

The task most users have: many passages, retrieve the top 100 fast, rerank them, keep the best few for an LLM.
Runs on the bundled demo corpus, or on your own JSONL file (one ``{"id": ..., "text": ...}`` per line).
Models default to the jp-rerank presets; offline without them, tiny random-weight stand-ins are used (everything
runs, the ranking is meaningless).

    python examples/two_stage_retrieval.py
    python examples/two_stage_retrieval.py --question "信濃川の長さは？" --reranker ./models/xsmall
    python examples/two_stage_retrieval.py --passages my_corpus.jsonl --backend faiss-hnsw
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _offline import load_or_toy_engines

from jp_rerank import DEFAULT_EMBEDDER, DEFAULT_RERANKER, TwoStageRetriever
from jp_rerank.data import load_demo_corpus


def read_passages(path: str | None) -> list[dict[str, str]]:
    if path is None:
        return [{"id": d["id"], "text": d["text"]} for d in load_demo_corpus()]
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--question", default="富士山の高さは何メートルですか？")
    parser.add_argument("--passages", help="JSONL file of passages (default: the bundled demo corpus)")
    parser.add_argument("--reranker", default=DEFAULT_RERANKER)
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER)
    parser.add_argument("--backend", default="exact", help="vector index: exact, faiss-flat, faiss-hnsw, faiss-ivfpq")
    parser.add_argument("--first-k", type=int, default=100)
    parser.add_argument("--top-n", type=int, default=3)
    args = parser.parse_args(argv)

    reranker, embedder, why = load_or_toy_engines(args.reranker, args.embedder)
    if why:
        print(f"!! {why}\n!! using tiny random-weight models instead: the ranking below is meaningless\n")
    passages = read_passages(args.passages)
    retriever = TwoStageRetriever.from_texts(
        [p["text"] for p in passages],
        ids=[p["id"] for p in passages],
        embedder=embedder,
        reranker=reranker,
        vector_backend=args.backend,
        first_k=args.first_k,
        top_n=args.top_n,
        fusion="weighted",
        normalization="zscore",
    )
    print(f"Q: {args.question}")
    for rank, hit in enumerate(retriever.retrieve(args.question), 1):
        print(
            f"{rank}. [{hit.id}] rerank={hit.rerank_score:.4f} first-stage={hit.first_stage_score:.4f} {hit.text[:60]}"
        )
    print("timings (s):", {k: round(v, 4) for k, v in retriever.last_timings.items()})


if __name__ == "__main__":
    main()
