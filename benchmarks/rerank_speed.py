"""Reranking speed, side by side: ours vs transformers, sentence-transformers, LangChain and LlamaIndex.

A thin wrapper over ``jp-rerank bench`` (:func:`jp_rerank.bench.run_bench`) without the embedding part; it prints
the Markdown report and writes ``benchmarks/results/rerank_speed.{json,md}``. Every ``jp-rerank bench`` option
works here too.

Data: JSQuAD (JGLUE, Kurihara et al., 2022), CC BY-SA 4.0.

Usage:
    python benchmarks/rerank_speed.py [--shapes xsmall,small] [--questions 2] [--repeats 3] [--quick]
    python benchmarks/rerank_speed.py --shapes base,large --no-peers --stem rerank_speed_base_large
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from jp_rerank.bench import add_bench_command

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reranking part of the bench and write the results."""
    parser = argparse.ArgumentParser(prog="rerank_speed")
    add_bench_command(parser.add_subparsers())
    args = parser.parse_args(
        ["bench", "--no-embed", "--out", str(RESULTS), "--stem", "rerank_speed", *(argv or sys.argv[1:])]
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
