"""Model exports made once and cached (ONNX, OpenVINO): where they live, when they are stale, how they are built.

An export of a model lives in ``<model folder>/<backend>/`` when the model is a writable local folder, else in
:func:`cache_root` ``/<backend>/<model>`` (``$JP_RERANK_CACHE``, else ``$XDG_CACHE_HOME/jp-rerank``, else
``~/.cache/jp-rerank``; hub models always go there, next to nothing of the Hugging Face cache).

Staleness is decided by content, never by file times: ``manifest.json`` records the :func:`fingerprint` of the
weights it was made from (the config plus the SHA-256 of every weight file; in a Hugging Face cache the blob's own
name, which *is* its SHA-256) and the SHA-256 of every file of the export. A model replaced in place with its old
times kept (``cp -p``, ``rsync -t``, ``tar -x``), another revision of a hub model, or an export file that was
truncated, deleted or had bytes flipped is seen at load: the export is made again (with one warning). Hashes of large
files are kept in :func:`cache_root` ``/digests`` keyed by the file's inode, size, mtime and ctime (a writer cannot
set ctime back), so a file is read once, not at every load.

Building is safe under concurrency and crashes: files are written into a temporary folder beside the target and
renamed into place (a killed export leaves the previous export, or none, never half of one); an exclusive lock
makes a second process wait for the first and then reuse its export instead of exporting again; the next build
removes what a killed builder left (only its own temporary names, under the lock). A model folder that cannot be
written falls back to the cache, and the lock to a per-user folder in the temporary directory when the cache
cannot be written either. Long exports say what they are doing and how long they took.

Example:
    >>> from jp_rerank.loading import resolve_model
    >>> export_dir(resolve_model("xsmall"), "openvino").name
    'hotchpotch--japanese-reranker-cross-encoder-xsmall-v1'
"""

from __future__ import annotations

import contextlib
import hashlib
import io
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
    """jp-rerank's cache folder: ``$JP_RERANK_CACHE``, else ``$XDG_CACHE_HOME/jp-rerank``, else ``~/.cache/jp-rerank``.

    Example:
        >>> import os
        >>> os.environ["JP_RERANK_CACHE"] = "/tmp/jp-cache"
        >>> str(cache_root())
        '/tmp/jp-cache'
        >>> del os.environ["JP_RERANK_CACHE"]
    """
    named = os.environ.get(CACHE_ENV)
    if named:
        return Path(named).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "jp-rerank"


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content, read once per version of the file (see the module notes).

    A Hugging Face cache blob (a symlink target named by 64 hex digits, the SHA-256 of an LFS file) is not read.

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile(delete=False) as fh:
        ...     _ = fh.write(b"abc")
        >>> file_digest(Path(fh.name))[:12]
        'ba7816bf8f01'
    """
    real = path.resolve()
    if path.is_symlink() and len(real.name) == 64 and all(c in "0123456789abcdef" for c in real.name):
        return real.name
    key = _stat_key(real)
    memo = cache_root() / "digests" / f"{key[0]}-{key[1]}.json"  # by inode: a renamed folder keeps its hashes
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(memo.read_text(encoding="utf-8"))
        if known.get("stat") == key:
            return str(known["sha256"])
    digest = hashlib.sha256()
    with real.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    with contextlib.suppress(OSError):  # a cache that cannot be written only costs a re-read next time
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"path": str(real), "stat": key, "sha256": value}), encoding="utf-8")
        tmp.replace(memo)
    return value


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


_WEIGHT_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".pth"})


def fingerprint(folder: Path | None, config: Any) -> str:
    """Identify the weights an export is made from: the config plus the content of the weight files in ``folder``.

    Args:
        folder: The model folder the weights were loaded from (a local folder or a hub-cache snapshot); ``None``
            when unknown (then only the config and its recorded hub commit count).
        config: The model's transformers config.

    Example:
        >>> from transformers import BertConfig
        >>> fingerprint(None, BertConfig()) == fingerprint(None, BertConfig())
        True
    """
    digest = hashlib.sha256(config.to_json_string(use_diff=False).encode())
    digest.update(str(getattr(config, "_commit_hash", "") or "").encode())
    if folder is not None:
        for path in sorted(folder.glob("*")):
            if path.suffix in _WEIGHT_SUFFIXES and path.is_file():
                digest.update(f"{path.name}:{file_digest(path)}".encode())
    return digest.hexdigest()[:32]


def read_export(directory: Path, backend: str) -> Export | None:
    """The export described by ``directory/manifest.json``, or ``None``.

    ``None`` also when the manifest is unreadable or the export damaged (a file missing or not matching the
    checksum its manifest recorded).
    """
    return _inspect(directory, backend)[0]


def _inspect(directory: Path, backend: str) -> tuple[Export | None, str]:
    """The export in ``directory`` and, when there is none to use although a manifest is there, why not."""
    manifest = directory / MANIFEST
    try:
        if manifest.stat().st_size > _MAX_MANIFEST_BYTES:
            return None, "its manifest is too large"
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, ""
    except (OSError, ValueError) as exc:
        return None, f"its manifest is unreadable ({exc})"
    if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("files"), dict):
        return None, "its manifest is of another format"
    files = {str(k): str(v) for k, v in data["files"].items() if "/" not in str(v) and "\\" not in str(v)}
    known = {"format", "files", "inputs", "fingerprint", "backend", "sha256"}
    damaged = _damaged(directory, data.get("sha256"))
    if damaged:
        return None, f"it is damaged: {damaged}"
    return Export(
        directory=directory,
        backend=str(data.get("backend") or backend),
        files=files,
        inputs=tuple(str(i) for i in data.get("inputs") or ()),
        fingerprint=str(data.get("fingerprint", "")),
        meta={k: v for k, v in data.items() if k not in known},
    ), ""


def _checksums(directory: Path) -> dict[str, str]:
    return {p.name: file_digest(p) for p in sorted(directory.iterdir()) if p.is_file() and p.name != MANIFEST}


def _damaged(directory: Path, recorded: object) -> str:
    """What is wrong with the files of an export against the checksums its manifest recorded ("" if nothing)."""
    if not isinstance(recorded, dict) or not recorded:
        return "its manifest records no checksums"
    for name, expected in recorded.items():
        path = directory / str(name)
        if "/" in str(name) or not path.is_file():
            return f"{name} is missing"
        try:
            if file_digest(path) != expected:
                return f"{name} does not match its checksum"
        except OSError as exc:
            return f"{name} cannot be read: {exc}"
    return ""


def find_export(source: ModelSource, model_fp: str, backend: str, precision: str, recipe: str) -> Export | None:
    """The cached, up-to-date ``backend`` export of ``source`` with a ``precision`` file, or ``None``.

    Up to date as :func:`build_export` decides it: same weights, same ``recipe``, the file present.
    """
    found = read_export(export_dir(source, backend), backend)
    return None if found is None or _unusable(found, "", model_fp, {precision}, recipe) else found


def _unusable(found: Export | None, why: str, model_fp: str, wanted: set[str], recipe: str) -> str:
    """Why an existing export cannot serve (``""``: it can, or there is none)."""
    if found is None:
        return why
    if found.fingerprint != model_fp:
        return "it was made from other weights"
    if found.meta.get("recipe", "") != recipe:
        return "it was made another way, by another jp-rerank version"
    missing = sorted(p for p in wanted if not found.has(p))
    return f"it has no {', '.join(missing)} file" if missing else ""


def _lock_path(target: Path) -> Path:
    """Where the lock of ``target`` lives: the cache, else a per-user folder of the temporary directory."""
    name = f"{hashlib.sha256(str(target.resolve()).encode()).hexdigest()[:24]}.lock"
    per_user = Path(tempfile.gettempdir()) / f"jp-rerank-locks-{os.getuid() if hasattr(os, 'getuid') else 0}"
    for folder in (cache_root() / "locks", per_user):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).touch()
        except OSError:
            continue
        return folder / name
    raise PermissionError(f"no writable place for the export lock (tried {cache_root() / 'locks'} and {per_user})")


_CONVERTER_LOGGERS = ("transformers", "nncf", "torch.onnx", "onnxruntime")


@contextlib.contextmanager
def _quiet_converters() -> Iterator[None]:
    """Keep the converters' own output (NNCF's progress bars, transformers' notices) out of the user's program.

    Their warnings and errors still reach the log; what they print is kept and logged at debug level.
    """
    loggers = [logging.getLogger(name) for name in _CONVERTER_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if printed.getvalue().strip():
            logger.debug("converter output: %s", printed.getvalue()[-4000:])


def _remove_leftovers(target: Path) -> None:
    """Remove what a killed builder of ``target`` left beside it (called under ``target``'s lock)."""
    for path in target.parent.glob(f".{target.name}*"):
        rest = path.name[len(target.name) + 1 :]
        if path.is_dir() and (rest.startswith("-") or rest.startswith(".old-")):
            logger.info("removing %s, left by an export that was stopped", path)
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _exclusive(lock_path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (waiting, and saying so, while another process holds it)."""
    import fcntl

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
    recipe: str = "",
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
        recipe: How the backend makes its exports (its ``EXPORT_RECIPE``): an export made another way (by an
            earlier jp-rerank) is made again.
        force: Build again even if an up-to-date export exists.
        out_dir: Folder to write instead of :func:`export_dir`.

    Returns:
        The export.
    """
    target = Path(out_dir) if out_dir is not None else export_dir(source, backend)
    target.parent.mkdir(parents=True, exist_ok=True)

    def current() -> Export | None:
        found = read_export(target, backend)
        ok = found is not None and not _unusable(found, "", model_fp, wanted, recipe)
        return found if ok else None

    found, why = _inspect(target, backend)
    unusable = _unusable(found, why, model_fp, wanted, recipe)
    if not force and found is not None and not unusable:
        return found
    if unusable:
        logger.warning("the %s export in %s cannot be used (%s); making it again", backend, target, unusable)
    with _exclusive(_lock_path(target), description):  # kept outside the user's model folder
        if not force and (found := current()) is not None:  # another process made it while we waited
            logger.info("reusing %s made by another process in %s", description, target)
            return found
        _remove_leftovers(target)
        started = time.monotonic()
        logger.warning("making %s (once; cached in %s for later runs)...", description, target)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            with _quiet_converters():
                files, inputs, meta = write(work)
            manifest = {
                "format": _FORMAT,
                "backend": backend,
                "model_id": source.model_id,
                "fingerprint": model_fp,
                "recipe": recipe,
                "files": files,
                "inputs": list(inputs),
                "jp_rerank": __version__,
                **meta,
                "sha256": _checksums(work),
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
