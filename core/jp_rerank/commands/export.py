"""``jp-rerank export``: export a cross-encoder once to ONNX or OpenVINO (fp32 + int8), cached beside the model."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def _cmd_export(args: argparse.Namespace) -> int:
    from jp_rerank.rerank import Reranker

    reranker = Reranker(args.model, device="cpu", backend="torch", precision="fp32")
    export = reranker.export(backend=args.backend, int8=not args.no_int8, force=args.force, out_dir=args.out)
    sys.stdout.write(f"{export.directory}\n")
    for precision, name in sorted(export.files.items()):
        size = (export.directory / name).stat().st_size / 2**20
        sys.stdout.write(f"  {precision}: {name} ({size:.0f} MiB)\n")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``jp-rerank export MODEL`` (ONNX / OpenVINO export + int8 quantisation, cached beside the model)."""
    p = subparsers.add_parser(
        "export",
        help="export a cross-encoder to ONNX or OpenVINO (fp32 + int8) ahead of first use",
        description="Export a cross-encoder once to ONNX or OpenVINO, quantise it to int8 for this CPU's int8 "
        "kernel and cache it beside the model (<folder>/<backend>/ or ~/.cache/jp-rerank/<backend>/), so that "
        "Reranker(backend=...) and backend='auto' do not export on first use.",
    )
    p.add_argument("model", help="alias, hub id or local folder of the cross-encoder")
    p.add_argument("--backend", choices=["onnx", "openvino"], default="onnx", help="export kind (default: onnx)")
    p.add_argument("--no-int8", action="store_true", help="write only the fp32 model")
    p.add_argument("--force", action="store_true", help="export again even if an up-to-date export exists")
    p.add_argument("--out", help="write to this folder instead of the default cache place")
    p.set_defaults(func=_cmd_export)
