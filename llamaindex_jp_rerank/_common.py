"""Helpers shared by the LlamaIndex adapters."""

from __future__ import annotations

import os
from typing import Any, TypeVar

__all__ = ["build_engine"]

E = TypeVar("E")


def build_engine(
    kind: type[E],
    injected: E | None,
    model: str | os.PathLike[str] | None,
    default: str,
    options: dict[str, Any],
) -> E:
    """Return the injected engine, or build ``kind(model or default, **options)`` from the options set.

    Options left at ``None`` are not passed, so the engine's own defaults apply.

    Raises:
        TypeError: If ``injected`` is not a ``kind``.
        ValueError: If an engine is injected together with a model or engine options (they would be ignored).
    """
    given = {k: v for k, v in options.items() if v is not None}
    if injected is None:
        return kind(default if model is None else model, **given)  # type: ignore[call-arg]
    if not isinstance(injected, kind):
        raise TypeError(f"expected a jp_rerank.{kind.__name__}, got {type(injected).__name__}")
    if model is not None or given:
        names = ["model"] * (model is not None) + sorted(given)
        raise ValueError(f"an engine was injected, so {names} cannot be set here: configure the engine itself")
    return injected
