"""Every exception type jp-rerank raises of its own (one home; the modules that raise them import them here).

All derive from :class:`JpRerankError` and from the built-in type a caller would already catch (``OSError`` for
things that could not be had, ``ValueError`` for bad data, ``ConnectionError`` for servers), so existing
``except OSError`` / ``except ValueError`` code keeps working.
"""

from __future__ import annotations

__all__ = [
    "CliInputError",
    "DatasetUnavailableError",
    "IndexCorruptedError",
    "IndexMismatchError",
    "IndexServerUnavailableError",
    "InputFormatError",
    "JpRerankError",
    "ModelLoadError",
    "ServerAuthError",
    "ServerUnavailableError",
    "TimeBudgetError",
    "TrainingDataError",
]


class JpRerankError(Exception):
    """Base class of jp-rerank's own errors."""


class ModelLoadError(JpRerankError, OSError):
    """A model could not be loaded (not cached offline, missing files, unreachable hub, wrong kind of model)."""


class IndexMismatchError(JpRerankError, ValueError):
    """A saved index does not match what it is loaded with (embedder, dimension, metric, version)."""


class IndexCorruptedError(JpRerankError, ValueError):
    """A saved index is unreadable: a file is missing, truncated, or does not match its recorded checksum."""


class IndexServerUnavailableError(JpRerankError, ConnectionError):
    """A vector-index server (Chroma over HTTP) could not be reached or kept failing after the retries."""


class DatasetUnavailableError(JpRerankError, OSError):
    """A dataset could not be fetched (hub unreachable, offline mode without a cached copy)."""


class InputFormatError(JpRerankError, ValueError):
    """An input file is missing or malformed: passages, rerank requests (the message names the file and line)."""


class CliInputError(InputFormatError):
    """A file or value given on the command line is missing or malformed (exit code 2)."""


class TrainingDataError(JpRerankError, ValueError):
    """A training file is missing something or holds a malformed row (the message names file and line)."""


class TimeBudgetError(JpRerankError, ValueError):
    """A training run's time budget was used up before training could start (the message says by what)."""


class ServerUnavailableError(JpRerankError, ConnectionError):
    """A jp-rerank (or TEI) server could not be reached, timed out, or stayed overloaded after the retries."""


class ServerAuthError(JpRerankError, PermissionError):
    """The server rejected the API key (HTTP 401 / 403)."""
