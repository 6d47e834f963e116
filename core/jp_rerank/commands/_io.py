"""Reading and writing the files the command line takes: JSONL, CSV and plain text."""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from jp_rerank.errors import CliInputError

__all__ = ["CliInputError", "finite_or_none", "iter_records", "open_in", "open_out", "read_jsonl"]


def finite_or_none(score: float | None) -> float | None:
    """JSON has no NaN: a NaN score (a broken model; ranked last) is written as null."""
    return None if score is None or math.isnan(score) else score


@contextmanager
def open_in(path: str) -> Iterator[TextIO]:
    """Open ``path`` for reading (``-`` is standard input)."""
    if path == "-":
        yield sys.stdin
        return
    p = Path(path)
    if not p.is_file():
        raise CliInputError(f"input file not found: {path}")
    with p.open(encoding="utf-8") as fh:
        yield fh


@contextmanager
def open_out(path: str | None) -> Iterator[TextIO]:
    """Open ``path`` for writing (``None`` or ``-`` is standard output)."""
    if path is None or path == "-":
        yield sys.stdout
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as fh:
        yield fh


def read_jsonl(fh: TextIO, source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line.

    Raises:
        CliInputError: On a line that is not a JSON object (names file and line).
    """
    for line_no, line in enumerate(fh, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CliInputError(f"{source}:{line_no}: invalid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise CliInputError(f"{source}:{line_no}: expected a JSON object, got {type(row).__name__}")
        yield line_no, row


def iter_records(path: str, *, text_field: str = "text", id_field: str = "id") -> Iterator[dict[str, Any]]:
    """Read passages from JSONL (``{"id", "text", ...}``), CSV (header with ``text``) or plain text (one per line).

    The format follows the file suffix (``.jsonl``/``.json``, ``.csv``, anything else is text). Records without an id
    get ``"<file stem>:<line>"``; every other field becomes metadata.

    Raises:
        CliInputError: Missing file, missing text field, or a malformed line.
    """
    suffix = Path(path).suffix.lower()
    stem = Path(path).stem
    with open_in(path) as fh:
        if suffix in (".jsonl", ".json", ".ndjson"):
            for line_no, row in read_jsonl(fh, path):
                text = row.get(text_field)
                if not isinstance(text, str):
                    raise CliInputError(f"{path}:{line_no}: field {text_field!r} missing or not a string")
                meta = {k: v for k, v in row.items() if k not in (text_field, id_field)}
                yield {"id": str(row.get(id_field, f"{stem}:{line_no}")), "text": text, "metadata": meta}
        elif suffix == ".csv":
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or text_field not in reader.fieldnames:
                raise CliInputError(f"{path}: CSV header must contain a {text_field!r} column")
            for line_no, row in enumerate(reader, 2):
                meta = {k: v for k, v in row.items() if k not in (text_field, id_field)}
                yield {
                    "id": str(row.get(id_field) or f"{stem}:{line_no}"),
                    "text": row[text_field] or "",
                    "metadata": meta,
                }
        else:
            for line_no, line in enumerate(fh, 1):
                text = line.rstrip("\n")
                if text.strip():
                    yield {"id": f"{stem}:{line_no}", "text": text, "metadata": {}}
