"""``jp-rerank export``: export a cross-encoder once to ONNX (fp32 + int8), cached beside the model."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def _cmd_export(args: argparse.Namespace) -> int:
    from jp_rerank.rerank import Reranker

    reranker = Reranker(args.model, device="cpu", backend="torch", precision="fp32")
    export = reranker.export(int8=not args.no_int8, force=args.force, out_dir=args.out)
    sys.stdout.write(f"{export.directory}\n")
    for precision, name in sorted(export.files.items()):
        size = (export.directory / name).stat().st_size / 2**20
        sys.stdout.write(f"  {precision}: {name} ({size:.0f} MiB)\n")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``jp-rerank export MODEL`` (ONNX export + int8 quantisation, cached beside the model)."""
    p = subparsers.add_parser(
        "export",
        help="export a cross-encoder to ONNX (fp32 + int8) for backend='onnx'",
        description="Export a cross-encoder once to ONNX, quantise it to int8 and cache it beside the model "
        "(<folder>/onnx/ or ~/.cache/jp-rerank/onnx/). Reranker(backend='onnx') and backend='auto' on CPUs "
        "without native bf16 then use it.",
    )
    p.add_argument("model", help="alias, hub id or local folder of the cross-encoder")
    p.add_argument("--no-int8", action="store_true", help="write only the fp32 model")
    p.add_argument("--force", action="store_true", help="export again even if an up-to-date export exists")
    p.add_argument("--out", help="write to this folder instead of the default cache place")
    p.set_defaults(func=_cmd_export)
