"""Exclusive file locks: the one non-blocking lock, and the writer lock of a folder that saves take.

A lock goes with an open file (``flock`` on POSIX, ``msvcrt.locking`` on Windows): closing the file releases it,
so a process that dies never leaves a folder locked.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["DEFAULT_LOCK_TIMEOUT", "LOCK_FILE", "try_lock", "writer_lock"]

logger = logging.getLogger(__name__)

LOCK_FILE = ".jp-rerank.lock"
"""Held (``flock``) by the one save in progress; removed when it ends."""
DEFAULT_LOCK_TIMEOUT = 300.0
"""Seconds a save waits for another save into the same directory to finish."""

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def try_lock(fd: int) -> bool:
    """Take an exclusive lock on the open file ``fd`` without waiting; ``False`` when another holder has it.

    The lock goes with the file: closing ``fd`` releases it.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryFile() as fh:
        ...     try_lock(fh.fileno())
        True
    """
    if os.name == "posix":
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    import msvcrt  # pragma: no cover - Windows

    try:  # pragma: no cover - Windows
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
    except OSError:  # pragma: no cover - Windows
        return False
    return True  # pragma: no cover - Windows


@contextlib.contextmanager
def writer_lock(root: Path, timeout: float | None) -> Iterator[None]:
    """Hold the folder's exclusive writer lock; wait up to ``timeout`` seconds for it (``None``: forever).

    The lock file (:data:`LOCK_FILE`) is removed on release. A waiter that locks a file which was meanwhile removed
    (or replaced) notices it (the path no longer names the file it holds) and tries again, so exactly one writer
    holds it.

    Raises:
        ValueError: If the lock file is a symbolic link.
        TimeoutError: If another writer still holds the lock after ``timeout`` seconds.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp, writer_lock(Path(tmp), timeout=1.0):
        ...     (Path(tmp) / LOCK_FILE).exists()
        True
    """
    path = root / LOCK_FILE
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.01
    announced = False
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ValueError(f"refusing to save into {root}: {LOCK_FILE} is a symbolic link") from exc
            raise
        if try_lock(fd):
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
            except FileNotFoundError:
                same = False
            if same:
                break
        os.close(fd)  # releases the lock too, if we got one on a file that was removed meanwhile
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(
                f"another save into {root} has held its lock ({LOCK_FILE}) for over {timeout} s; wait for it to "
                "finish and save again, or pass a longer lock_timeout"
            )
        if not announced:
            logger.info("waiting for another save into %s to finish", root)
            announced = True
        time.sleep(pause)
        pause = min(pause * 2, 0.25)
    try:
        yield
    finally:
        if os.name == "posix":  # Windows cannot remove an open file; the lock file stays there
            with contextlib.suppress(OSError):
                os.unlink(path)
        os.close(fd)
