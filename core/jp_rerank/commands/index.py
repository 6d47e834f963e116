"""``jp-rerank index``: build a persistent search index from files (:func:`load_search_index` reads it back).

The folder is the search-index snapshot of :mod:`jp_rerank.pipeline.folder` (passages, BM25, vectors); the Ray
job ``jp-rerank build-index`` writes the same folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from jp_rerank.checks import storable_metadata
from jp_rerank.commands._io import check_device, check_output_path, iter_records
from jp_rerank.defaults import DEFAULT_BM25_TOKENIZER
from jp_rerank.errors import CliInputError
from jp_rerank.pipeline.folder import SEARCH_INDEX_BACKEND, load_search_index, write_search_index

__all__ = ["INDEX_BACKEND", "load_search_index", "register"]

INDEX_BACKEND = SEARCH_INDEX_BACKEND
"""``backend`` recorded in the manifest of folders built by ``jp-rerank index``."""


def _run_index(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from jp_rerank.embed import Embedder
    from jp_rerank.index import ingest, make_index
    from jp_rerank.lexical import BM25Index

    out = Path(args.out)
    check_output_path(args.out, folder=True)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise CliInputError(f"{out} already exists (use --overwrite to replace it)")
    if args.bm25 == "none" and not args.embedder:
        raise CliInputError("nothing to build: give --embedder and/or a --bm25 tokenizer")
    device = check_device(args.device)
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path in args.inputs:
        for rec in tqdm(iter_records(path, text_field=args.text_field, id_field=args.id_field), desc=f"read {path}"):
            if rec["id"] in seen:
                raise CliInputError(f"{path}: duplicate passage id {rec['id']!r}")
            seen.add(rec["id"])
            try:
                rec["metadata"] = storable_metadata(rec["metadata"], name=f"{path}: passage {rec['id']!r} metadata")
            except TypeError as exc:
                raise CliInputError(str(exc)) from exc
            records.append(rec)
    if not records:
        raise CliInputError("the input files hold no passages")
    bm25 = None
    if args.bm25 != "none":
        bm25 = BM25Index(args.bm25).index(
            [r["text"] for r in records], [r["id"] for r in records], [r["metadata"] for r in records]
        )
    vectors = None
    if args.embedder:
        embedder = Embedder(args.embedder, device=device)
        vectors = make_index(args.backend, embedder.dim, embedder_id=embedder.model_id)
        ingest(vectors, records, embedder.embed_documents, batch_size=args.batch_size, total=len(records))
    try:
        write_search_index(
            out, passages=records, count=len(records), bm25=bm25, vectors=vectors, vector_backend=args.backend
        )
    except ValueError as exc:  # the folder holds something else
        raise CliInputError(str(exc)) from exc
    built = [name for name, part in (("bm25", bm25), ("embedder", vectors)) if part is not None]
    sys.stdout.write(f"indexed {len(records)} passages into {out} ({', '.join(built)})\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``jp-rerank index``."""
    p = sub.add_parser(
        "index",
        help="build a persistent search index (BM25 and/or dense) from JSONL/CSV/text files",
        description="Inputs: .jsonl ({'id', 'text', ...}), .csv (header with a 'text' column) or plain text (one "
        "passage per line). Other fields become metadata.",
    )
    p.add_argument("inputs", nargs="+", help="passage files")
    p.add_argument("-o", "--out", required=True, help="index folder to create")
    p.add_argument("--embedder", help="dense embedder (alias, hub id or path); default: BM25 only")
    p.add_argument(
        "--bm25", default=DEFAULT_BM25_TOKENIZER, help="BM25 tokenizer (mecab, char2, char1-2, sudachi) or 'none'"
    )
    p.add_argument("--backend", default="faiss-flat", help="vector index: exact, faiss-flat, faiss-hnsw, faiss-ivfpq")
    p.add_argument("--text-field", default="text")
    p.add_argument("--id-field", default="id")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--overwrite", action="store_true", help="replace an existing index folder")
    p.add_argument("--device", help="cpu, cuda, ... (default: auto)")
    p.set_defaults(func=_run_index)
