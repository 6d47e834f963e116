"""``jp-rerank rerank``: JSONL in (a query and its passages per line) → JSONL out (ranked results)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from jp_rerank.checks import check_query
from jp_rerank.commands._io import check_device, check_output_path, finite_or_none, open_in, open_out, read_jsonl
from jp_rerank.errors import CliInputError
from jp_rerank.presets import DEFAULT_RERANKER

__all__ = ["register"]


def _passages(row: dict[str, Any], where: str) -> tuple[list[str], list[Any]]:
    """Accept ``documents: [str, ...]`` or ``passages: [{"id", "text"}, ...]``; returns texts and ids."""
    if "documents" in row:
        docs = row["documents"]
        if not isinstance(docs, list) or not all(isinstance(d, str) for d in docs):
            raise CliInputError(f"{where}: 'documents' must be a list of strings")
        return docs, list(range(len(docs)))
    passages = row.get("passages")
    if not isinstance(passages, list):
        raise CliInputError(f"{where}: expected 'documents' (list of strings) or 'passages' (list of objects)")
    texts, ids = [], []
    for i, p in enumerate(passages):
        if not isinstance(p, dict) or not isinstance(p.get("text"), str):
            raise CliInputError(f"{where}: passages[{i}] must be an object with a string 'text'")
        texts.append(p["text"])
        ids.append(p.get("id", i))
    return texts, ids


def _query(row: dict[str, Any], where: str) -> str:
    query = row.get("query")
    try:
        return check_query(query)
    except (TypeError, ValueError) as exc:  # the engine's own check: blank, invisible-only, lone surrogates
        raise CliInputError(f"{where}: 'query' must be a non-empty string ({exc})") from exc


def _run(args: argparse.Namespace) -> int:
    from jp_rerank.rerank import Reranker

    check_output_path(args.output)  # usage errors before any model work
    reranker = Reranker(
        args.model, overflow=args.overflow, batch_size=args.batch_size, device=check_device(args.device)
    )
    with open_in(args.input) as fh, open_out(args.output) as out:
        for line_no, row in read_jsonl(fh, args.input):
            where = f"{args.input}:{line_no}"
            query = _query(row, where)
            texts, ids = _passages(row, where)
            try:
                results = reranker.rerank(query, texts, top_n=args.top_n, score_threshold=args.threshold)
            except (TypeError, ValueError) as exc:  # bad passages (lone surrogates, over the caps...): name the line
                raise CliInputError(f"{where}: {exc}") from exc
            ranked = [
                # NaN (a broken model; ranked last) has no JSON form: written as null
                {
                    "id": ids[r.index],
                    "index": r.index,
                    "score": finite_or_none(r.score),
                    "text": texts[r.index],
                }
                for r in results
            ]
            out.write(json.dumps({"query": query, "results": ranked}, ensure_ascii=False, allow_nan=False) + "\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``jp-rerank rerank``."""
    p = sub.add_parser(
        "rerank",
        help="rerank JSONL (query + passages per line) to JSONL",
        description='Each input line: {"query": "...", "documents": ["...", ...]} or '
        '{"query": "...", "passages": [{"id": "...", "text": "..."}, ...]}. Each output line: '
        '{"query": ..., "results": [{"id", "index", "score", "text"}, ...]} sorted by score.',
    )
    p.add_argument("input", help="JSONL file, or - for standard input")
    p.add_argument("-o", "--output", help="output JSONL file (default standard output)")
    p.add_argument("-m", "--model", default=DEFAULT_RERANKER, help=f"reranker (default {DEFAULT_RERANKER})")
    p.add_argument("--top-n", type=int, help="keep the best N per query")
    p.add_argument("--threshold", type=float, help="keep results scoring at least this")
    p.add_argument("--overflow", choices=["truncate", "window"], default="truncate", help="long passages")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", help="cpu, cuda, ... (default: auto)")
    p.set_defaults(func=_run)
