"""The save ledger: the names a snapshot save may leave behind, so that only those are ever deleted.

Before it creates anything, a save (:func:`jp_rerank.snapshots.write_snapshot`) records the names it is about to
write, and the snapshot it replaces, in :data:`LEDGER_FILE`; it deletes only names recorded there, of the forms
saves create (:func:`new_token`), and removes the ledger once it has cleaned up. A save killed part-way leaves the
ledger, so the next save removes exactly what the killed one wrote.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from pathlib import Path

from jp_rerank.durable_io import fsync_dir, read_bounded, remove_path, write_json

__all__ = [
    "LEDGER_FILES",
    "SNAPSHOT_PREFIX",
    "TMP_PREFIX",
    "clean_recorded",
    "new_token",
    "read_ledger",
    "write_ledger",
]

logger = logging.getLogger(__name__)

LEDGER_FILE = ".jp-rerank-ledger.json"
"""Names a save in progress may leave behind; present only while a save runs or after one was killed."""
_LEDGER_TMP = LEDGER_FILE + ".tmp"
LEDGER_FILES = (LEDGER_FILE, _LEDGER_TMP)
"""The ledger and its temporary copy."""
SNAPSHOT_PREFIX = "snapshot-"
TMP_PREFIX = ".tmp-"
_MAX_LEDGER_BYTES = 64 * 1024
_TOKEN = r"\d{20}-[0-9a-f]{8}"
_OWN_NAME_RE = re.compile(rf"^(?:{SNAPSHOT_PREFIX}{_TOKEN}|\.tmp-{_TOKEN}(?:\.current)?)$")
"""The only names a save ever creates; a ledger entry of another form is never deleted."""


def new_token() -> str:
    """A fresh, time-ordered token for the names of one save (``snapshot-<token>``, ``.tmp-<token>``...).

    Example:
        >>> bool(_OWN_NAME_RE.match(SNAPSHOT_PREFIX + new_token()))
        True
    """
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


def read_ledger(root: Path) -> set[str]:
    """Names recorded by saves that did not finish (only names of the form saves create)."""
    path = root / LEDGER_FILE
    if not os.path.lexists(path):
        return set()
    try:
        data = json.loads(read_bounded(path, _MAX_LEDGER_BYTES, "the save ledger").decode("utf-8"))
        names = data["written"] if isinstance(data, dict) else None
        if not isinstance(names, list):
            raise TypeError("'written' is not a list")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        logger.warning("ignoring the unreadable save ledger %s (%s); nothing it may list is deleted", path, exc)
        return set()
    return {name for name in names if isinstance(name, str) and _OWN_NAME_RE.match(name)}


def write_ledger(root: Path, names: set[str]) -> None:
    """Replace the ledger of ``root`` with ``names``, durably (before any of them is created)."""
    tmp = root / _LEDGER_TMP
    remove_path(tmp)
    write_json(tmp, {"written": sorted(names)})
    os.replace(tmp, root / LEDGER_FILE)
    fsync_dir(root)


def clean_recorded(root: Path, names: set[str], keep: str | None) -> None:
    """Delete the recorded ``names`` except ``keep``, then the ledger (it is rewritten if something stays)."""
    left: set[str] = set()
    for name in sorted(names):
        if name == keep:
            continue
        try:
            remove_path(root / name)
        except OSError as exc:
            logger.warning("could not remove %s (%s); the next save will try again", root / name, exc)
            left.add(name)
    if left:
        write_ledger(root, left)
    else:
        for name in LEDGER_FILES:
            (root / name).unlink(missing_ok=True)
    fsync_dir(root)
