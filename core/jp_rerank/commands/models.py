"""``jp-rerank models``: list the presets with their sizes and what each needs."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from jp_rerank.presets import DEFAULT_EMBEDDER, DEFAULT_RERANKER, DEFAULT_SPARSE, list_presets

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    presets = list_presets(args.kind)
    defaults = {DEFAULT_RERANKER, DEFAULT_EMBEDDER, DEFAULT_SPARSE}
    if args.json:
        for p in presets:
            sys.stdout.write(json.dumps({**asdict(p), "default": p.alias in defaults}, ensure_ascii=False) + "\n")
        return 0
    header = f"{'alias':<22} {'kind':<13} {'arch':<11} {'params':>7} {'dims':>5} {'max_len':>7}  {'needs':<28} model"
    sys.stdout.write(header + "\n" + "-" * len(header) + "\n")
    for p in presets:
        needs = ", ".join(p.requires) or "-"
        prefix = f"  [{p.query_prefix!r}/{p.document_prefix!r}]" if p.query_prefix else ""
        star = "*" if p.alias in defaults else " "
        params = f"{p.params_millions:.0f}M" if p.params_millions else "?"
        sys.stdout.write(
            f"{p.alias + star:<22} {p.kind:<13} {p.architecture:<11} {params:>7} {p.dims or '-':>5} "
            f"{p.max_length or '-':>7}  "
            f"{needs:<28} {p.model_id}{prefix}\n"
        )
    sys.stdout.write("* default for its kind. Any other hub id or local path also works.\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``jp-rerank models``."""
    p = sub.add_parser("models", help="list known models (presets)", description="List the model presets.")
    p.add_argument("--kind", choices=["cross-encoder", "dense", "static", "sparse"], help="only this kind")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=_run)
