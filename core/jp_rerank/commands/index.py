"""``jp-rerank index``: build a persistent search index from files (:func:`load_search_index` reads it back).

An index folder is an atomic, checksummed snapshot (:func:`jp_rerank.snapshots.write_snapshot`) whose manifest
says what was built with which models, holding ``passages.jsonl`` (id, text, metadata), ``bm25/`` (the Japanese
BM25 index) and, when an embedder was given, ``vectors/`` (the vector index). Rebuilding over an existing index
switches to the new build in one atomic step, so a killed build leaves the previous index readable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from jp_rerank.checks import check_metadata_value
from jp_rerank.commands._io import check_device, check_output_path, iter_records, parse_json_line
from jp_rerank.defaults import DEFAULT_BM25_TOKENIZER, DEFAULT_FIRST_K
from jp_rerank.errors import CliInputError, IndexCorruptedError
from jp_rerank.presets import DEFAULT_RERANKER

__all__ = ["INDEX_BACKEND", "load_search_index", "register"]

INDEX_BACKEND = "search-index"
"""``backend`` recorded in the manifest of folders built by ``jp-rerank index``."""


def _flat(meta: dict[str, Any], where: str) -> dict[str, Any]:
    """Keep metadata the indexes accept (str, int, finite float, bool); other values are stored as JSON text.

    Raises:
        CliInputError: A NaN or infinite number (every later search would fail on it), naming the passage.
    """
    out: dict[str, Any] = {}
    for key, value in meta.items():
        try:
            if not isinstance(value, str | int | float | bool):
                value = json.dumps(value, ensure_ascii=False, allow_nan=False)
            out[key] = check_metadata_value(key, value, name="metadata")
        except (TypeError, ValueError) as exc:
            raise CliInputError(f"{where}: {exc}") from exc
    return out


def _run_index(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from jp_rerank.embed import Embedder
    from jp_rerank.index import ingest, make_index
    from jp_rerank.lexical import BM25Index
    from jp_rerank.snapshots import write_snapshot

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
            rec["metadata"] = _flat(rec["metadata"], f"{path}: passage {rec['id']!r}")
            records.append(rec)
    if not records:
        raise CliInputError("the input files hold no passages")
    manifest: dict[str, Any] = {"backend": INDEX_BACKEND, "count": len(records)}
    bm25 = None
    if args.bm25 != "none":
        bm25 = BM25Index(args.bm25).index(
            [r["text"] for r in records], [r["id"] for r in records], [r["metadata"] for r in records]
        )
        manifest["bm25"] = bm25.tokenizer.name
    embedder = Embedder(args.embedder, device=device) if args.embedder else None
    if embedder is not None:
        manifest.update(embedder=embedder.model_id, vector_backend=args.backend, dim=embedder.dim)

    def payload(folder: Path) -> None:
        with (folder / "passages.jsonl").open("w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False, allow_nan=False) + "\n")
        if bm25 is not None:
            bm25.save(folder / "bm25")
        if embedder is not None:
            index = make_index(args.backend, embedder.dim, embedder_id=embedder.model_id)
            ingest(index, records, embedder.embed_documents, batch_size=args.batch_size, total=len(records))
            index.save(folder / "vectors")

    try:
        write_snapshot(out, manifest, payload)
    except ValueError as exc:  # the folder holds something else
        raise CliInputError(str(exc)) from exc
    stages = ", ".join(k for k in ("bm25", "embedder") if k in manifest)
    sys.stdout.write(f"indexed {len(records)} passages into {out} ({stages})\n")
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


def load_search_index(
    path: str | os.PathLike[str],
    *,
    reranker: str | None = DEFAULT_RERANKER,
    embedder: str | None = None,
    first_k: int = DEFAULT_FIRST_K,
    top_n: int = 10,
    device: str | None = None,
) -> Any:
    """Load an index folder written by ``jp-rerank index`` as a :class:`~jp_rerank.pipeline.TwoStageRetriever`.

    Raises:
        CliInputError: If the folder is not such an index.
    """
    from jp_rerank.embed import Embedder
    from jp_rerank.index import load_index
    from jp_rerank.lexical import BM25Index
    from jp_rerank.pipeline import DenseRetriever, TwoStageRetriever
    from jp_rerank.rerank import Reranker
    from jp_rerank.snapshots import read_snapshot

    root = Path(path)
    try:
        snapshot, manifest = read_snapshot(root)
    except FileNotFoundError as exc:
        raise CliInputError(f"{root} is not a jp-rerank index folder ({exc})") from exc
    if manifest.get("backend") != INDEX_BACKEND:
        raise CliInputError(f"{root} holds a {manifest.get('backend')!r} index, not one built by `jp-rerank index`")
    texts, metas = [], []
    with (snapshot / "passages.jsonl").open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            where = f"{snapshot / 'passages.jsonl'}:{line_no}"
            try:
                rec = parse_json_line(line, where)
            except CliInputError as exc:
                raise IndexCorruptedError(str(exc)) from exc
            if not (
                isinstance(rec, dict) and isinstance(rec.get("text"), str) and isinstance(rec.get("metadata"), dict)
            ):
                raise IndexCorruptedError(f"{where}: not a passage record")
            texts.append(rec["text"])
            metas.append(rec["metadata"])
    if len(texts) != manifest.get("count", len(texts)):
        raise IndexCorruptedError(
            f"{root}: passages.jsonl holds {len(texts)} passages, the manifest {manifest['count']}"
        )
    stages: list[Any] = []
    if manifest.get("embedder"):
        dense = Embedder(embedder or manifest["embedder"], device=device)
        vectors = load_index(snapshot / "vectors", embedder_id=dense.model_id, verify=False)  # verified above
        stages.append(DenseRetriever(vectors, dense))
    if manifest.get("bm25"):
        bm25 = BM25Index.load(snapshot / "bm25", verify=False)
        if len(bm25) and not any(bm25.texts):  # format 1 (jp-rerank 0.1) kept no texts: take them from passages
            bm25 = BM25Index(
                bm25.tokenizer, k1=bm25.k1, b=bm25.b, method=bm25.method, normalize_text=bm25.normalize_text
            ).index(texts, list(bm25.ids), metas)
        stages.append(bm25)
    rr = None if reranker in (None, "none") else Reranker(reranker, device=device)
    return TwoStageRetriever(first_stages=stages, reranker=rr, first_k=first_k, top_n=top_n)
