"""``jp-rerank search``: query an index folder built by ``jp-rerank index``, optionally reranking."""

from __future__ import annotations

import argparse
import json

from jp_rerank.checks import DEFAULT_MAX_CHARS, check_query
from jp_rerank.commands._io import check_device, check_output_path, finite_or_none, open_out
from jp_rerank.commands.index import load_search_index
from jp_rerank.defaults import DEFAULT_FIRST_K
from jp_rerank.errors import CliInputError
from jp_rerank.presets import DEFAULT_RERANKER

__all__ = ["MAX_QUERY_CHARS", "register"]

MAX_QUERY_CHARS = DEFAULT_MAX_CHARS
"""Longest query accepted (the engines' default ``max_chars``): longer ones are refused before any work."""


def _queries(given: list[str] | None) -> list[str]:
    """Check every query before the index and models are loaded (usage errors fail fast)."""
    queries = list(given or [])
    if not queries:
        raise CliInputError("give at least one query")
    for i, query in enumerate(queries):
        name = f"query {i + 1}" if len(queries) > 1 else "query"
        try:
            check_query(query, name=name)
        except (TypeError, ValueError) as exc:
            raise CliInputError(str(exc)) from exc
        if len(query) > MAX_QUERY_CHARS:
            raise CliInputError(f"{name} has {len(query)} characters, over the cap of {MAX_QUERY_CHARS}")
    return queries


def _run_search(args: argparse.Namespace) -> int:
    queries = _queries(args.query)
    check_output_path(args.output)
    retriever = load_search_index(
        args.index,
        reranker=args.reranker,
        embedder=args.embedder,
        first_k=args.first_k,
        top_n=args.top_n,
        device=check_device(args.device),
    )
    with open_out(args.output) as out:
        for query, passages in zip(queries, retriever.retrieve_many(queries), strict=True):
            if args.json:
                rows = [
                    {
                        "id": p.id,
                        "score": finite_or_none(p.score),
                        "first_stage_score": finite_or_none(p.first_stage_score),
                        "rerank_score": finite_or_none(p.rerank_score),
                        "text": p.text,
                        "metadata": p.metadata,
                    }
                    for p in passages
                ]
                out.write(json.dumps({"query": query, "results": rows}, ensure_ascii=False, allow_nan=False) + "\n")
                continue
            out.write(f"Q: {query}\n")
            for rank, p in enumerate(passages, 1):
                out.write(f"  {rank}. [{p.id}] {p.score:.4f}  {p.text[:80]}\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``jp-rerank search``."""
    p = sub.add_parser(
        "search",
        help="query an index built by `jp-rerank index`, optionally reranking",
        description="First stage (BM25 / dense / hybrid, as built) then cross-encoder rerank.",
    )
    p.add_argument("index", help="index folder")
    p.add_argument("query", nargs="+", help="one or more questions")
    p.add_argument("-m", "--reranker", default=DEFAULT_RERANKER, help="cross-encoder, or 'none'")
    p.add_argument("--embedder", help="override the embedder path recorded in the index (same model, other place)")
    p.add_argument("--top-n", type=int, default=5)
    p.add_argument("--first-k", type=int, default=DEFAULT_FIRST_K)
    p.add_argument("--json", action="store_true", help="JSONL output")
    p.add_argument("-o", "--output", help="write here instead of standard output")
    p.add_argument("--device", help="cpu, cuda, ... (default: auto)")
    p.set_defaults(func=_run_search)
