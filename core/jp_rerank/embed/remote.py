"""An embedder that embeds on a ``jp-rerank serve`` server: ``Embedder("http://HOST:PORT")``.

Many processes share one loaded model and import no torch. :class:`RemoteEmbedder` answers ``embed_queries`` /
``embed_documents`` / ``embed_query`` like :class:`~jp_rerank.Embedder` does, over HTTP with the standard library
(:mod:`jp_rerank.http_client`: timeouts, retries and errors).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np

from jp_rerank.checks import check_query, check_texts
from jp_rerank.http_client import HttpClient

__all__ = ["RemoteEmbedder"]


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
        self._http = HttpClient(url, api_key, timeout, retries, backoff)
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
