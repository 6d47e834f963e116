"""The run folder ``<output>/checkpoints/``: its lock, ``run.json``, and the transformers checkpoints to resume from.

While a run is live the folder holds the prepared data (see :mod:`jp_rerank.training.prepare`), ``run.json`` (the
settings, the base and where the run stands) and transformers' ``checkpoint-N`` folders. A finished run removes it
unless it is kept to be resumed for more steps.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jp_rerank.locks import try_lock

__all__ = ["RUN_FILE", "WORK_DIR", "last_complete_checkpoint", "read_json", "remove_run", "run_lock", "write_json"]

logger = logging.getLogger(__name__)

WORK_DIR = "checkpoints"
"""Sub-folder of the output folder holding the run state while training."""

RUN_FILE = "run.json"
"""The run's settings, base, statistics and status (``prepared``, ``training``, ``done``), in :data:`WORK_DIR`."""


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as JSON atomically (temp file + rename), making the parent folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(value, fh, ensure_ascii=False, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(path.read_text(encoding="utf-8"))


def remove_run(out: Path) -> None:
    """Remove the run folder of ``out``, and ``out`` itself when nothing else is left in it."""
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Refuse a second run writing into ``out`` while one is live (a lock per folder in the temporary folder).

    The lock is taken before the folder is looked at, so a ``resume`` cannot overlap a live run and two new runs
    cannot both find the folder empty. It is an advisory lock: runs on other machines sharing the folder over a
    network file system are not seen.

    Raises:
        FileExistsError: Another run holds the lock.
    """
    key = hashlib.sha256(str(out.resolve()).encode("utf-8", "surrogatepass")).hexdigest()[:32]
    owner = os.getuid() if hasattr(os, "getuid") else "user"
    with (Path(tempfile.gettempdir()) / f"jp-rerank-train-{owner}-{key}.lock").open("a+") as fh:
        if not try_lock(fh.fileno()):
            raise FileExistsError(f"another training run is writing to {out}; wait for it or choose another folder")
        yield  # closing the file releases the lock


def _readable_json(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def last_complete_checkpoint(work: Path) -> str | None:
    """The newest ``checkpoint-N`` folder in ``work`` that was written to the end, or ``None``.

    transformers writes ``trainer_state.json`` after the weights, optimizer and scheduler: a process killed while
    saving leaves a newer folder without it (or with it cut short), which resuming from would fail on. Such folders
    are passed over.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     for n, complete in ((4, True), (8, False)):
        ...         (Path(tmp) / f"checkpoint-{n}").mkdir()
        ...         if complete:
        ...             _ = (Path(tmp) / f"checkpoint-{n}" / "trainer_state.json").write_text("{}")
        ...     Path(last_complete_checkpoint(Path(tmp))).name
        'checkpoint-4'
    """
    steps = {int(f.name.rsplit("-", 1)[-1]): f for f in work.glob("checkpoint-*") if f.name[11:].isdigit()}
    complete = [n for n, f in steps.items() if f.is_dir() and _readable_json(f / "trainer_state.json")]
    if not complete:
        return None
    last = max(complete)
    skipped = [steps[n].name for n in steps if n > last]
    if skipped:
        logger.warning("passing over incomplete checkpoints %s (a save was interrupted)", ", ".join(sorted(skipped)))
    return str(steps[last])
