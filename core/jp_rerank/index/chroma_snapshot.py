"""The portable snapshot of a Chroma collection: ``vectors.npy`` and ``docs.jsonl``, written and read in batches.

:meth:`ChromaIndex.save <jp_rerank.index.ChromaIndex.save>` writes the records page by page as it fetches them;
:meth:`ChromaIndex.load <jp_rerank.index.ChromaIndex.load>` reads them back in batches to add to an empty
collection. Line ``i`` of ``docs.jsonl`` (``{"label": i, "id", "text", "metadata"}``) is row ``i`` of
``vectors.npy``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from jp_rerank.errors import IndexCorruptedError
from jp_rerank.index.base import Batch, Record

__all__ = ["read_batches", "write_records"]

_VECTORS, _DOCS = "vectors.npy", "docs.jsonl"


def write_records(folder: Path, dim: int, n: int, pages: Iterable[tuple[Any, list[Record]]]) -> int:
    """Write ``vectors.npy`` (``n`` rows) and ``docs.jsonl`` from pages of (embeddings, records).

    Returns:
        How many records the pages held: fewer than ``n`` means some were deleted meanwhile, and the files are
        then not a valid snapshot.
    """
    vectors = np.lib.format.open_memmap(folder / _VECTORS, mode="w+", dtype=np.float32, shape=(n, dim))
    row = 0
    with (folder / _DOCS).open("w", encoding="utf-8", newline="\n") as fh:
        for embeddings, records in pages:
            emb = np.asarray(embeddings, dtype=np.float32).reshape(-1, dim)
            vectors[row : row + emb.shape[0]] = emb
            for rec in records:
                obj = {"label": row, "id": rec.id, "text": rec.text, "metadata": rec.metadata}
                fh.write(json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n")
                row += 1
    vectors.flush()
    del vectors
    return row


def read_batches(folder: Path, dim: int, size: int) -> Iterator[Batch]:
    """The records of a verified snapshot folder, in batches of at most ``size``.

    Raises:
        IndexCorruptedError: If ``vectors.npy`` has another shape, or a line of ``docs.jsonl`` is not a record
            of the matching row.
    """
    try:
        vectors = np.load(folder / _VECTORS, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise IndexCorruptedError(f"cannot read {folder / _VECTORS}: {exc}") from exc
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise IndexCorruptedError(f"{folder / _VECTORS} has shape {vectors.shape}, not (n, {dim})")
    buffer: list[dict[str, Any]] = []

    def batch() -> Batch:
        start = buffer[0]["label"]
        rows = np.ascontiguousarray(vectors[start : start + len(buffer)], dtype=np.float32)
        out = Batch([b["id"] for b in buffer], rows, [b["text"] for b in buffer], [b["metadata"] for b in buffer])
        buffer.clear()
        return out

    with (folder / _DOCS).open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh):
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as exc:
                raise IndexCorruptedError(f"{_DOCS} line {lineno + 1} is not valid JSON: {exc}") from exc
            if not (
                isinstance(obj, dict)
                and isinstance(obj.get("id"), str)
                and isinstance(obj.get("text"), str)
                and isinstance(obj.get("metadata"), dict)
            ):
                raise IndexCorruptedError(f"{_DOCS} line {lineno + 1} is not a valid record")
            if obj.get("label") != lineno or lineno >= vectors.shape[0]:
                raise IndexCorruptedError(f"{_DOCS} line {lineno + 1} does not match {_VECTORS}")
            buffer.append(obj)
            if len(buffer) == size:
                yield batch()
    if buffer:
        yield batch()
