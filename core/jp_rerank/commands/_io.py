"""Reading and writing the files the command line takes; checks of paths and devices.

Inputs are read by :mod:`jp_rerank.records` (UTF-8 with or without a BOM, strict JSON, passages and rerank
requests), the one reader the Ray jobs use too; this module adds standard input and the output side.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from jp_rerank.errors import CliInputError
from jp_rerank.records import decoded_lines, iter_records, open_lines, parse_json_line, read_jsonl, rerank_request

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
    "rerank_request",
]


def finite_or_none(score: float | None) -> float | None:
    """JSON has no NaN: a NaN score (a broken model; ranked last) is written as null."""
    return None if score is None or math.isnan(score) else score


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
        yield decoded_lines(buffer, "<stdin>")
        return
    with open_lines(path) as lines:
        yield lines


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
