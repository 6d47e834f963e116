"""Response bodies of the server: the Cohere / Jina, TEI and OpenAI shapes, and the JSON of errors.

Scores are plain floats; a NaN score (a broken model's output, ranked last by the engine) is written as ``null``,
since JSON has no NaN.

Example:
    >>> from jp_rerank.hits import RerankResult
    >>> tei_response([RerankResult(1, 0.75), RerankResult(0, float("nan"))], ["a", "b"], return_text=False)
    [{'index': 1, 'score': 0.75}, {'index': 0, 'score': None}]
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from jp_rerank.hits import RerankResult

__all__ = ["embeddings_response", "error_body", "rerank_response", "tei_response"]

_KINDS = {
    400: "invalid_json",
    401: "authentication_error",
    404: "not_found",
    408: "request_timeout",
    413: "request_too_large",
    422: "invalid_request_error",
    503: "overloaded",
}


def error_body(status: int, message: str, *, field: str | None = None, kind: str | None = None) -> dict[str, Any]:
    """The JSON of an error: ``message`` on top (Cohere, Jina, TEI clients) and an OpenAI ``error`` object.

    Example:
        >>> error_body(413, "body too large")["error"]["type"]
        'request_too_large'
    """
    kind = kind or _KINDS.get(status, "server_error")
    return {"message": message, "error": {"message": message, "type": kind, "param": field, "code": status}}


def _finite(score: float) -> float | None:
    """A score for JSON: NaN (a broken model's output, ranked last) becomes ``null``."""
    return float(score) if math.isfinite(score) else None


def rerank_response(
    request_id: str,
    model: str,
    results: Sequence[RerankResult],
    documents: Sequence[str],
    *,
    return_documents: bool,
    api_version: str,
) -> dict[str, Any]:
    """The Cohere / Jina response: results best first, with ``meta`` (Cohere) and ``usage`` (Jina).

    Fused results also carry ``rerank_score`` and ``first_stage_score``.

    Example:
        >>> body = rerank_response("r1", "m", [RerankResult(1, 0.9)], ["a", "b"], return_documents=True,
        ...                        api_version="2")
        >>> body["results"]
        [{'index': 1, 'relevance_score': 0.9, 'document': {'text': 'b'}}]
    """
    items = []
    for r in results:
        item: dict[str, Any] = {"index": r.index, "relevance_score": _finite(r.score)}
        if r.rerank_score is not None:
            item["rerank_score"] = _finite(r.rerank_score)
            item["first_stage_score"] = r.first_stage_score
        if return_documents:
            item["document"] = {"text": documents[r.index]}
        items.append(item)
    n = len(documents)
    return {
        "id": request_id,
        "model": model,
        "results": items,
        "meta": {"api_version": {"version": api_version}, "billed_units": {"search_units": 1 if n else 0}},
        "usage": {"documents": n, "characters": sum(len(d) for d in documents)},
    }


def tei_response(results: Sequence[RerankResult], texts: Sequence[str], *, return_text: bool) -> list[dict[str, Any]]:
    """The TEI response: a bare list ``[{index, score, text?}]`` best first.

    Example:
        >>> tei_response([RerankResult(0, 0.5)], ["a"], return_text=True)
        [{'index': 0, 'score': 0.5, 'text': 'a'}]
    """
    out = []
    for r in results:
        item: dict[str, Any] = {"index": r.index, "score": _finite(r.score)}
        if return_text:
            item["text"] = texts[r.index]
        out.append(item)
    return out


def embeddings_response(vectors: np.ndarray, model: str, *, encoding_format: str) -> dict[str, Any]:
    """The OpenAI embeddings response (``base64``: little-endian float32 bytes, as the OpenAI SDK decodes them).

    Example:
        >>> body = embeddings_response(np.ones((1, 2), dtype=np.float32), "e", encoding_format="float")
        >>> body["data"][0]["embedding"], body["object"]
        ([1.0, 1.0], 'list')
    """
    data = []
    for i, vector in enumerate(np.asarray(vectors, dtype=np.float32)):
        if encoding_format == "base64":
            value: Any = base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
        else:
            value = [_finite(x) for x in vector.tolist()]
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 0, "total_tokens": 0}}
