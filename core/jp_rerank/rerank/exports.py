"""Model exports made once and cached (ONNX, OpenVINO): where they live, when they are stale, how they are built.

An export of a model lives in ``<model folder>/<backend>/`` when the model is a writable local folder, else in
``$JP_RERANK_CACHE/<backend>/<model>`` (default ``~/.cache/jp-rerank``; hub models always go there, next to
nothing of the Hugging Face cache). Its ``manifest.json`` records the fingerprint of the weights it was made from
(the config, plus the weight files' sizes and times or the hub commit): a changed model makes the export stale and
it is not used.

Building is safe under concurrency and crashes: files are written into a temporary folder beside the target and
renamed into place (a killed export leaves the previous export, or none, never half of one); an exclusive lock file
makes a second process wait for the first and then reuse its export instead of exporting again; a folder that
cannot be written falls back to the user cache. Long exports say what they are doing and how long they took.

Example:
    >>> from jp_rerank.loading import resolve_model
    >>> export_dir(resolve_model("xsmall"), "openvino").name
    'hotchpotch--japanese-reranker-cross-encoder-xsmall-v1'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jp_rerank._version import __version__
from jp_rerank.loading import ModelSource

__all__ = [
    "CACHE_ENV",
    "MANIFEST",
    "Export",
    "build_export",
    "cache_root",
    "export_dir",
    "find_export",
    "fingerprint",
    "read_export",
]

logger = logging.getLogger(__name__)

CACHE_ENV = "JP_RERANK_CACHE"
"""Environment variable naming jp-rerank's cache folder (default ``~/.cache/jp-rerank``)."""

MANIFEST = "manifest.json"
"""Name of the file describing an export."""

_FORMAT = 1
_LOCK_POLL_S = 0.5
_MAX_MANIFEST_BYTES = 1 << 20


@dataclass(frozen=True)
class Export:
    """An export on disk.

    Attributes:
        directory: Folder holding the files and ``manifest.json``.
        backend: ``"onnx"`` or ``"openvino"``.
        files: Precision → file name inside ``directory`` (e.g. ``{"fp32": "model.xml", "int8": "model_int8.xml"}``).
        inputs: Model input names, e.g. ``("input_ids", "attention_mask")``.
        fingerprint: Fingerprint of the model it was made from.
        meta: Everything else the manifest records (tool versions, how it was made).
    """

    directory: Path
    backend: str
    files: dict[str, str] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    fingerprint: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def path(self, precision: str) -> Path:
        """Path of the file of one precision.

        Raises:
            FileNotFoundError: If this export has no file of that precision.
        """
        name = self.files.get(precision)
        if name is None or not (self.directory / name).is_file():
            raise FileNotFoundError(f"the {self.backend} export in {self.directory} has no {precision} model")
        return self.directory / name

    def has(self, precision: str) -> bool:
        """Whether the export has a file of ``precision``."""
        name = self.files.get(precision)
        return name is not None and (self.directory / name).is_file()


def cache_root() -> Path:
    """jp-rerank's cache folder: ``$JP_RERANK_CACHE`` or ``~/.cache/jp-rerank``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "jp-rerank").expanduser()


def _slug(text: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in text.strip("/"))
    return safe[-80:] or "model"


def _writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def export_dir(source: ModelSource, backend: str) -> Path:
    """Folder where the ``backend`` export of ``source`` is kept (see the module notes)."""
    if source.is_local:
        folder = Path(source.location)
        if _writable(folder):
            return folder / backend
        digest = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
        return cache_root() / backend / f"{_slug(folder.name)}-{digest}"
    return cache_root() / backend / source.model_id.replace("/", "--")


def fingerprint(source: ModelSource, config: Any) -> str:
    """Identify the weights an export is made from: the config, plus weight file sizes/times or the hub commit."""
    digest = hashlib.sha256(config.to_json_string(use_diff=False).encode())
    digest.update(str(getattr(config, "_commit_hash", "") or "").encode())
    if source.is_local:
        for path in sorted(Path(source.location).glob("*")):
            if path.suffix in {".safetensors", ".bin", ".pt"} and path.is_file():
                stat = path.stat()
                digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def read_export(directory: Path, backend: str) -> Export | None:
    """The export described by ``directory/manifest.json``, or ``None`` if there is none (or it is unreadable)."""
    manifest = directory / MANIFEST
    try:
        if manifest.stat().st_size > _MAX_MANIFEST_BYTES:
            return None
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("files"), dict):
        return None
    files = {str(k): str(v) for k, v in data["files"].items() if "/" not in str(v) and "\\" not in str(v)}
    known = {"format", "files", "inputs", "fingerprint", "backend"}
    return Export(
        directory=directory,
        backend=str(data.get("backend") or backend),
        files=files,
        inputs=tuple(str(i) for i in data.get("inputs") or ()),
        fingerprint=str(data.get("fingerprint", "")),
        meta={k: v for k, v in data.items() if k not in known},
    )


def find_export(source: ModelSource, model_fp: str, backend: str, precision: str) -> Export | None:
    """The cached, up-to-date ``backend`` export of ``source`` with a ``precision`` file, or ``None``."""
    found = read_export(export_dir(source, backend), backend)
    if found is None or not found.has(precision):
        return None
    if found.fingerprint != model_fp:
        logger.warning("the %s export in %s was made from other weights; it is ignored", backend, found.directory)
        return None
    return found


@contextlib.contextmanager
def _exclusive(lock_path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (waiting, and saying so, while another process holds it)."""
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("another process is making %s; waiting for it", what)
            started = time.monotonic()
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            logger.warning("the other process finished after %.0f s", time.monotonic() - started)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def build_export(
    source: ModelSource,
    model_fp: str,
    backend: str,
    write: Callable[[Path], tuple[dict[str, str], tuple[str, ...], Mapping[str, Any]]],
    *,
    wanted: set[str],
    description: str,
    force: bool = False,
    out_dir: str | os.PathLike[str] | None = None,
) -> Export:
    """Return an up-to-date export with every precision in ``wanted``, building it when needed.

    Args:
        source: Where the model came from (decides the folder, see :func:`export_dir`).
        model_fp: :func:`fingerprint` of the model.
        backend: ``"onnx"`` or ``"openvino"`` (the folder name).
        write: Writes the files into the empty folder it is given and returns ``(files, inputs, meta)``.
        wanted: Precisions the export must have (e.g. ``{"fp32", "int8"}``).
        description: What is being made, for the progress messages (e.g. ``"the OpenVINO int8 export of ..."``).
        force: Build again even if an up-to-date export exists.
        out_dir: Folder to write instead of :func:`export_dir`.

    Returns:
        The export.
    """
    target = Path(out_dir) if out_dir is not None else export_dir(source, backend)
    target.parent.mkdir(parents=True, exist_ok=True)

    def current() -> Export | None:
        found = read_export(target, backend)
        ok = found is not None and found.fingerprint == model_fp and all(found.has(p) for p in wanted)
        return found if ok else None

    if not force and (found := current()) is not None:
        return found
    lock = cache_root() / "locks" / f"{hashlib.sha256(str(target.resolve()).encode()).hexdigest()[:24]}.lock"
    with _exclusive(lock, description):  # kept in the cache, so nothing is left in the user's model folder
        if not force and (found := current()) is not None:  # another process made it while we waited
            logger.info("reusing %s made by another process in %s", description, target)
            return found
        started = time.monotonic()
        logger.warning("making %s (once; cached in %s for later runs)...", description, target)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            files, inputs, meta = write(work)
            manifest = {
                "format": _FORMAT,
                "backend": backend,
                "model_id": source.model_id,
                "fingerprint": model_fp,
                "files": files,
                "inputs": list(inputs),
                "jp_rerank": __version__,
                **meta,
            }
            (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            if target.exists():
                target.rename(old)
            work.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        logger.warning("made %s in %.0f s", description, time.monotonic() - started)
    found = read_export(target, backend)
    if found is None:  # pragma: no cover - just written
        raise OSError(f"could not read back the {backend} export in {target}")
    return found
