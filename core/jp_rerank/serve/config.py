"""What a ``jp-rerank serve`` process is configured with: limits, queueing, security, and its choice of defaults.

Every limit a client can run into is here, with the command-line flag that changes it (error messages name both).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from jp_rerank.checks import check_positive_int
from jp_rerank.types import Side

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_DOCUMENTS",
    "EmbedDefault",
    "ServeConfig",
    "is_loopback",
]

DEFAULT_MAX_DOCUMENTS = 1000
"""Most documents (or embedding inputs) one request may carry (``--max-documents``)."""

DEFAULT_MAX_CHARS = 20_000
"""Most characters of one query, document or embedding input (``--max-chars``)."""

DEFAULT_MAX_BODY_BYTES = 16 * 2**20
"""Most bytes of one request body (``--max-body-bytes``)."""

EmbedDefault = Literal["document", "query"]


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one server: limits per request, the scoring queue, security and response defaults.

    Attributes:
        reranker_name: Model name the rerank routes answer with (never a local path: see ``served_name``).
        embedder_name: Model name the embeddings route answers with.
        max_documents: Most documents per rerank request / inputs per embeddings request (422 above it).
        max_chars: Most characters of one query, document or input (422 above it).
        max_body_bytes: Most bytes of one request body (413 above it).
        max_wait_ms: Most milliseconds a request waits in the queue before its scoring starts (503 after it).
        queue_size: Most requests waiting per model; one more is refused at once with 503.
        max_batch_pairs: Most (query, document) pairs (or embedding inputs) the worker scores in one engine call.
        max_batch_requests: Most requests combined into one engine call (1: no batching across requests).
        read_timeout_s: Most seconds a client may take to send its body (408 after it: slow clients).
        api_key: Bearer token required on every route but ``/health`` (``None``: no check).
        cors_origins: Origins allowed by CORS (empty: CORS off).
        embed_input_type: The prompt side of an embeddings request that names none (``"document"``: the e5
            ``passage: `` / Ruri ``検索文書: `` prefix; see docs/serve.md).
        return_documents: Default of ``return_documents`` on the Cohere / Jina shape.

    Example:
        >>> ServeConfig(reranker_name="ja-ce-mini", max_documents=200).max_documents
        200
        >>> ServeConfig(queue_size=0)
        Traceback (most recent call last):
        ...
        ValueError: queue_size must be positive, got 0
    """

    reranker_name: str | None = None
    embedder_name: str | None = None
    max_documents: int = DEFAULT_MAX_DOCUMENTS
    max_chars: int = DEFAULT_MAX_CHARS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_wait_ms: int = 10_000
    queue_size: int = 256
    max_batch_pairs: int = 1024
    max_batch_requests: int = 64
    read_timeout_s: float = 30.0
    api_key: str | None = field(default=None, repr=False)
    cors_origins: tuple[str, ...] = ()
    embed_input_type: Side = "document"
    return_documents: bool = True

    def __post_init__(self) -> None:
        for name in (
            "max_documents",
            "max_chars",
            "max_body_bytes",
            "max_wait_ms",
            "queue_size",
            "max_batch_pairs",
            "max_batch_requests",
        ):
            check_positive_int(getattr(self, name), name=name)
        if not self.read_timeout_s > 0:
            raise ValueError(f"read_timeout_s must be positive, got {self.read_timeout_s!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key must not be empty (leave it unset to serve without a key)")
        if self.embed_input_type not in ("document", "query"):
            raise ValueError(f"embed_input_type must be 'document' or 'query', got {self.embed_input_type!r}")

    @property
    def max_wait_s(self) -> float:
        """``max_wait_ms`` in seconds."""
        return self.max_wait_ms / 1000.0


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` listens on this machine only (``127.0.0.0/8``, ``::1``, ``localhost``).

    ``0.0.0.0``, ``::`` and any other name or address count as reachable from outside.

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost"), is_loopback("0.0.0.0")
        (True, True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
