"""Optional dependencies: check for them, import them, and name the exact `pip install` extra that provides them.

Extra names are read from the installed distribution's metadata, so the message cannot drift from
``pyproject.toml``.
"""

from __future__ import annotations

import importlib
import importlib.util
from functools import cache
from importlib import metadata
from types import ModuleType

DIST_NAME = "jp-rerank"


@cache
def _known_extras() -> frozenset[str]:
    try:
        extras = metadata.metadata(DIST_NAME).get_all("Provides-Extra") or []
    except metadata.PackageNotFoundError:
        return frozenset()
    return frozenset(extras)


def install_hint(extra: str) -> str:
    """Return the ``pip install`` command that provides ``extra``.

    Args:
        extra: Name of an optional-dependency group of the ``jp-rerank`` distribution.

    Returns:
        The command, e.g. ``pip install "jp-rerank[faiss]"``.

    Raises:
        ValueError: If the installed distribution does not declare ``extra``.

    Example:
        >>> install_hint("faiss")
        'pip install "jp-rerank[faiss]"'
    """
    known = _known_extras()
    if known and extra not in known:
        raise ValueError(f"unknown extra {extra!r}; jp-rerank declares {sorted(known)}")
    return f'pip install "{DIST_NAME}[{extra}]"'


def is_available(module: str) -> bool:
    """Tell whether ``module`` can be imported, without importing it.

    Example:
        >>> is_available("json")
        True
    """
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise an ``ImportError`` that names it and the extra that installs it.

    Args:
        module: Dotted module name, e.g. ``"faiss"``.
        extra: The ``jp-rerank`` extra that installs it, e.g. ``"faiss"``.

    Returns:
        The imported module.

    Raises:
        ImportError: If the module is not installed.

    Example:
        >>> require("json", "all").__name__
        'json'
    """
    hint = install_hint(extra)
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{module!r} is required for this feature but is not installed: run {hint}") from exc
