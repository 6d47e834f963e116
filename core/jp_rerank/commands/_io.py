"""Reading and writing the files the command line takes: JSONL, CSV and plain text; checks of paths and devices.

Every input is read as UTF-8, with or without a byte-order mark (what Excel and Notepad write): a line that is not
valid UTF-8 is a :class:`CliInputError` naming the file, the line and the column. JSON lines must be strict JSON:
``NaN`` / ``Infinity`` (and numbers that overflow to them, such as ``1e999``) are refused, as is nesting deeper than
Python can parse, so nothing that every later step would choke on gets into an index.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from jp_rerank.errors import CliInputError

__all__ = [
    "CliInputError",
    "check_device",
    "check_output_path",
    "finite_or_none",
    "iter_records",
    "open_in",
    "open_out",
    "parse_json_line",
    "read_jsonl",
]


def finite_or_none(score: float | None) -> float | None:
    """JSON has no NaN: a NaN score (a broken model; ranked last) is written as null."""
    return None if score is None or math.isnan(score) else score


def _decoded_lines(binary: BinaryIO, source: str) -> Iterator[str]:
    """Decode ``binary`` line by line as UTF-8 (a leading BOM dropped), naming file, line and column on errors."""
    for line_no, raw in enumerate(binary, 1):
        if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            column = len(raw[: exc.start].decode("utf-8", errors="replace")) + 1
            raise CliInputError(
                f"{source}:{line_no}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {column}); save the file "
                "as UTF-8"
            ) from exc


@contextmanager
def open_in(path: str) -> Iterator[Iterator[str]]:
    """Open ``path`` (``-`` is standard input) and yield its lines, decoded as UTF-8 (see the module docs).

    Raises:
        CliInputError: The file is missing or unreadable, or a line is not valid UTF-8.
    """
    if path == "-":
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is None:  # a text stream without bytes underneath (e.g. io.StringIO in tests)
            yield (line.removeprefix("\ufeff") if i == 0 else line for i, line in enumerate(sys.stdin))
            return
        yield _decoded_lines(buffer, "<stdin>")
        return
    p = Path(path)
    if not p.is_file():
        raise CliInputError(f"input file not found: {path}")
    try:
        fh = p.open("rb")
    except OSError as exc:
        raise CliInputError(f"cannot read the input file {path}: {exc.strerror or exc}") from exc
    with fh:
        yield _decoded_lines(fh, path)


def check_output_path(path: str | None, *, folder: bool = False) -> None:
    """Fail early (before any model is loaded) if ``path`` cannot be written.

    Args:
        path: Output file (``None`` or ``-``: standard output), or folder with ``folder=True``.
        folder: ``path`` is a folder to create or replace (``jp-rerank index -o``).

    Raises:
        CliInputError: ``path`` is a folder where a file is wanted (or a file where a folder is wanted), a
            parent is a file, or the nearest existing parent is not writable.
    """
    if path is None or path == "-":
        return
    p = Path(path)
    if p.exists():
        if folder and not p.is_dir():
            raise CliInputError(f"cannot write the index folder {path}: it exists and is a file")
        if not folder and p.is_dir():
            raise CliInputError(f"cannot write the output file {path}: it is a folder")
        target = p if folder else p.parent
    else:
        target = p.parent
    while not target.exists():
        target = target.parent
    if not target.is_dir():
        raise CliInputError(f"cannot write {path}: {target} is a file, not a folder")
    if not os.access(target, os.W_OK | os.X_OK):
        raise CliInputError(f"cannot write {path}: permission denied in {target}")


@contextmanager
def open_out(path: str | None) -> Iterator[TextIO]:
    """Open ``path`` for writing (``None`` or ``-`` is standard output).

    Raises:
        CliInputError: The file cannot be created (a folder, a parent that is a file, no permission).
    """
    if path is None or path == "-":
        yield sys.stdout
        return
    check_output_path(path)
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fh = p.open("w", encoding="utf-8")
    except OSError as exc:
        raise CliInputError(f"cannot write the output file {path}: {exc.strerror or exc}") from exc
    with fh:
        yield fh


def check_device(device: str | None) -> str | None:
    """Return ``device`` if torch knows it and it is present (``None``: automatic choice).

    Raises:
        CliInputError: Not a torch device string (``bogus``, ``cuda:x``), or a CUDA / MPS device this machine lacks.
    """
    if device is None:
        return None
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CliInputError(f"--device {device!r} is not a device (use cpu, cuda, cuda:0, mps...): {exc}") from exc
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise CliInputError(f"--device {device!r}: this machine has no CUDA device torch can use")
        if parsed.index is not None and parsed.index >= count:
            raise CliInputError(f"--device {device!r}: there are only {count} CUDA device(s) (0 to {count - 1})")
    elif parsed.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise CliInputError(f"--device {device!r}: MPS (Apple GPU) is not available on this machine")
    elif parsed.type not in ("cpu", "meta"):
        module = getattr(torch, parsed.type, None)
        available = getattr(module, "is_available", None)
        if not callable(available) or not available():
            raise CliInputError(f"--device {device!r}: no {parsed.type} device is available on this machine")
    return device


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
        CliInputError: Naming ``where`` (``file:line``) and the problem.
    """
    try:
        return json.loads(line, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise CliInputError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
    except RecursionError as exc:
        raise CliInputError(f"{where}: invalid JSON (nested too deeply)") from exc
    except ValueError as exc:  # NaN/Infinity, overflowing floats, integers over Python's 4300-digit limit
        raise CliInputError(f"{where}: invalid JSON ({exc})") from exc


def read_jsonl(fh: Iterable[str], source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line.

    Raises:
        CliInputError: On a line that is not a strict JSON object (names file and line).
    """
    for line_no, line in enumerate(fh, 1):
        if not line.strip():
            continue
        row = parse_json_line(line, f"{source}:{line_no}")
        if not isinstance(row, dict):
            raise CliInputError(f"{source}:{line_no}: expected a JSON object, got {type(row).__name__}")
        yield line_no, row


def _record_id(value: object, where: str, field: str) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise CliInputError(f"{where}: field {field!r} must be a non-empty string or an integer, got {value!r:.40}")


def iter_records(path: str, *, text_field: str = "text", id_field: str = "id") -> Iterator[dict[str, Any]]:
    """Read passages from JSONL (``{"id", "text", ...}``), CSV (header with ``text``) or plain text (one per line).

    The format follows the file suffix (``.jsonl``/``.json``, ``.csv``, anything else is text). Records without an id
    get ``"<file stem>:<line>"``; every other field becomes metadata. CSV files may start with a BOM (Excel).

    Raises:
        CliInputError: Missing file, missing text field, a bad id, a CSV row with more fields than the header, or a
            malformed line (names file and line).
    """
    suffix = Path(path).suffix.lower()
    stem = Path(path).stem
    with open_in(path) as lines:
        if suffix in (".jsonl", ".json", ".ndjson"):
            for line_no, row in read_jsonl(lines, path):
                where = f"{path}:{line_no}"
                text = row.get(text_field)
                if not isinstance(text, str):
                    raise CliInputError(f"{where}: field {text_field!r} missing or not a string")
                meta = {k: v for k, v in row.items() if k not in (text_field, id_field)}
                doc_id = _record_id(row[id_field], where, id_field) if id_field in row else f"{stem}:{line_no}"
                yield {"id": doc_id, "text": text, "metadata": meta}
        elif suffix == ".csv":
            yield from _csv_records(lines, path, stem, text_field=text_field, id_field=id_field)
        else:
            for line_no, line in enumerate(lines, 1):
                text = line.rstrip("\r\n")
                if text.strip():
                    yield {"id": f"{stem}:{line_no}", "text": text, "metadata": {}}


def _csv_records(
    lines: Iterator[str], path: str, stem: str, *, text_field: str, id_field: str
) -> Iterator[dict[str, Any]]:
    reader = csv.DictReader(lines, restkey="\x00extra")
    try:
        fieldnames = reader.fieldnames
        if fieldnames is None or text_field not in fieldnames:
            raise CliInputError(f"{path}: CSV header must contain a {text_field!r} column (found {fieldnames})")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if "\x00extra" in row:
                raise CliInputError(f"{where}: this row has more fields than the header ({len(fieldnames)})")
            meta = {k: v for k, v in row.items() if k not in (text_field, id_field)}
            yield {
                "id": str(row.get(id_field) or f"{stem}:{reader.line_num}"),
                "text": row[text_field] or "",
                "metadata": meta,
            }
    except csv.Error as exc:
        raise CliInputError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from exc
