"""Durable writes and guarded reads of single files: fsync, flushed JSON, SHA-256, bounded reads, removal.

The building blocks of :mod:`jp_rerank.snapshots`: what is written is flushed to disk before the caller moves on,
and what is read is a regular file (never through a link) of bounded size.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jp_rerank.errors import IndexCorruptedError

__all__ = ["fsync_dir", "fsync_file", "parse_json", "read_bounded", "remove_path", "sha256_file", "write_json"]

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)


def sha256_file(path: Path) -> str:
    """SHA-256 (hex) of a regular file's content, read without following a link.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     (Path(tmp) / "f").write_bytes(b"")
        ...     sha256_file(Path(tmp) / "f")[:16]
        0
        'e3b0c44298fc1c14'
    """
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_BINARY)
    with os.fdopen(fd, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_file(path: Path) -> None:
    """Flush a file (or, on POSIX, a folder's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (creations, renames) to disk; a no-op on Windows."""
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    fsync_file(path)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented UTF-8 JSON (no NaN) and flush it to disk before returning."""
    with path.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=2, allow_nan=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """Read a regular file (never through a link) of at most ``limit`` bytes.

    Raises:
        IndexCorruptedError: If ``path`` is a link, not a regular file, or larger than ``limit`` bytes.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_BINARY)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise IndexCorruptedError(f"{path} is a symbolic link; {what} must be a regular file") from exc
        raise
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise IndexCorruptedError(f"{path} is not a regular file; {what} must be one")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise IndexCorruptedError(f"{path} is larger than {limit} bytes, far over any real {what}")
    return data


def parse_json(data: bytes, path: Path) -> Any:
    """Decode UTF-8 JSON read from ``path``.

    Raises:
        IndexCorruptedError: If it is not valid UTF-8 JSON (or nested too deeply).
    """
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise IndexCorruptedError(f"{path} is unreadable: not valid JSON ({type(exc).__name__}: {exc})") from exc


def remove_path(path: Path) -> None:
    """Remove a file, a link (not its target) or a folder tree; missing is fine."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
