"""Deprecated: metrics moved to :mod:`jp_rerank.evaluation.metrics` (removed in the next release)."""

from __future__ import annotations

from jp_rerank._deprecation import moved

__getattr__ = moved(
    __name__,
    {name: f"jp_rerank.evaluation.metrics:{name}" for name in ("DEFAULT_METRICS", "evaluate", "evaluate_per_query")},
)
