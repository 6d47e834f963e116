"""A reranker that scores on a ``jp-rerank serve`` (or TEI) server: ``Reranker("http://HOST:PORT")``.

Many processes (LangChain / LlamaIndex workers) share one loaded model and import no torch. :class:`RemoteReranker`
answers ``rerank`` / ``score`` / ``score_many`` like :class:`~jp_rerank.Reranker` does (same result types, same
scores, same ``ValueError`` / ``TypeError`` for bad input), over HTTP with the standard library
(:mod:`jp_rerank.http_client`: timeouts, retries and errors). ``api="tei"`` speaks text-embeddings-inference's
``/rerank`` instead (ranking, ``top_n`` and thresholds are then applied here, with the engine's rule).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from jp_rerank.checks import check_pairs, check_query, check_texts
from jp_rerank.fusion import RerankFusion
from jp_rerank.hits import RerankResult, check_ranking
from jp_rerank.http_client import HttpClient
from jp_rerank.rerank.scoring import Listwise, check_listwise

__all__ = ["RemoteReranker"]


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
        self._http = HttpClient(url, api_key, timeout, retries, backoff)
        self.url = self._http.url
        self.api = api

    def __repr__(self) -> str:
        return f"RemoteReranker(url={self.url!r}, api={self.api!r})"

    @property
    def model_id(self) -> str:
        """The server's URL (what serves the model)."""
        return self.url

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

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Score ``(query, passage)`` pairs in any order, one request per distinct query; floats in input order."""
        groups = check_pairs(pairs)
        out = [0.0] * sum(len(group) for group in groups.values())
        for query, group in groups.items():
            values = self.score(query, [passage for _, passage in group]).tolist()
            for (i, _), value in zip(group, values, strict=True):
                out[i] = value
        return out

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        listwise: Listwise | None = None,
        first_stage_scores: Sequence[float | None] | None = None,
        fusion: RerankFusion | str | None = None,
    ) -> list[RerankResult]:
        """Rank documents by relevance, as :meth:`jp_rerank.Reranker.rerank` (fusion is applied here)."""
        setting = RerankFusion.of(fusion)
        query = check_query(query)
        docs = check_texts(documents, name="documents")
        top_n, score_threshold = check_ranking(top_n, score_threshold)
        if listwise is not None:
            check_listwise(listwise)
        if first_stage_scores is not None and len(first_stage_scores) != len(docs):
            raise ValueError(f"got {len(docs)} documents but {len(first_stage_scores)} first-stage scores")
        if not docs:
            return []
        if self.api == "tei" or setting.active:
            scores = self._ranking_scores(query, docs, listwise)
            return setting.rank(scores, first_stage_scores, top_n=top_n, score_threshold=score_threshold)
        body: dict[str, Any] = {"query": query, "documents": docs, "return_documents": False}
        for key, value in (("top_n", top_n), ("score_threshold", score_threshold), ("listwise", listwise)):
            if value is not None:
                body[key] = value
        answer = self._http.request("/v1/rerank", body)
        return [RerankResult(int(r["index"]), _score(r["relevance_score"])) for r in answer["results"]]

    def _ranking_scores(self, query: str, docs: list[str], listwise: Listwise | None) -> np.ndarray:
        """Every document's score in input order, list-wise normalised on the server when asked."""
        if listwise in (None, "none"):
            return self.score(query, docs)
        if self.api == "tei":
            raise ValueError("listwise='softmax' needs a jp-rerank server (api='jp-rerank')")
        body = {"query": query, "documents": docs, "return_documents": False, "listwise": listwise}
        out = np.full(len(docs), np.nan, dtype=np.float64)
        for r in self._http.request("/v1/rerank", body)["results"]:
            out[int(r["index"])] = _score(r["relevance_score"])
        return out


def _score(value: object) -> float:
    """A score as the server sent it (JSON has no NaN: ``null`` stands for one)."""
    return math.nan if value is None else float(value)  # type: ignore[arg-type]
