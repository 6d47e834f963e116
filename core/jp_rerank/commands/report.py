"""``jp-rerank report``: compare saved ``jp-rerank eval`` results (table, Markdown, quality-vs-speed plot)."""

from __future__ import annotations

import argparse
import sys

from jp_rerank.errors import CliInputError

__all__ = ["register"]


def _run_report(args: argparse.Namespace) -> int:
    from jp_rerank.evaluation import format_table, load_results, plot_results, write_markdown

    results = load_results(args.results)
    if not results:
        raise CliInputError("no result files found")
    baseline = args.baseline
    sys.stdout.write(format_table(results, baseline=baseline) + "\n")
    if args.markdown:
        sys.stdout.write(f"wrote {write_markdown(results, args.markdown, baseline=baseline)}\n")
    if args.plot:
        sys.stdout.write(f"wrote {plot_results(results, args.plot, metric=args.metric)}\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``jp-rerank report``."""
    p = sub.add_parser(
        "report",
        help="compare saved eval results: table, Markdown, quality-vs-speed plot",
        description="Read result JSON files (or folders of them) written by `jp-rerank eval -o`.",
    )
    p.add_argument("results", nargs="+", help="result JSON files or folders")
    p.add_argument("--markdown", help="write a Markdown table here")
    p.add_argument("--plot", help="write a PNG plot (quality vs pairs/s) here")
    p.add_argument("--metric", default="ndcg@10", help="quality metric for the plot (default ndcg@10)")
    p.add_argument("--baseline", help="name of the run to compare speed against")
    p.set_defaults(func=_run_report)
