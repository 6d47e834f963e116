"""Request bodies of the server: typed, validated, with errors that name the field or the limit.

Three request shapes are accepted (see docs/serve.md):

* the **Cohere / Jina** rerank shape (``/v1/rerank``, ``/v2/rerank``, ``/rerank``): :class:`RerankRequest`;
* the **TEI** rerank shape (``/rerank`` with ``texts``): :class:`TeiRerankRequest`;
* the **OpenAI** embeddings shape (``/v1/embeddings``): :class:`EmbeddingsRequest`.

Parsing never loads anything a request names: a ``model`` field is a label, answered with the loaded model's
name. Unknown fields are ignored (clients send vendor options such as ``max_tokens_per_doc`` or ``priority``).

Example:
    >>> req = parse_rerank({"query": "富士山", "documents": ["山", {"text": "川"}], "top_n": 1}, max_documents=10,
    ...                    max_chars=100)
    >>> req.documents, req.top_n
    (('山', '川'), 1)
    >>> parse_rerank({"query": "", "documents": []}, max_documents=10, max_chars=100)
    Traceback (most recent call last):
    ...
    jp_rerank.serve.schemas.RequestError: query is empty or whitespace only
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jp_rerank.checks import check_query, check_texts
from jp_rerank.fusion import first_stage_score
from jp_rerank.types import Side

__all__ = [
    "EmbeddingsRequest",
    "RequestError",
    "RerankRequest",
    "TeiRerankRequest",
    "parse_embeddings",
    "parse_rerank",
    "parse_tei_rerank",
]

_QUERY_TYPES = {"query": "query", "search_query": "query"}
_DOCUMENT_TYPES = {"document": "document", "search_document": "document", "passage": "document"}


class RequestError(Exception):
    """A request the server refuses: an HTTP status and one message naming the field or the limit.

    Example:
        >>> err = RequestError(422, "top_n must be positive, got 0", field="top_n")
        >>> err.status, err.field
        (422, 'top_n')
    """

    def __init__(self, status: int, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@dataclass(frozen=True)
class RerankRequest:
    """A Cohere / Jina rerank request, validated.

    Attributes:
        query: The question.
        documents: The passages' texts, in the caller's order.
        first_stage_scores: Each document's first-stage score (``None`` items: it had none), or ``None`` when no
            document carried one.
        model: The ``model`` the client named (a label only).
        top_n: Keep the best ``top_n`` (``None``: all).
        return_documents: Put ``document: {text}`` into each result (``None``: the server's default).
        score_threshold: Keep results scoring at least this.
        listwise: ``"none"`` / ``"softmax"`` for this request (``None``: the server's setting).
        fusion: ``"zscore"``, ``"minmax"``, ``"rrf"`` or ``"none"`` (``None``: no fusion).
        fusion_weight: The reranker's weight in the fusion (``None``: 0.5).
    """

    query: str
    documents: tuple[str, ...]
    first_stage_scores: tuple[float | None, ...] | None = None
    model: str | None = None
    top_n: int | None = None
    return_documents: bool | None = None
    score_threshold: float | None = None
    listwise: Literal["none", "softmax"] | None = None
    fusion: str | None = None
    fusion_weight: float | None = None


@dataclass(frozen=True)
class TeiRerankRequest:
    """A text-embeddings-inference rerank request, validated (``truncate`` is accepted; ``--overflow`` decides)."""

    query: str
    texts: tuple[str, ...]
    raw_scores: bool = False
    return_text: bool = False


@dataclass(frozen=True)
class EmbeddingsRequest:
    """An OpenAI embeddings request, validated.

    Attributes:
        inputs: The texts.
        model: The ``model`` the client named, without a ``:query`` / ``:document`` suffix.
        side: The prompt side asked by ``input_type`` or the model suffix (``None``: the server's default).
        encoding_format: ``"float"`` lists or ``"base64"`` little-endian float32.
        dimensions: The dimension the client expects (checked against the model's).
    """

    inputs: tuple[str, ...]
    model: str | None = None
    side: Side | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


# ---------------------------------------------------------------------------------------------------- parsing


def _object(body: object) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise RequestError(422, f"the request body must be a JSON object, got {_json_type(body)}")
    return body


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, numbers.Number):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _checked(fn: Any, value: object, field: str, **kwargs: Any) -> Any:
    """Run one of :mod:`jp_rerank.checks` and turn its TypeError / ValueError into a 422 naming the field."""
    try:
        return fn(value, **kwargs)
    except (TypeError, ValueError) as exc:
        raise RequestError(422, str(exc), field=field) from None


def _optional_bool(body: Mapping[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise RequestError(422, f"{name} must be true or false, got {_json_type(value)}", field=name)
    return value


def _optional_str(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise RequestError(422, f"{name} must be a string, got {_json_type(value)}", field=name)
    return value


def _optional_number(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    try:
        number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an integer literal too large for a float
        number = math.nan
    if not math.isfinite(number):
        raise RequestError(422, f"{name} must be a finite number, got {_json_type(value)}", field=name)
    return number


def _optional_positive_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(422, f"{name} must be a positive integer, got {_json_type(value)}", field=name)
    if value <= 0:
        raise RequestError(422, f"{name} must be a positive integer, got {value}", field=name)
    return value


def _query(body: Mapping[str, Any], max_chars: int) -> str:
    if "query" not in body:
        raise RequestError(422, "query is required", field="query")
    query: str = _checked(check_query, body["query"], "query")
    _check_length(query, "query", max_chars)
    return query


def _check_length(text: str, where: str, max_chars: int) -> None:
    if len(text) > max_chars:
        raise RequestError(
            422,
            f"{where} has {len(text)} characters, over the limit of {max_chars} characters per text (--max-chars)",
            field=where,
        )


def _texts(values: object, name: str, max_documents: int, max_chars: int) -> list[str]:
    if not isinstance(values, list):
        raise RequestError(422, f"{name} must be an array, got {_json_type(values)}", field=name)
    if len(values) > max_documents:
        raise RequestError(
            422,
            f"{name} has {len(values)} items, over the limit of {max_documents} per request (--max-documents)",
            field=name,
        )
    texts: list[str] = _checked(check_texts, values, name, name=name)
    for i, text in enumerate(texts):
        _check_length(text, f"{name}[{i}]", max_chars)
    return texts


def _documents(values: object, max_documents: int, max_chars: int) -> tuple[list[str], list[float | None]]:
    """Texts and first-stage scores of ``documents``: strings or ``{"text": ..., "score"?, "metadata"?}``."""
    if isinstance(values, list) and len(values) <= max_documents:
        texts: list[object] = []
        scores: list[float | None] = []
        for i, item in enumerate(values):
            if isinstance(item, Mapping):
                if not isinstance(item.get("text"), str):
                    raise RequestError(
                        422,
                        f'documents[{i}] must be a string or an object with a "text" string',
                        field=f"documents[{i}]",
                    )
                texts.append(item["text"])
                scores.append(_first_stage_score(item))
            else:
                texts.append(item)
                scores.append(None)
        values = texts
    else:
        scores = []
    return _texts(values, "documents", max_documents, max_chars), scores


def _first_stage_score(item: Mapping[str, Any]) -> float | None:
    """The item's first-stage score (:data:`jp_rerank.fusion.FIRST_STAGE_KEYS`), else its ``metadata``'s."""
    score = first_stage_score(item)
    metadata = item.get("metadata")
    if score is None and isinstance(metadata, Mapping):
        score = first_stage_score(metadata)
    return score


def parse_rerank(body: object, *, max_documents: int, max_chars: int) -> RerankRequest:
    """Validate a Cohere / Jina rerank body (see :class:`RerankRequest`).

    Raises:
        RequestError: 422 naming the field or the limit.
    """
    body = _object(body)
    query = _query(body, max_chars)
    if "documents" not in body:
        raise RequestError(422, "documents is required", field="documents")
    documents, scores = _documents(body["documents"], max_documents, max_chars)
    listwise = body.get("listwise")
    if listwise is not None and listwise not in ("none", "softmax"):
        raise RequestError(422, f"listwise must be 'none' or 'softmax', got {listwise!r}", field="listwise")
    fusion = _optional_str(body, "fusion")
    if fusion is not None and fusion not in ("none", "rrf", "zscore", "minmax"):
        raise RequestError(422, f"fusion must be 'none', 'rrf', 'zscore' or 'minmax', got {fusion!r}", field="fusion")
    weight = _optional_number(body, "fusion_weight")
    if weight is not None and not 0.0 <= weight <= 1.0:
        raise RequestError(422, f"fusion_weight must be in [0, 1], got {weight}", field="fusion_weight")
    return RerankRequest(
        query=query,
        documents=tuple(documents),
        first_stage_scores=tuple(scores) if any(s is not None for s in scores) else None,
        model=_optional_str(body, "model"),
        top_n=_optional_positive_int(body, "top_n"),
        return_documents=_optional_bool(body, "return_documents"),
        score_threshold=_optional_number(body, "score_threshold"),
        listwise=listwise,
        fusion=fusion,
        fusion_weight=weight,
    )


def parse_tei_rerank(body: object, *, max_documents: int, max_chars: int) -> TeiRerankRequest:
    """Validate a TEI rerank body ``{query, texts, raw_scores?, return_text?, truncate?}``.

    Raises:
        RequestError: 422 naming the field or the limit.
    """
    body = _object(body)
    query = _query(body, max_chars)
    texts = _texts(body.get("texts"), "texts", max_documents, max_chars)
    _optional_bool(body, "truncate")
    return TeiRerankRequest(
        query=query,
        texts=tuple(texts),
        raw_scores=bool(_optional_bool(body, "raw_scores")),
        return_text=bool(_optional_bool(body, "return_text")),
    )


def parse_embeddings(body: object, *, max_documents: int, max_chars: int) -> EmbeddingsRequest:
    """Validate an OpenAI embeddings body ``{input, model?, encoding_format?, dimensions?, input_type?}``.

    The prompt side comes from ``input_type`` (``query`` / ``search_query`` or ``document`` / ``search_document``
    / ``passage``), else from a ``:query`` / ``:document`` suffix of ``model``, else the server's default.

    Raises:
        RequestError: 422 naming the field or the limit.
    """
    body = _object(body)
    if "input" not in body:
        raise RequestError(422, "input is required", field="input")
    raw = body["input"]
    if isinstance(raw, list) and raw and all(_is_token_ids(x) for x in raw):
        raise RequestError(422, "input must be text: token ids are not accepted", field="input")
    inputs = [raw] if isinstance(raw, str) else _texts(raw, "input", max_documents, max_chars)
    if not inputs:
        raise RequestError(422, "input must not be empty", field="input")
    if isinstance(raw, str):
        _checked(check_texts, inputs, "input", name="input")
        _check_length(raw, "input", max_chars)
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise RequestError(422, f"encoding_format must be 'float' or 'base64', got {fmt!r}", field="encoding_format")
    model = _optional_str(body, "model")
    side: Side | None = None
    if model is not None and ":" in model:
        base, _, suffix = model.rpartition(":")
        if suffix in ("query", "document"):
            model, side = base, "query" if suffix == "query" else "document"
    input_type = _optional_str(body, "input_type")
    if input_type is not None:
        chosen = _QUERY_TYPES.get(input_type) or _DOCUMENT_TYPES.get(input_type)
        if chosen is None:
            raise RequestError(
                422,
                f"input_type must be query, search_query, document, search_document or passage, got {input_type!r}",
                field="input_type",
            )
        side = "query" if chosen == "query" else "document"
    return EmbeddingsRequest(
        inputs=tuple(inputs),
        model=model,
        side=side,
        encoding_format="base64" if fmt == "base64" else "float",
        dimensions=_optional_positive_int(body, "dimensions"),
    )


def _is_token_ids(value: object) -> bool:
    if isinstance(value, list):
        return bool(value) and all(isinstance(x, int) and not isinstance(x, bool) for x in value)
    return isinstance(value, int) and not isinstance(value, bool)
