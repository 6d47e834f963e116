"""``jp-rerank rerank``: JSONL in (a query and its passages per line) → JSONL out (ranked results)."""

from __future__ import annotations

import argparse
import json

from jp_rerank.commands import scale
from jp_rerank.commands._io import check_device, check_output_path, open_in, open_out, read_jsonl
from jp_rerank.presets import DEFAULT_RERANKER
from jp_rerank.records import rerank_line

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    from jp_rerank.rerank import Reranker

    if scale.wants_ray(args):
        return scale.run_rerank_on_ray(args)
    check_output_path(args.output)  # usage errors before any model work
    reranker = Reranker(
        args.model, overflow=args.overflow, batch_size=args.batch_size, device=check_device(args.device)
    )
    with open_in(args.input) as fh, open_out(args.output) as out:
        for line_no, row in read_jsonl(fh, args.input):
            where = f"{args.input}:{line_no}"
            response, _ = rerank_line(reranker, row, where, top_n=args.top_n, threshold=args.threshold)
            out.write(json.dumps(response, ensure_ascii=False, allow_nan=False) + "\n")
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
    scale.add_ray_arguments(p, flag=True)
    p.set_defaults(func=_run)
