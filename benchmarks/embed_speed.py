"""Embedding speed, side by side: our Embedder vs sentence-transformers' ``encode``.

StaticEmbedding (real ``static-ja`` when cached, else a same-shape model) and a transformer of
multilingual-e5-small's shape (the real mE5-small weights from ``$JP_RERANK_OFFLINE_MODELS`` when present).
A thin wrapper over ``jp-rerank bench`` without the reranking part; writes
``benchmarks/results/embed_speed.{json,md}``.

Data: JSQuAD (JGLUE, Kurihara et al., 2022), CC BY-SA 4.0.

Usage:
    python benchmarks/embed_speed.py [--repeats 5] [--offline-models DIR]
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
    """Run the embedding part of the bench and write the results."""
    parser = argparse.ArgumentParser(prog="embed_speed")
    add_bench_command(parser.add_subparsers())
    args = parser.parse_args(
        [
            "bench",
            "--shapes",
            "",
            "--no-agreement",
            "--out",
            str(RESULTS),
            "--stem",
            "embed_speed",
            *(argv or sys.argv[1:]),
        ]
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
