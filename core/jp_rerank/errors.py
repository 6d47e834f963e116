"""Exception types raised by jp-rerank."""

from __future__ import annotations

__all__ = ["IndexCorruptedError", "IndexMismatchError", "JpRerankError", "ModelLoadError"]


class JpRerankError(Exception):
    """Base class of jp-rerank's own errors."""


class ModelLoadError(JpRerankError, OSError):
    """A model could not be loaded (not cached offline, missing files, unreachable hub)."""


class IndexMismatchError(JpRerankError, ValueError):
    """A saved index does not match what it is loaded with (embedder, dimension, metric, version)."""


class IndexCorruptedError(JpRerankError, ValueError):
    """A saved index is unreadable: a file is missing, truncated, or does not match its recorded checksum."""
