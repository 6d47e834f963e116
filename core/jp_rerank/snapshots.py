"""Atomic, checksummed snapshots on disk: how every saved index (vector, sparse, BM25, CLI folders) is stored.

Layout of an index directory::

    my-index/
      CURRENT                      {"snapshot": "snapshot-...", "manifest_sha256": "..."}
      snapshot-<time>-<random>/
        manifest.json              package version, embedder id, dim, metric, backend, params, count,
                                   and the size and SHA-256 of every other file
        docs.jsonl                 one {"label", "id", "text", "metadata"} object per record
        index.faiss | vectors.npy  the backend's vectors

A save writes a complete new snapshot into a temporary folder (every file flushed to disk, the manifest last),
renames the folder into place, and only then replaces ``CURRENT`` with :func:`os.replace`, which is atomic. Killed
at any point, the directory therefore names either the previous snapshot or the new one, both complete.

**What a save deletes.** Before it creates anything, a save records the names it is about to write (and the
snapshot it replaces) in a ledger file (:mod:`jp_rerank.snapshot_ledger`); it only ever deletes names recorded there
(never a name merely because it looks like ``snapshot-*``), and removes the ledger once it has cleaned up. A save
killed part-way leaves the ledger, so the next save removes exactly what the killed one wrote. A save refuses a
folder holding files that are not a jp-rerank index (``ValueError``); entries named ``snapshot-*`` / ``.tmp-*``
that no ledger records (e.g. a user's ``snapshot-2024-05-01/``, or leftovers of jp-rerank 0.1) are left alone.

**One writer at a time.** A save holds an exclusive lock (:func:`jp_rerank.locks.writer_lock`, removed afterwards)
for its whole duration; a second save into the same directory, from another thread or process, waits for it
(``lock_timeout`` seconds, then :class:`TimeoutError`), so concurrent saves never delete each other's snapshot.

**Loading reads only inside the folder.** ``CURRENT`` must name a ``snapshot-*`` folder directly inside the
directory; links (to files or folders), special files, files the manifest does not list, and manifest entries
that leave the snapshot (``..``, absolute paths) are refused. ``CURRENT`` and the manifest are read with a size
bound. The manifest is verified against ``CURRENT`` and every file against the manifest, so a truncated, altered,
forged or malformed snapshot raises :class:`IndexCorruptedError` instead of giving wrong results. Nothing is
pickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from jp_rerank._version import __version__
from jp_rerank.durable_io import fsync_dir, fsync_file, parse_json, read_bounded, sha256_file, write_json
from jp_rerank.errors import IndexCorruptedError, IndexMismatchError
from jp_rerank.locks import DEFAULT_LOCK_TIMEOUT, LOCK_FILE, writer_lock
from jp_rerank.snapshot_ledger import (
    LEDGER_FILES,
    SNAPSHOT_PREFIX,
    TMP_PREFIX,
    clean_recorded,
    new_token,
    read_ledger,
    write_ledger,
)

__all__ = [
    "CURRENT_FILE",
    "MANIFEST_FILE",
    "MAX_MANIFEST_BYTES",
    "MAX_POINTER_BYTES",
    "open_snapshot",
    "read_snapshot",
    "write_snapshot",
]

logger = logging.getLogger(__name__)

CURRENT_FILE = "CURRENT"
MANIFEST_FILE = "manifest.json"
FORMAT = "jp-rerank-index"
FORMAT_VERSION = 1
MAX_POINTER_BYTES = 64 * 1024
"""Largest ``CURRENT`` file read (a real one is about 120 bytes)."""
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
"""Largest ``manifest.json`` read (one entry of about 150 bytes per file of the snapshot)."""

_RESERVED = frozenset({CURRENT_FILE, LOCK_FILE, *LEDGER_FILES})
_SNAPSHOT_NAME_RE = re.compile(r"^snapshot-[0-9A-Za-z_-]{1,200}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


# ---------------------------------------------------------------------------------------------------- write


def _current_snapshot_name(root: Path) -> str | None:
    """The snapshot ``CURRENT`` names, if it is a valid name (never trusted for anything but 'keep it')."""
    try:
        pointer = json.loads(read_bounded(root / CURRENT_FILE, MAX_POINTER_BYTES, CURRENT_FILE).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    name = pointer.get("snapshot") if isinstance(pointer, dict) else None
    return name if isinstance(name, str) and _SNAPSHOT_NAME_RE.match(name) else None


def _payload_files(folder: Path) -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            info = path.lstat()
            if stat.S_ISDIR(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                raise RuntimeError(f"the index wrote {path}, which is not a regular file (a link?)")
            fsync_file(path)
            files[path.relative_to(folder).as_posix()] = {"bytes": info.st_size, "sha256": sha256_file(path)}
    return dict(sorted(files.items()))


def write_snapshot(
    root: str | os.PathLike[str],
    manifest: Mapping[str, Any],
    write_payload: Callable[[Path], Mapping[str, Any] | None],
    *,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
) -> Path:
    """Write a new snapshot under ``root`` and switch ``CURRENT`` to it atomically.

    Args:
        root: Index directory (created if missing). It must be empty or an index directory.
        manifest: Backend description (``backend``, ``embedder_id``, ``dim``, ``metric``, ``params``...).
        write_payload: Writes the backend's files into the empty folder it is given (sub-folders allowed; every
            file below it is checksummed; links are refused). It may return a mapping merged into the manifest
            (e.g. the ``count`` of what it actually wrote).
        lock_timeout: Seconds to wait for another save into ``root`` to finish (``None``: no limit).

    Returns:
        The new snapshot folder.

    Raises:
        ValueError: If ``root`` is not a folder, or holds files that are not a jp-rerank index.
        TimeoutError: If another save into ``root`` still runs after ``lock_timeout`` seconds.

    Example:
        >>> import tempfile
        >>> def payload(folder: Path) -> None:
        ...     (folder / "data.txt").write_text("hi")
        >>> root = Path(tempfile.mkdtemp()) / "index"
        >>> snapshot = write_snapshot(root, {"backend": "demo"}, payload)
        >>> sorted(p.name for p in root.iterdir()) == sorted(["CURRENT", snapshot.name])
        True
        >>> read_snapshot(root)[1]["files"]["data.txt"]["bytes"]
        2
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"refusing to save into {root}: it exists and is not a folder")
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    try:
        with writer_lock(root, lock_timeout):
            return _write_locked(root, manifest, write_payload)
    finally:
        if created:  # a first save that failed leaves no empty folder behind
            with contextlib.suppress(OSError):
                root.rmdir()


def _write_locked(
    root: Path, manifest: Mapping[str, Any], write_payload: Callable[[Path], Mapping[str, Any] | None]
) -> Path:
    recorded = read_ledger(root)
    current = _current_snapshot_name(root)
    foreign = sorted(
        p.name
        for p in root.iterdir()
        if p.name not in _RESERVED
        and p.name not in recorded
        and p.name != current
        and not p.name.startswith((SNAPSHOT_PREFIX, TMP_PREFIX))
    )
    if foreign:
        raise ValueError(f"refusing to save into {root}: it holds files that are not a jp-rerank index ({foreign[:3]})")
    if recorded:
        clean_recorded(root, recorded, keep=current)  # what a killed save left behind
    token = new_token()
    tmp = root / f"{TMP_PREFIX}{token}"
    snapshot = root / f"{SNAPSHOT_PREFIX}{token}"
    pointer_tmp = root / f"{TMP_PREFIX}{token}.current"
    ours = {tmp.name, snapshot.name, pointer_tmp.name} | ({current} if current else set())
    write_ledger(root, ours)  # recorded before anything is created: a kill from here on is cleaned up next time
    committed = False
    try:
        tmp.mkdir()
        extra = write_payload(tmp)
        files = _payload_files(tmp)
        full = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "jp_rerank_version": __version__,
            "created_unix": time.time(),
            **manifest,
            **(extra or {}),
            "files": files,
        }
        write_json(tmp / MANIFEST_FILE, full)
        fsync_dir(tmp)
        os.rename(tmp, snapshot)
        fsync_dir(root)
        write_json(pointer_tmp, {"snapshot": snapshot.name, "manifest_sha256": sha256_file(snapshot / MANIFEST_FILE)})
        os.replace(pointer_tmp, root / CURRENT_FILE)  # the commit point
        committed = True
        fsync_dir(root)
    except BaseException:
        if not committed:  # remove what this save wrote; the previous snapshot stays current
            try:
                clean_recorded(root, ours, keep=current)
            except Exception as exc:  # the ledger still lists it all: the next save cleans up
                logger.warning("could not clean up the failed save into %s (%s)", root, exc)
        raise
    clean_recorded(root, ours, keep=snapshot.name)
    logger.info("saved %s index with %s records to %s", full.get("backend"), full.get("count"), snapshot)
    return snapshot


# ---------------------------------------------------------------------------------------------------- read


def _check_member(name: object, manifest_path: Path) -> str:
    """A manifest file entry must be a relative path that stays inside the snapshot."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        raise IndexCorruptedError(f"{manifest_path} lists a file with a bad name {name!r}")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or any(part in ("", ".", "..") for part in parts) or name.split("/") != list(parts):
        raise IndexCorruptedError(f"{manifest_path} lists {name!r}, a path that leaves the snapshot folder")
    if name == MANIFEST_FILE:
        raise IndexCorruptedError(f"{manifest_path} lists itself")
    return name


def _check_fields(manifest: Mapping[str, Any], manifest_path: Path) -> None:
    """Types of the fields every reader relies on (present ones only)."""
    expected: dict[str, tuple[type, ...]] = {
        "backend": (str,),
        "embedder_id": (str, type(None)),
        "metric": (str,),
        "params": (dict,),
        "normalize": (bool,),
    }
    for key, types in expected.items():
        if key in manifest and not isinstance(manifest[key], types):
            raise IndexCorruptedError(f"{manifest_path}: {key!r} is {manifest[key]!r}, of the wrong type")
    for key, low in (("count", 0), ("dim", 1)):
        value = manifest.get(key, low)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise IndexCorruptedError(f"{manifest_path}: {key!r} is {value!r}, not an int >= {low}")


def _check_tree(snapshot: Path, listed: Mapping[str, Any]) -> None:
    """Every entry of the snapshot is a real folder or a listed regular file (no links, nothing unlisted)."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(snapshot):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            rel = path.relative_to(snapshot).as_posix()
            if stat.S_ISLNK(info.st_mode):
                raise IndexCorruptedError(f"{path} is a symbolic link; an index snapshot holds no links")
            if stat.S_ISDIR(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                raise IndexCorruptedError(f"{path} is not a regular file")
            if rel != MANIFEST_FILE and rel not in listed:
                raise IndexCorruptedError(f"{path} is not listed in the manifest (added after the save?)")
            seen.add(rel)
    for name in listed:
        if name not in seen:
            raise IndexCorruptedError(f"{snapshot.parent}: {name} is missing from snapshot {snapshot.name}")


def _read_pointer(root: Path) -> bytes:
    pointer_path = root / CURRENT_FILE
    if not root.is_dir() or not os.path.lexists(pointer_path):
        raise FileNotFoundError(f"{root} is not a saved jp-rerank index (no {CURRENT_FILE} file)")
    return read_bounded(pointer_path, MAX_POINTER_BYTES, CURRENT_FILE)


def _read_at(root: Path, pointer_bytes: bytes, verify: bool) -> tuple[Path, dict[str, Any]]:
    pointer_path = root / CURRENT_FILE
    pointer = parse_json(pointer_bytes, pointer_path)
    if not isinstance(pointer, dict):
        raise IndexCorruptedError(f"{pointer_path} is unreadable: not a JSON object")
    name, manifest_sha = pointer.get("snapshot"), pointer.get("manifest_sha256")
    if not isinstance(name, str) or not _SNAPSHOT_NAME_RE.match(name):
        raise IndexCorruptedError(
            f"{pointer_path} names {name!r}, not a snapshot folder of this directory (snapshot-..., no path)"
        )
    if not isinstance(manifest_sha, str) or not _SHA256_RE.match(manifest_sha):
        raise IndexCorruptedError(f"{pointer_path} is unreadable: bad manifest_sha256 {manifest_sha!r}")
    snapshot = root / name
    try:
        info = snapshot.lstat()
    except FileNotFoundError:
        info = None
    if info is not None and stat.S_ISLNK(info.st_mode):
        raise IndexCorruptedError(f"{snapshot} is a symbolic link; the current snapshot must be a real folder")
    manifest_path = snapshot / MANIFEST_FILE
    if info is None or not stat.S_ISDIR(info.st_mode) or not os.path.lexists(manifest_path):
        raise IndexCorruptedError(f"{root}: the current snapshot {name} has no {MANIFEST_FILE}")
    data = read_bounded(manifest_path, MAX_MANIFEST_BYTES, MANIFEST_FILE)
    if hashlib.sha256(data).hexdigest() != manifest_sha:
        raise IndexCorruptedError(f"{manifest_path} does not match the checksum recorded in {CURRENT_FILE}")
    manifest = parse_json(data, manifest_path)
    if not isinstance(manifest, dict):
        raise IndexCorruptedError(f"{manifest_path} is not a JSON object")
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise IndexCorruptedError(
            f"{manifest_path} has format {manifest.get('format')!r} version {manifest.get('format_version')!r}; "
            f"this jp-rerank reads {FORMAT!r} version {FORMAT_VERSION}"
        )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise IndexCorruptedError(f"{manifest_path} has no 'files' table")
    for member, entry in files.items():
        _check_member(member, manifest_path)
        size = entry.get("bytes") if isinstance(entry, dict) else None
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 or not isinstance(sha, str):
            raise IndexCorruptedError(f"{manifest_path}: the entry of {member!r} is malformed ({entry!r:.80})")
    _check_fields(manifest, manifest_path)
    _check_tree(snapshot, files)
    for member, entry in files.items():
        path = snapshot / member
        actual = path.lstat().st_size
        if actual != entry["bytes"]:
            raise IndexCorruptedError(f"{path} has {actual} bytes, the manifest recorded {entry['bytes']} (truncated?)")
        if verify and sha256_file(path) != entry["sha256"]:
            raise IndexCorruptedError(f"{path} does not match the SHA-256 recorded in the manifest")
    return snapshot, manifest


def read_snapshot(root: str | os.PathLike[str], *, verify: bool = True) -> tuple[Path, dict[str, Any]]:
    """Find the current snapshot of an index directory and return its folder and manifest.

    Every path is resolved inside ``root`` (see the module docs); a save that commits while this reads is
    noticed (``CURRENT`` changed) and the new snapshot is read instead.

    Args:
        root: Index directory written by :func:`write_snapshot`.
        verify: Check the SHA-256 of every file (set ``False`` only for trusted, very large indexes; sizes, names
            and links are still checked).

    Raises:
        FileNotFoundError: If ``root`` does not exist or is not an index directory.
        IndexCorruptedError: If ``CURRENT``, the manifest or a file is missing, truncated, altered, malformed, a
            link, or outside the directory.
    """
    root = Path(root)
    attempts = 3
    for attempt in range(attempts):
        pointer_bytes = _read_pointer(root)
        try:
            return _read_at(root, pointer_bytes, verify)
        except (IndexCorruptedError, FileNotFoundError):
            try:
                changed = _read_pointer(root) != pointer_bytes
            except (OSError, ValueError):
                changed = False
            if not changed or attempt == attempts - 1:
                raise
            logger.info("%s changed while it was read (a save committed); reading it again", root)
    raise AssertionError("unreachable")  # pragma: no cover


def open_snapshot(
    directory: str | os.PathLike[str], *, embedder_id: str | None = None, verify: bool = True
) -> tuple[Path, dict[str, Any]]:
    """Read a snapshot (see :func:`read_snapshot`) and check it against the embedder the caller will query with.

    Args:
        directory: Index directory.
        embedder_id: The caller's embedder. When both it and the manifest's are known they must be equal; a
            manifest without one logs a warning and the caller's is assumed.
        verify: Check every file's SHA-256 before reading it.

    Raises:
        FileNotFoundError: If ``directory`` is not an index directory.
        IndexMismatchError: If ``embedder_id`` differs from the manifest's.
        IndexCorruptedError: If a file is missing, truncated or altered.
    """
    snapshot, manifest = read_snapshot(directory, verify=verify)
    saved_id = manifest.get("embedder_id")
    if embedder_id is not None and saved_id is not None and embedder_id != saved_id:
        raise IndexMismatchError(
            f"the index at {directory} was built with embedder {saved_id!r}, but embedder {embedder_id!r} was given; "
            "queries embedded by another model would return meaningless neighbours"
        )
    if embedder_id is not None and saved_id is None:
        logger.warning("the index at %s does not record its embedder; assuming %r", directory, embedder_id)
    saved_version = manifest.get("jp_rerank_version")
    if saved_version != __version__:
        logger.warning("the index at %s was saved by jp-rerank %s (this is %s)", directory, saved_version, __version__)
    return snapshot, manifest
