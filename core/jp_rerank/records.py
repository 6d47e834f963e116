"""Reading the files users hand the engine: passages (JSONL, CSV, plain text) and rerank requests (JSONL).

One reader for every entry point (``jp-rerank index`` / ``rerank``, the Ray jobs, which read byte ranges of the
same files in workers), so a file is accepted or refused the same way everywhere:

* text is UTF-8, with or without a byte-order mark (what Excel and Notepad write); a line that is not valid UTF-8
  is an :class:`~jp_rerank.errors.InputFormatError` naming the file, the line and the column;
* JSON lines are strict JSON: ``NaN`` / ``Infinity`` (and numbers that overflow to them, such as ``1e999``) are
  refused, as is nesting deeper than Python can parse, so nothing every later step would choke on gets in;
* a passage is ``{"id", "text", "metadata"}``: the id is a non-empty string or an integer (default
  ``"<file stem>:<line>"``), every other field becomes metadata; blank lines are skipped;
* a rerank request is ``{"query": "...", "documents": ["...", ...]}`` or
  ``{"query": "...", "passages": [{"id", "text"}, ...]}``.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from jp_rerank.checks import check_query
from jp_rerank.errors import InputFormatError

__all__ = [
    "JSONL_SUFFIXES",
    "csv_records",
    "decode_line",
    "decoded_lines",
    "iter_records",
    "jsonl_records",
    "open_lines",
    "parse_json_line",
    "read_jsonl",
    "records_of_lines",
    "rerank_line",
    "rerank_request",
    "text_records",
]

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
"""File suffixes read as JSON lines."""


def decoded_lines(binary: Iterable[bytes], source: str, *, first_line: int = 1) -> Iterator[str]:
    r"""Decode ``binary`` line by line as UTF-8 (a BOM on line 1 dropped), naming file, line and column on errors.

    Example:
        >>> list(decoded_lines([b"\xef\xbb\xbfa\n", b"b"], "f.txt"))
        ['a\n', 'b']
    """
    for line_no, raw in enumerate(binary, first_line):
        yield decode_line(raw, line_no, source)


def decode_line(raw: bytes, line_no: int, source: str) -> str:
    r"""Decode line ``line_no`` of ``source`` as UTF-8 (a BOM on line 1 dropped).

    Raises:
        InputFormatError: Naming file, line and column, if the line is not valid UTF-8.

    Example:
        >>> decode_line(b"\xe7\x8a\xac\n", 2, "f.txt")
        '犬\n'
    """
    if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = len(raw[: exc.start].decode("utf-8", errors="replace")) + 1
        raise InputFormatError(
            f"{source}:{line_no}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {column}); save the file "
            "as UTF-8"
        ) from exc


@contextmanager
def open_lines(path: str | Path) -> Iterator[Iterator[str]]:
    """Open a file and yield its lines, decoded as :func:`decoded_lines` does.

    Raises:
        InputFormatError: The file is missing or unreadable, or a line is not valid UTF-8.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFormatError(f"input file not found: {path}")
    try:
        fh: BinaryIO = p.open("rb")
    except OSError as exc:
        raise InputFormatError(f"cannot read the input file {path}: {exc.strerror or exc}") from exc
    with fh:
        yield decoded_lines(fh, str(path))


def _refuse_constant(token: str) -> float:
    raise ValueError(f"{token} is not valid JSON (JSON has no NaN or infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} overflows to infinity")
    return value


def parse_json_line(line: str, where: str) -> Any:
    """Parse one line of strict JSON (no NaN / Infinity, no number that overflows to them).

    Raises:
        InputFormatError: Naming ``where`` (``file:line``) and the problem.

    Example:
        >>> parse_json_line('{"a": 1}', "f.jsonl:1")
        {'a': 1}
    """
    try:
        return json.loads(line, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise InputFormatError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
    except RecursionError as exc:
        raise InputFormatError(f"{where}: invalid JSON (nested too deeply)") from exc
    except ValueError as exc:  # NaN/Infinity, overflowing floats, integers over Python's 4300-digit limit
        raise InputFormatError(f"{where}: invalid JSON ({exc})") from exc


def read_jsonl(lines: Iterable[str], source: str, *, first_line: int = 1) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line.

    Raises:
        InputFormatError: On a line that is not a strict JSON object (names file and line).
    """
    for line_no, line in enumerate(lines, first_line):
        if not line.strip():
            continue
        row = parse_json_line(line, f"{source}:{line_no}")
        if not isinstance(row, dict):
            raise InputFormatError(f"{source}:{line_no}: expected a JSON object, got {type(row).__name__}")
        yield line_no, row


def _record_id(value: object, where: str, field: str) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InputFormatError(f"{where}: field {field!r} must be a non-empty string or an integer, got {value!r:.40}")


def jsonl_records(
    lines: Iterable[str], source: str, *, text_field: str = "text", id_field: str = "id", first_line: int = 1
) -> Iterator[dict[str, Any]]:
    """Passages of JSON lines (see the module notes); ``first_line`` numbers a part of a file.

    The id is ``id_field``; with the default ``"id"`` absent, a BEIR corpus's ``"_id"`` (the one rule every
    reader of passages follows: ``index``, ``build-index``, ``embed-corpus``, ``rerank``); without either,
    ``"<file stem>:<line>"``. Other fields (a BEIR ``title``...) become metadata.

    Example:
        >>> rows = ['{"text": "犬"}', "", '{"id": 7, "text": "猫"}', '{"_id": "d9", "title": "T", "text": "鳥"}']
        >>> [r["id"] for r in jsonl_records(rows, "c.jsonl")]
        ['c:1', '7', 'd9']
    """
    stem = Path(source).stem
    for line_no, row in read_jsonl(lines, source, first_line=first_line):
        where = f"{source}:{line_no}"
        text = row.get(text_field)
        if not isinstance(text, str):
            raise InputFormatError(f"{where}: field {text_field!r} missing or not a string")
        key = id_field if id_field in row or id_field != "id" or "_id" not in row else "_id"
        meta = {k: v for k, v in row.items() if k not in (text_field, key)}
        doc_id = _record_id(row[key], where, key) if key in row else f"{stem}:{line_no}"
        yield {"id": doc_id, "text": text, "metadata": meta}


def csv_records(
    lines: Iterable[str], source: str, *, text_field: str = "text", id_field: str = "id"
) -> Iterator[dict[str, Any]]:
    """Passages of a CSV file with a header holding ``text_field``; other columns become metadata.

    Raises:
        InputFormatError: No such column, a row with more fields than the header, or malformed CSV.
    """
    stem = Path(source).stem
    reader = csv.DictReader(lines, restkey="\x00extra")
    try:
        fieldnames = reader.fieldnames
        if fieldnames is None or text_field not in fieldnames:
            raise InputFormatError(f"{source}: CSV header must contain a {text_field!r} column (found {fieldnames})")
        for row in reader:
            where = f"{source}:{reader.line_num}"
            if "\x00extra" in row:
                raise InputFormatError(f"{where}: this row has more fields than the header ({len(fieldnames)})")
            meta = {k: v for k, v in row.items() if k not in (text_field, id_field)}
            yield {
                "id": str(row.get(id_field) or f"{stem}:{reader.line_num}"),
                "text": row[text_field] or "",
                "metadata": meta,
            }
    except csv.Error as exc:
        raise InputFormatError(f"{source}:{reader.line_num}: malformed CSV ({exc})") from exc


def text_records(lines: Iterable[str], source: str) -> Iterator[dict[str, Any]]:
    r"""Passages of a plain-text file, one per non-blank line, ids ``"<file stem>:<line>"``.

    Example:
        >>> [r["id"] for r in text_records(["犬\n", "\n", "猫"], "notes.txt")]
        ['notes:1', 'notes:3']
    """
    stem = Path(source).stem
    for line_no, line in enumerate(lines, 1):
        text = line.rstrip("\r\n")
        if text.strip():
            yield {"id": f"{stem}:{line_no}", "text": text, "metadata": {}}


def records_of_lines(
    lines: Iterable[str], source: str, *, text_field: str = "text", id_field: str = "id"
) -> Iterator[dict[str, Any]]:
    """Passages of a whole file's lines, in the format its suffix names (JSONL, CSV, anything else text)."""
    suffix = Path(source).suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return jsonl_records(lines, source, text_field=text_field, id_field=id_field)
    if suffix == ".csv":
        return csv_records(lines, source, text_field=text_field, id_field=id_field)
    return text_records(lines, source)


def iter_records(path: str | Path, *, text_field: str = "text", id_field: str = "id") -> Iterator[dict[str, Any]]:
    """Read passages from a JSONL, CSV or plain-text file (by suffix), as ``{"id", "text", "metadata"}``.

    Raises:
        InputFormatError: Missing file, missing text field, a bad id, a CSV row with more fields than the header,
            or a malformed line (names file and line).
    """
    with open_lines(path) as lines:
        yield from records_of_lines(lines, str(path), text_field=text_field, id_field=id_field)


def rerank_request(row: dict[str, Any], where: str) -> tuple[str, list[str], list[Any]]:
    """The query, passage texts and passage ids of one rerank request line (see the module notes).

    Ids are the passages' ``id`` (default: position) or, for ``documents``, the positions.

    Raises:
        InputFormatError: A missing, blank or invisible-only query, or passages of the wrong shape (names ``where``).

    Example:
        >>> rerank_request({"query": "富士山", "passages": [{"id": "a", "text": "山"}]}, "in.jsonl:1")
        ('富士山', ['山'], ['a'])
    """
    try:
        query = check_query(row.get("query"))
    except (TypeError, ValueError) as exc:  # the engine's own check: blank, invisible-only, lone surrogates
        raise InputFormatError(f"{where}: 'query' must be a non-empty string ({exc})") from exc
    if "documents" in row:
        docs = row["documents"]
        if not isinstance(docs, list) or not all(isinstance(d, str) for d in docs):
            raise InputFormatError(f"{where}: 'documents' must be a list of strings")
        return query, docs, list(range(len(docs)))
    passages = row.get("passages")
    if not isinstance(passages, list):
        raise InputFormatError(f"{where}: expected 'documents' (list of strings) or 'passages' (list of objects)")
    texts, ids = [], []
    for i, p in enumerate(passages):
        if not isinstance(p, dict) or not isinstance(p.get("text"), str):
            raise InputFormatError(f"{where}: passages[{i}] must be an object with a string 'text'")
        texts.append(p["text"])
        ids.append(p.get("id", i))
    return query, texts, ids


def rerank_line(
    reranker: Any, row: dict[str, Any], where: str, *, top_n: int | None = None, threshold: float | None = None
) -> tuple[dict[str, Any], int]:
    """Rerank one request line: ``{"query", "results": [{"id", "index", "score", "text"}, ...]}``, best first.

    What ``jp-rerank rerank`` writes per input line, on one machine or on Ray. A NaN score (a broken model; ranked
    last) has no JSON form and is written as ``None`` (``null``).

    Args:
        reranker: Anything with ``rerank(query, texts, top_n=, score_threshold=)`` (a :class:`jp_rerank.Reranker`).
        row: The parsed request line.
        where: ``file:line``, for error messages.
        top_n: Keep the best ``top_n``.
        threshold: Keep results scoring at least this.

    Returns:
        The output record and the number of (query, passage) pairs scored.

    Raises:
        InputFormatError: A malformed request, or passages the reranker refuses (names ``where``).
    """
    query, texts, ids = rerank_request(row, where)
    try:
        results = reranker.rerank(query, texts, top_n=top_n, score_threshold=threshold)
    except (TypeError, ValueError) as exc:  # bad passages (lone surrogates, over the caps...): name the line
        raise InputFormatError(f"{where}: {exc}") from exc
    ranked = [
        {
            "id": ids[r.index],
            "index": r.index,
            "score": None if math.isnan(r.score) else float(r.score),
            "text": texts[r.index],
        }
        for r in results
    ]
    return {"query": query, "results": ranked}, len(texts)
