"""Splitting a corpus into chunks that workers read on their own, and reading one chunk.

Inputs, each given as a path, a glob (``shards/*.jsonl``) or a folder:

* JSONL (``.jsonl``, ``.json``, ``.ndjson``): one ``{"id", "text", ...}`` object per line, read by the reader
  ``jp-rerank index`` uses (:mod:`jp_rerank.records`: strict JSON, UTF-8 with or without a BOM, other fields
  become metadata, a record without an id gets ``"<file stem>:<line>"``, blank lines are skipped). Large files
  are cut into byte ranges at line boundaries, so one file feeds many workers;
* Parquet (``.parquet``): a ``text`` column, an optional ``id`` column, other columns as metadata; chunks are runs
  of row groups;
* CSV and plain text (``.csv``, ``.txt``...): as ``jp-rerank index`` reads them, one chunk per file;
* a BEIR folder (holding ``corpus.jsonl``): its ``corpus.jsonl``, ids from ``_id`` (``title`` becomes metadata);
* any other folder: every JSONL and Parquet file in it, sorted by name (a sharded corpus).

Files are taken in the order given (globs and folders sorted by name), lines in file order: that is the order of
the passages in every output, the same as the single-process commands. :func:`plan_corpus` runs on the driver and
reads only bytes (it counts lines to number them); :func:`read_chunk` runs in a worker. On a cluster the files
must be on storage that every node mounts at the same path.
"""

from __future__ import annotations

import glob
import io
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from jp_rerank.errors import InputFormatError
from jp_rerank.records import JSONL_SUFFIXES, decoded_lines, jsonl_records, open_lines, records_of_lines

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "ChunkFormat",
    "CorpusChunk",
    "CorpusFormatError",
    "iter_corpus",
    "jsonl_ranges",
    "plan_corpus",
    "read_chunk",
]

DEFAULT_CHUNK_BYTES = 8 << 20
"""Bytes of input per work item (8 MiB: about 8,000 Japanese passages of 350 characters)."""

ChunkFormat = Literal["jsonl", "parquet", "records"]
"""How a chunk is read: a byte range of JSONL, a run of Parquet row groups, or a whole CSV / text file."""

_SCAN_BLOCK = 1 << 23


CorpusFormatError = InputFormatError
"""An input file is missing or malformed (the message names the file and line)."""


@dataclass(frozen=True)
class CorpusChunk:
    """One work item: a part of one input file.

    Attributes:
        item: Position of the chunk in the corpus (0, 1, ...): outputs are assembled in this order.
        path: Absolute path of the file.
        format: How to read it (:data:`ChunkFormat`).
        start: JSONL: first byte; Parquet: first row group.
        end: JSONL: byte after the last; Parquet: row group after the last.
        first_line: 1-based line (JSONL) or row (Parquet) number of the chunk's first line, for default ids.
        lines: Lines (JSONL, blank ones included) or rows (Parquet) in the chunk; -1 when unknown (CSV / text).
        text_field: Field holding the passage text.
        id_field: Field holding the passage id.

    Example:
        >>> CorpusChunk(0, "/data/c.jsonl", "jsonl", 0, 100, 1, 2, "text", "id").lines
        2
    """

    item: int
    path: str
    format: ChunkFormat
    start: int
    end: int
    first_line: int
    lines: int
    text_field: str
    id_field: str

    def to_item(self) -> dict[str, Any]:
        """The chunk as a plain dict (a row of the work-item dataset)."""
        return asdict(self)

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> CorpusChunk:
        """Rebuild a chunk from :meth:`to_item` output (numpy scalars accepted)."""
        return cls(
            item=int(item["item"]),
            path=str(item["path"]),
            format=str(item["format"]),  # type: ignore[arg-type]
            start=int(item["start"]),
            end=int(item["end"]),
            first_line=int(item["first_line"]),
            lines=int(item["lines"]),
            text_field=str(item["text_field"]),
            id_field=str(item["id_field"]),
        )


def _expand(inputs: Sequence[str | os.PathLike[str]], id_field: str | None) -> list[tuple[Path, str]]:
    """Input files in corpus order, each with the id field to use."""
    files: list[tuple[Path, str]] = []
    for raw in inputs:
        text = os.fspath(raw)
        if any(ch in text for ch in "*?["):
            matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            if not matches:
                raise CorpusFormatError(f"no input file matches {text!r}")
            files.extend((Path(m), id_field or "id") for m in matches if Path(m).is_file())
            continue
        path = Path(text).expanduser()
        if path.is_dir():
            if (path / "corpus.jsonl").is_file():  # a BEIR folder
                files.append((path / "corpus.jsonl", id_field or "_id"))
                continue
            shards = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (*JSONL_SUFFIXES, ".parquet")
            )
            if not shards:
                raise CorpusFormatError(f"{path} holds no .jsonl or .parquet files (and no BEIR corpus.jsonl)")
            files.extend((p, id_field or "id") for p in shards)
        elif path.is_file():
            files.append((path, id_field or "id"))
        else:
            raise CorpusFormatError(f"input file not found: {text}")
    if not files:
        raise CorpusFormatError("no input files given")
    return [(p.resolve(), f) for p, f in files]


def jsonl_ranges(path: Path, chunk_bytes: int) -> list[tuple[int, int, int, int]]:
    """Cut a file into ``(start, end, first_line, lines)`` byte ranges of about ``chunk_bytes``, after a newline.

    Reads the file once, block by block, counting newlines (no parsing).
    """
    ranges: list[tuple[int, int, int, int]] = []
    start, first_line, lines, pos = 0, 1, 0, 0
    last = b"\n"
    with path.open("rb") as fh:
        while block := fh.read(_SCAN_BLOCK):
            i = 0
            while True:
                target = start + chunk_bytes - pos  # cut at the first newline at or after this offset in the block
                if target > len(block):
                    lines += block.count(b"\n", i)
                    break
                j = block.find(b"\n", max(i, target - 1))
                if j < 0:
                    lines += block.count(b"\n", i)
                    break
                lines += block.count(b"\n", i, j + 1)
                end = pos + j + 1
                ranges.append((start, end, first_line, lines))
                start, first_line, lines, i = end, first_line + lines, 0, j + 1
            pos += len(block)
            last = block[-1:]
    if pos > start:
        ranges.append((start, pos, first_line, lines + (0 if last == b"\n" else 1)))
    return ranges


def _parquet_ranges(path: Path, chunk_bytes: int) -> list[tuple[int, int, int, int]]:
    """``(first group, end group, first row, rows)`` runs of row groups of about ``chunk_bytes``."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    ranges: list[tuple[int, int, int, int]] = []
    start, first_row, rows, size = 0, 1, 0, 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        rows += group.num_rows
        size += group.total_byte_size
        if size >= chunk_bytes:
            ranges.append((start, g + 1, first_row, rows))
            start, first_row, rows, size = g + 1, first_row + rows, 0, 0
    if start < meta.num_row_groups:
        ranges.append((start, meta.num_row_groups, first_row, rows))
    return ranges


def plan_corpus(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    text_field: str = "text",
    id_field: str | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> list[CorpusChunk]:
    r"""Cut the input files into work items, in corpus order.

    Args:
        inputs: Files, globs or folders (see the module docs).
        text_field: Field (JSONL key, Parquet / CSV column) holding the passage text.
        id_field: Field holding the id; default ``"_id"`` for a BEIR folder, ``"id"`` otherwise.
        chunk_bytes: Approximate input bytes per work item.

    Returns:
        The chunks; ``chunks[i].item == i``.

    Raises:
        CorpusFormatError: If an input does not exist or a folder holds no corpus files.
        ValueError: If ``chunk_bytes`` is not positive.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "c.jsonl"
        >>> _ = path.write_text('{"id": "a", "text": "犬"}\n{"id": "b", "text": "猫"}\n', encoding="utf-8")
        >>> [(c.first_line, c.lines) for c in plan_corpus([path], chunk_bytes=10)]
        [(1, 1), (2, 1)]
    """
    if not isinstance(chunk_bytes, int) or chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be a positive int, got {chunk_bytes!r}")
    chunks: list[CorpusChunk] = []
    for path, file_id_field in _expand(inputs, id_field):
        suffix = path.suffix.lower()
        fmt: ChunkFormat
        if suffix in JSONL_SUFFIXES:
            fmt, ranges = "jsonl", jsonl_ranges(path, chunk_bytes)
        elif suffix == ".parquet":
            fmt, ranges = "parquet", _parquet_ranges(path, chunk_bytes)
        else:
            fmt, ranges = "records", [(0, 0, 1, -1)]
        for start, end, first, lines in ranges:
            chunks.append(CorpusChunk(len(chunks), str(path), fmt, start, end, first, lines, text_field, file_id_field))
    return chunks


def _jsonl_records(chunk: CorpusChunk) -> Iterator[dict[str, Any]]:
    with open(chunk.path, "rb") as fh:
        fh.seek(chunk.start)
        data = fh.read(chunk.end - chunk.start)
    if len(data) != chunk.end - chunk.start:
        raise CorpusFormatError(f"{chunk.path} is shorter than when the corpus was planned (changed while running?)")
    lines = decoded_lines(io.BytesIO(data), chunk.path, first_line=chunk.first_line)  # split as a file is
    yield from jsonl_records(
        lines, chunk.path, text_field=chunk.text_field, id_field=chunk.id_field, first_line=chunk.first_line
    )


def _parquet_records(chunk: CorpusChunk) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    stem = Path(chunk.path).stem
    table = pq.ParquetFile(chunk.path).read_row_groups(list(range(chunk.start, chunk.end)))
    if chunk.text_field not in table.column_names:
        raise CorpusFormatError(f"{chunk.path}: no {chunk.text_field!r} column (columns: {table.column_names})")
    texts = table.column(chunk.text_field).to_pylist()
    ids = table.column(chunk.id_field).to_pylist() if chunk.id_field in table.column_names else None
    others = [name for name in table.column_names if name not in (chunk.text_field, chunk.id_field)]
    columns = {name: table.column(name).to_pylist() for name in others}
    for i, text in enumerate(texts):
        row_no = chunk.first_line + i
        if not isinstance(text, str):
            raise CorpusFormatError(f"{chunk.path}: row {row_no}: {chunk.text_field!r} is not a string")
        doc_id = f"{stem}:{row_no}" if ids is None or ids[i] is None else str(ids[i])
        yield {"id": doc_id, "text": text, "metadata": {name: columns[name][i] for name in others}}


def read_chunk(chunk: CorpusChunk | Mapping[str, Any]) -> list[dict[str, Any]]:
    """Read the passages of one chunk as ``{"id", "text", "metadata"}`` dicts, in file order.

    Raises:
        CorpusFormatError: On a malformed line (the message names the file and line).
    """
    c = chunk if isinstance(chunk, CorpusChunk) else CorpusChunk.from_item(chunk)
    if c.format == "jsonl":
        return list(_jsonl_records(c))
    if c.format == "parquet":
        return list(_parquet_records(c))
    with open_lines(c.path) as lines:
        return list(records_of_lines(lines, c.path, text_field=c.text_field, id_field=c.id_field))


def iter_corpus(chunks: Sequence[CorpusChunk]) -> Iterator[dict[str, Any]]:
    r"""Read every chunk in this process, in corpus order (the single-process reading of a plan).

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "c.jsonl"
        >>> _ = path.write_text('{"text": "犬"}\n\n{"text": "猫"}\n', encoding="utf-8")
        >>> [r["id"] for r in iter_corpus(plan_corpus([path]))]
        ['c:1', 'c:3']
    """
    for chunk in chunks:
        yield from read_chunk(chunk)
