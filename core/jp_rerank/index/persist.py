"""Deprecated: snapshots moved to :mod:`jp_rerank.snapshots` (shared by every index kind); removed next release."""

from __future__ import annotations

from jp_rerank._deprecation import moved

__getattr__ = moved(
    __name__,
    {
        name: f"jp_rerank.snapshots:{name}"
        for name in ("CURRENT_FILE", "MANIFEST_FILE", "open_snapshot", "read_snapshot", "write_snapshot")
    },
)
