"""Deprecated names kept for one release: a module-level ``__getattr__`` that warns and forwards."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping

__all__ = ["moved", "renamed"]


def moved(module: str, names: Mapping[str, str]) -> Callable[[str], object]:
    """Return a module ``__getattr__`` serving old names from their new homes with a ``DeprecationWarning``.

    Args:
        module: The old module's ``__name__`` (for the error message of unknown names).
        names: Old name → ``"new.module:NewName"``.

    Example:
        >>> __getattr__ = moved("old", {"Old": "jp_rerank.hits:SearchHit"})
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     __getattr__("Old").__name__, caught[0].category.__name__
        ('SearchHit', 'DeprecationWarning')
    """

    def __getattr__(name: str) -> object:  # noqa: N807 - the module hook's required name
        target = names.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new_module, _, new_name = target.partition(":")
        warnings.warn(
            f"{module}.{name} is deprecated and will be removed in the next release; use {new_module}.{new_name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(new_module), new_name)

    return __getattr__


def renamed(new_value: bool, old_value: bool | None, *, old: str, new: str, owner: str) -> bool:
    """Resolve a renamed keyword argument: the old spelling wins (with a ``DeprecationWarning``) when given.

    Example:
        >>> renamed(True, None, old="normalize", new="normalize_text", owner="BM25Index")
        True
    """
    if old_value is None:
        return new_value
    warnings.warn(
        f"{owner}({old}=...) is deprecated and will be removed in the next release; use {new}=...",
        DeprecationWarning,
        stacklevel=3,
    )
    return bool(old_value)
