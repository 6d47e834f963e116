"""Clients of a ``jp-rerank serve`` server with the engine's shapes: many processes share one loaded model.

:class:`RemoteReranker` and :class:`RemoteEmbedder` answer ``rerank`` / ``score`` / ``embed_queries`` /
``embed_documents`` like :class:`~jp_rerank.rerank.Reranker` and :class:`~jp_rerank.embed.Embedder` do (same result
types, same scores, same ``ValueError`` / ``TypeError`` for bad input), over HTTP with the standard library only:
importing them imports no torch. ``RemoteReranker(..., api="tei")`` speaks text-embeddings-inference's ``/rerank``
instead (ranking, ``top_n`` and thresholds are then applied here, with the engine's rule).

Failures: a request the server refuses (4xx: limits, bad input) raises ``ValueError`` with the server's message;
a rejected API key raises :class:`ServerAuthError` (a ``PermissionError``); a server that cannot be reached, times
out, or stays overloaded (429 / 5xx) after ``retries`` further attempts raises :class:`ServerUnavailableError` (a
``ConnectionError``) naming the URL. Each attempt waits at most ``timeout`` seconds; retries back off
``backoff * 2**n`` seconds (at most 8 s, or the server's ``Retry-After`` up to that), so one call takes at most
about ``(retries + 1) * timeout`` plus the back-offs.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import math
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from jp_rerank.checks import check_query, check_texts
from jp_rerank.errors import JpRerankError
from jp_rerank.hits import RerankResult, check_top_n, rank_scores

__all__ = ["RemoteEmbedder", "RemoteReranker", "ServerAuthError", "ServerUnavailableError"]

logger = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({429, 502, 503, 504})
_MAX_BACKOFF_S = 8.0


class ServerUnavailableError(JpRerankError, ConnectionError):
    """A jp-rerank (or TEI) server could not be reached, timed out, or stayed overloaded after the retries."""


class ServerAuthError(JpRerankError, PermissionError):
    """The server rejected the API key (HTTP 401 / 403)."""


class _HttpClient:
    """POST / GET JSON with bounded timeouts and retries (shared by both clients)."""

    def __init__(self, url: str, api_key: str | None, timeout: float, retries: int, backoff: float) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if not (isinstance(backoff, int | float) and math.isfinite(backoff) and backoff >= 0):
            raise ValueError(f"backoff must be a number of seconds >= 0, got {backoff!r}")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)

    def request(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """Send one request (GET without ``body``) and return its decoded JSON, retrying what can be retried."""
        target = self.url + path
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(target, data=data, headers=headers, method="GET" if data is None else "POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                message = _server_message(exc)
                if exc.code in (401, 403):
                    raise ServerAuthError(f"{target} rejected the API key (HTTP {exc.code}): {message}") from None
                if exc.code in (404, 405):
                    raise ServerUnavailableError(f"{target} has no such route (HTTP {exc.code}): {message}") from None
                if exc.code not in _RETRY_STATUS and exc.code < 500:
                    raise ValueError(f"{target} refused the request (HTTP {exc.code}): {message}") from None
                last, wait = f"HTTP {exc.code}: {message}", _retry_after(exc)
            except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets, truncated answers
                reason = getattr(exc, "reason", exc)
                last, wait = f"{type(reason).__name__}: {reason}", None
            else:
                try:
                    return json.loads(raw)
                except ValueError:
                    raise ServerUnavailableError(f"{target} answered something that is not JSON") from None
            if attempt < self.retries:
                delay = min(_MAX_BACKOFF_S, wait if wait is not None else self.backoff * 2**attempt)
                logger.warning(
                    "%s failed (%s); retry %d of %d in %.1f s", target, last, attempt + 1, self.retries, delay
                )
                time.sleep(delay)
        raise ServerUnavailableError(f"{target} failed {self.retries + 1} time(s); last error: {last}")


def _server_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"{}")
    except (ValueError, OSError):
        return exc.reason or ""
    if isinstance(body, dict):
        message = body.get("message") or body.get("error")
        if isinstance(message, dict):
            message = message.get("message")
        if isinstance(message, str):
            return message
    return str(exc.reason or "")


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    value = exc.headers.get("Retry-After") if exc.headers else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class RemoteReranker:
    """A reranker that scores on a ``jp-rerank serve`` (or TEI) server, with :class:`~jp_rerank.rerank.Reranker`'s API.

    Args:
        url: The server's base URL, e.g. ``"http://127.0.0.1:8080"``.
        api_key: Sent as ``Authorization: Bearer <key>``.
        timeout: Most seconds one attempt waits for its answer.
        retries: Further attempts after a connection error, a timeout, a 429 or a 5xx (0: none).
        backoff: Seconds before the first retry (doubling each time, at most 8 s).
        api: ``"jp-rerank"`` (the Cohere shape on ``/v1/rerank``; thresholds and ``listwise`` on the server) or
            ``"tei"`` (TEI's ``/rerank``; ranking applied here).

    Example:
        >>> remote = RemoteReranker("http://127.0.0.1:8080", timeout=10, retries=1)
        >>> remote
        RemoteReranker(url='http://127.0.0.1:8080', api='jp-rerank')
        >>> remote.rerank("", ["文書"])
        Traceback (most recent call last):
        ...
        ValueError: query is empty or whitespace only
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 2,
        backoff: float = 0.5,
        api: Literal["jp-rerank", "tei"] = "jp-rerank",
    ) -> None:
        if api not in ("jp-rerank", "tei"):
            raise ValueError(f"api must be 'jp-rerank' or 'tei', got {api!r}")
        self._http = _HttpClient(url, api_key, timeout, retries, backoff)
        self.url = self._http.url
        self.api = api

    def __repr__(self) -> str:
        return f"RemoteReranker(url={self.url!r}, api={self.api!r})"

    def score(self, query: str, documents: Sequence[str], *, activation: Literal["none"] | None = None) -> np.ndarray:
        """Score each document against the query (``activation="none"``: raw logits); float32, input order."""
        query = check_query(query)
        docs = check_texts(documents, name="documents")
        if activation not in (None, "auto", "none"):
            raise ValueError(f"a remote reranker scores with its server's activation or 'none', got {activation!r}")
        if not docs:
            return np.zeros(0, dtype=np.float32)
        if activation == "none" or self.api == "tei":
            body = {"query": query, "texts": docs, "raw_scores": activation == "none"}
            items = self._http.request("/rerank", body)
            pairs = [(int(item["index"]), item["score"]) for item in items]
        else:
            answer = self._http.request("/v1/rerank", {"query": query, "documents": docs, "return_documents": False})
            pairs = [(int(item["index"]), item["relevance_score"]) for item in answer["results"]]
        out = np.full(len(docs), np.nan, dtype=np.float32)
        for index, score in pairs:
            out[index] = np.nan if score is None else score
        return out

    def score_many(self, queries: Sequence[str], documents: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Score several queries, each against its own documents (one request each)."""
        queries = check_texts(queries, name="queries")
        if len(queries) != len(documents):
            raise ValueError(f"got {len(queries)} queries but {len(documents)} document lists")
        return [self.score(q, docs) for q, docs in zip(queries, documents, strict=True)]

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        listwise: Literal["none", "softmax"] | None = None,
    ) -> list[RerankResult]:
        """Rank documents by relevance: ``RerankResult(index, score)`` best first, as ``Reranker.rerank``."""
        query = check_query(query)
        docs = check_texts(documents, name="documents")
        top_n = check_top_n(top_n)
        if score_threshold is not None and math.isnan(score_threshold):
            raise ValueError("score_threshold must not be NaN")
        if listwise not in (None, "none", "softmax"):
            raise ValueError(f"listwise must be 'none' or 'softmax', got {listwise!r}")
        if not docs:
            return []
        if self.api == "tei":
            if listwise == "softmax":
                raise ValueError("listwise='softmax' needs a jp-rerank server (api='jp-rerank')")
            return rank_scores(self.score(query, docs), top_n=top_n, score_threshold=score_threshold)
        body: dict[str, Any] = {"query": query, "documents": docs, "return_documents": False}
        for key, value in (("top_n", top_n), ("score_threshold", score_threshold), ("listwise", listwise)):
            if value is not None:
                body[key] = value
        answer = self._http.request("/v1/rerank", body)
        return [
            RerankResult(int(r["index"]), math.nan if r["relevance_score"] is None else float(r["relevance_score"]))
            for r in answer["results"]
        ]


class RemoteEmbedder:
    """An embedder that embeds on a ``jp-rerank serve`` server, with :class:`~jp_rerank.embed.Embedder`'s API.

    Queries get the model's query prompt and passages its document prompt (the server's, sent as ``input_type``).

    Args:
        url: The server's base URL, e.g. ``"http://127.0.0.1:8080"``.
        api_key: Sent as ``Authorization: Bearer <key>``.
        timeout: Most seconds one attempt waits for its answer.
        retries: Further attempts after a connection error, a timeout, a 429 or a 5xx.
        backoff: Seconds before the first retry (doubling, at most 8 s).

    Example:
        >>> remote = RemoteEmbedder("http://127.0.0.1:8080")
        >>> remote.embed_documents("一つの文")
        Traceback (most recent call last):
        ...
        TypeError: texts must be a sequence of str, not a single str
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 2,
        backoff: float = 0.5,
    ) -> None:
        self._http = _HttpClient(url, api_key, timeout, retries, backoff)
        self.url = self._http.url
        self._dim: int | None = None

    def __repr__(self) -> str:
        return f"RemoteEmbedder(url={self.url!r})"

    @property
    def dim(self) -> int:
        """The server's embedding dimension (asked once)."""
        if self._dim is None:
            embedder = self._http.request("/info").get("embedder")
            if not embedder:
                raise ValueError(f"{self.url} serves no embedder (start it with --embedder MODEL)")
            self._dim = int(embedder["dim"])
        return self._dim

    def _embed(self, texts: list[str], side: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        body = {"input": texts, "input_type": side, "encoding_format": "base64"}
        data = sorted(self._http.request("/v1/embeddings", body)["data"], key=lambda d: int(d["index"]))
        vectors = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in data]
        out = np.ascontiguousarray(np.stack(vectors), dtype=np.float32)
        self._dim = out.shape[1]
        return out

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed passages with the document prompt: float32 ``(len(texts), dim)``."""
        return self._embed(check_texts(texts, name="texts"), "document")

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Embed questions with the query prompt: float32 ``(len(queries), dim)``."""
        items = check_texts(queries, name="queries")
        for i, q in enumerate(items):
            check_query(q, name=f"queries[{i}]")
        return self._embed(items, "query")

    def embed_query(self, query: str) -> np.ndarray:
        """Embed one question: a float32 vector ``(dim,)``."""
        return self._embed([check_query(query)], "query")[0]
