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
at any point, the directory therefore names either the previous snapshot or the new one, both complete; leftovers
of an interrupted save are removed by the next one. Loading verifies the manifest against ``CURRENT`` and every
file against the manifest, so a truncated or altered file raises :class:`IndexCorruptedError` instead of giving
wrong results. Nothing is pickled. One process should save to a directory at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jp_rerank._version import __version__
from jp_rerank.errors import IndexCorruptedError, IndexMismatchError

__all__ = ["CURRENT_FILE", "MANIFEST_FILE", "open_snapshot", "read_snapshot", "write_snapshot"]

logger = logging.getLogger(__name__)

CURRENT_FILE = "CURRENT"
MANIFEST_FILE = "manifest.json"
FORMAT = "jp-rerank-index"
FORMAT_VERSION = 1
_SNAPSHOT_PREFIX = "snapshot-"
_TMP_PREFIX = ".tmp-"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    _fsync_file(path)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=2, allow_nan=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def _is_ours(name: str) -> bool:
    return name == CURRENT_FILE or name.startswith((_SNAPSHOT_PREFIX, _TMP_PREFIX))


def write_snapshot(root: Path, manifest: Mapping[str, Any], write_payload: Callable[[Path], None]) -> Path:
    """Write a new snapshot under ``root`` and switch ``CURRENT`` to it atomically.

    Args:
        root: Index directory (created if missing). It must be empty or an index directory.
        manifest: Backend description (``backend``, ``embedder_id``, ``dim``, ``metric``, ``params``...).
        write_payload: Writes the backend's files into the empty folder it is given (sub-folders allowed; every
            file below it is checksummed).

    Returns:
        The new snapshot folder.

    Raises:
        ValueError: If ``root`` exists and holds files that are not a jp-rerank index.
    """
    root.mkdir(parents=True, exist_ok=True)
    foreign = sorted(p.name for p in root.iterdir() if not _is_ours(p.name))
    if foreign:
        raise ValueError(f"refusing to save into {root}: it holds files that are not a jp-rerank index ({foreign[:3]})")
    token = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    tmp = root / f"{_TMP_PREFIX}{token}"
    tmp.mkdir()
    write_payload(tmp)
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in tmp.rglob("*") if p.is_file()):  # nested folders (e.g. sub-indexes) included
        _fsync_file(path)
        files[path.relative_to(tmp).as_posix()] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    full = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "jp_rerank_version": __version__,
        "created_unix": time.time(),
        **manifest,
        "files": files,
    }
    _write_json(tmp / MANIFEST_FILE, full)
    _fsync_dir(tmp)
    snapshot = root / f"{_SNAPSHOT_PREFIX}{token}"
    os.rename(tmp, snapshot)
    _fsync_dir(root)
    pointer_tmp = root / f"{_TMP_PREFIX}{token}.current"
    _write_json(pointer_tmp, {"snapshot": snapshot.name, "manifest_sha256": _sha256(snapshot / MANIFEST_FILE)})
    os.replace(pointer_tmp, root / CURRENT_FILE)  # the commit point
    _fsync_dir(root)
    for old in root.iterdir():
        if old.name not in (CURRENT_FILE, snapshot.name):
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
    logger.info("saved %s index with %s records to %s", manifest.get("backend"), manifest.get("count"), snapshot)
    return snapshot


def read_snapshot(root: str | os.PathLike[str], *, verify: bool = True) -> tuple[Path, dict[str, Any]]:
    """Find the current snapshot of an index directory and return its folder and manifest.

    Args:
        root: Index directory written by :func:`write_snapshot`.
        verify: Check the size and SHA-256 of every file (set ``False`` only for trusted, very large indexes).

    Raises:
        FileNotFoundError: If ``root`` does not exist or is not an index directory.
        IndexCorruptedError: If ``CURRENT``, the manifest or a file is missing, truncated or altered.
    """
    root = Path(root)
    pointer_path = root / CURRENT_FILE
    if not pointer_path.is_file():
        raise FileNotFoundError(f"{root} is not a saved jp-rerank index (no {CURRENT_FILE} file)")
    try:
        pointer = json.loads(pointer_path.read_text(encoding="utf-8"))
        snapshot = root / str(pointer["snapshot"])
        manifest_sha = str(pointer["manifest_sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise IndexCorruptedError(f"{pointer_path} is unreadable: {exc}") from exc
    manifest_path = snapshot / MANIFEST_FILE
    if not manifest_path.is_file():
        raise IndexCorruptedError(f"{root}: the current snapshot {snapshot.name} has no {MANIFEST_FILE}")
    if _sha256(manifest_path) != manifest_sha:
        raise IndexCorruptedError(f"{manifest_path} does not match the checksum recorded in {CURRENT_FILE}")
    manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise IndexCorruptedError(
            f"{manifest_path} has format {manifest.get('format')!r} version {manifest.get('format_version')!r}; "
            f"this jp-rerank reads {FORMAT!r} version {FORMAT_VERSION}"
        )
    for name, info in manifest["files"].items():
        path = snapshot / name
        if not path.is_file():
            raise IndexCorruptedError(f"{root}: {name} is missing from snapshot {snapshot.name}")
        if path.stat().st_size != info["bytes"]:
            raise IndexCorruptedError(
                f"{path} has {path.stat().st_size} bytes, the manifest recorded {info['bytes']} (truncated?)"
            )
        if verify and _sha256(path) != info["sha256"]:
            raise IndexCorruptedError(f"{path} does not match the SHA-256 recorded in the manifest")
    return snapshot, manifest


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
