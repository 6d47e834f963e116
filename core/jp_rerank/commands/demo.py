"""``jp-rerank demo``: the demo RAG pipeline on the bundled Japanese passages (the README's main job)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from jp_rerank.demo import run_demo

    run_demo(
        reranker=args.reranker,
        embedder=args.embedder,
        questions=args.question or None,
        top_n=args.top_n,
        first_k=args.first_k,
        out=sys.stdout,
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``jp-rerank demo``."""
    p = sub.add_parser(
        "demo",
        help="run the demo RAG pipeline on the bundled Japanese passages",
        description="Index the bundled Japanese passages, retrieve (BM25, + dense when an embedder loads) and "
        "rerank with a cross-encoder. Stages whose model cannot be loaded are skipped with a banner.",
    )
    p.add_argument("--reranker", help="alias, hub id or local path of the cross-encoder ('none' to skip)")
    p.add_argument("--embedder", help="alias, hub id or local path of the dense embedder ('none' to skip)")
    p.add_argument("--question", "-q", action="append", help="ask this question (repeatable)")
    p.add_argument("--top-n", type=int, default=3, help="passages shown per question (default 3)")
    p.add_argument("--first-k", type=int, default=20, help="first-stage candidates reranked (default 20)")
    p.set_defaults(func=_cmd_demo)
