"""``jp-rerank bench``: how fast is reranking on this machine — ours against sentence-transformers, same pairs.

A thin entry point over :func:`jp_rerank.evaluation.bench.run_bench`. The side-by-side comparison with the
tutorial loop, LangChain and LlamaIndex lives in ``benchmarks/bench.py`` of the source tree.
"""

from __future__ import annotations

import argparse
import logging
import sys

from jp_rerank.errors import CliInputError

__all__ = ["register"]

logger = logging.getLogger(__name__)


def _run(args: argparse.Namespace) -> int:
    from jp_rerank.evaluation.bench import run_bench
    from jp_rerank.evaluation.bench_models import RERANK_SHAPES
    from jp_rerank.evaluation.bench_report import write_report
    from jp_rerank.evaluation.datasets import default_data_dir

    base = default_data_dir()
    data = args.data or (base / "jsquad-valid" if base is not None else None)
    if data is None:
        raise CliInputError("give --data (a BEIR folder of Japanese questions and passages) or set JP_RERANK_DATA")
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in RERANK_SHAPES]
    if unknown and not args.model:
        raise CliInputError(f"unknown shape(s) {unknown}; choose from {list(RERANK_SHAPES)}")
    embed = [("static", args.embedder, "the given embedder")] if args.embedder else []
    logger.warning("benchmarking (%s): this takes a few minutes", args.model or ", ".join(shapes))
    report = run_bench(
        data=data,
        shapes=shapes,
        model=args.model,
        questions=args.questions,
        candidates=args.candidates,
        repeats=args.repeats,
        quick=args.quick,
        variants=not args.no_variants,
        with_agreement=not args.no_agreement,
        agreement_model=(args.agreement_model, f"trained model {args.agreement_model}")
        if args.agreement_model
        else None,
        embed_models=embed,
        models_dir=args.models_dir,
        tokenizer_json=args.tokenizer_json,
        threads=args.threads,
    )
    sys.stdout.write(report.to_markdown())
    if args.out:
        json_path, md_path = write_report(report, args.out, args.stem)
        sys.stdout.write(f"\nwrote {json_path} and {md_path}\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``jp-rerank bench``."""
    p = sub.add_parser(
        "bench",
        help="reranking speed on this machine: ours vs sentence-transformers on the same pairs",
        description="Time our reranker (defaults and each backend) against sentence-transformers "
        "CrossEncoder.predict on the same Japanese pairs (BM25 candidates from a BEIR folder; medians of several "
        "repetitions, ratios measured in the same run), and check each backend's ranking against torch fp32.",
    )
    p.add_argument("--data", help="BEIR folder (default: $JP_RERANK_DATA/jsquad-valid)")
    p.add_argument("-m", "--model", help="measure this cross-encoder (alias, hub id or folder) instead of --shapes")
    p.add_argument("--shapes", default="xsmall,small", help="same-shape models, comma-separated (default xsmall,small)")
    p.add_argument("--tokenizer-json", help="a real XLM-R tokenizer.json for the same-shape XLM-R models")
    p.add_argument("--agreement-model", help="a trained cross-encoder to check each backend's ranking agreement on")
    p.add_argument("--embedder", help="also time this embedder against sentence-transformers encode")
    p.add_argument("--questions", type=int, default=2, help="questions per model (default 2)")
    p.add_argument("--candidates", type=int, default=100, help="BM25 candidates per question (default 100)")
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions per method (default 3)")
    p.add_argument("--quick", action="store_true", help="smoke run: first shape, 1 question, 2 repetitions")
    p.add_argument("--no-variants", action="store_true", help="time only our default, not each backend")
    p.add_argument("--no-agreement", action="store_true", help="skip the ranking agreement check")
    p.add_argument("--models-dir", help="where same-shape models are built (default ~/.cache/jp-rerank/bench-models)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--out", help="also write <stem>.json and <stem>.md into this folder")
    p.add_argument("--stem", default="bench", help="file name stem for --out (default 'bench')")
    p.set_defaults(func=_run)
