"""Helpers shared by the LangChain adapters: engine injection, model names, scored document copies."""

from __future__ import annotations

import os
from copy import deepcopy
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from jp_rerank.presets import DEFAULT_RERANKER
from jp_rerank.rerank import Reranker

if TYPE_CHECKING:
    from langchain_core.documents import Document

__all__ = ["ENGINE_FIELDS", "RerankerAdapter", "as_model_name", "check_engine", "scored_copy"]

E = TypeVar("E")

ENGINE_FIELDS = frozenset({"model", "device", "model_kwargs"})
"""Adapter fields that configure an engine the adapter builds itself (meaningless when one is injected)."""


def as_model_name(value: object) -> object:
    """Turn a path-like model name into a ``str``; leave anything else for pydantic to check.

    Example:
        >>> from pathlib import Path
        >>> as_model_name(Path("/models/ce"))
        '/models/ce'
    """
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def check_engine(engine: object, engine_type: type[E], *, arg: str, data: dict[str, Any]) -> E:
    """Validate an injected engine and fill the adapter's ``model``/``device`` fields from it.

    Args:
        engine: What the caller passed as ``arg``.
        engine_type: The engine class expected (e.g. :class:`jp_rerank.Reranker`).
        arg: Name of the constructor argument, for error messages.
        data: The adapter's other constructor arguments; ``model`` and ``device`` are set from the engine.

    Returns:
        ``engine``.

    Raises:
        TypeError: If ``engine`` is not an ``engine_type``.
        ValueError: If ``data`` also configures an engine (``model``, ``device`` or ``model_kwargs``).
    """
    if not isinstance(engine, engine_type):
        raise TypeError(f"{arg} must be a jp_rerank.{engine_type.__name__}, got {type(engine).__name__}")
    clash = sorted(ENGINE_FIELDS & set(data))
    if clash:
        raise ValueError(f"pass either {arg}= or {', '.join(clash)}, not both (the injected engine is configured)")
    source = getattr(engine, "source", None)
    data["model"] = source.name if source is not None else str(getattr(engine, "model_id", ""))
    data["device"] = getattr(engine, "device", None)
    return engine


def scored_copy(document: Document, score: float, **extra: float | None) -> Document:
    """Return a copy of ``document`` whose (deep-copied) metadata holds ``relevance_score`` and ``extra``.

    The caller's document and its metadata are left untouched; ``id`` and any other fields are kept.

    Example:
        >>> from langchain_core.documents import Document
        >>> doc = Document("本文", id="d1", metadata={"source": "a"})
        >>> scored_copy(doc, 0.5).metadata
        {'source': 'a', 'relevance_score': 0.5}
        >>> doc.metadata
        {'source': 'a'}
    """
    metadata = deepcopy(document.metadata)
    metadata["relevance_score"] = float(score)
    metadata.update(extra)
    return document.model_copy(update={"metadata": metadata})


class RerankerAdapter(BaseModel):
    """Pydantic fields and engine injection shared by the LangChain adapters over :class:`jp_rerank.Reranker`.

    Pass ``reranker=`` to share one loaded engine (``model``/``device`` are then read from it); otherwise one is
    built from ``model``, ``device`` and ``model_kwargs`` and loaded on first use.

    Example:
        >>> RerankerAdapter(model="xsmall").model
        'xsmall'
    """

    model: str = Field(default=DEFAULT_RERANKER, frozen=True)
    """Alias from :mod:`jp_rerank.presets`, hub id or local directory of a cross-encoder."""
    device: str | None = Field(default=None, frozen=True)
    """``"cpu"``, ``"cuda"``...; ``None`` picks CUDA when available."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict, frozen=True)
    """Further :class:`jp_rerank.Reranker` arguments (``max_length``, ``overflow``, ``batch_size``...)."""

    model_config = ConfigDict(extra="forbid")

    _reranker: Reranker = PrivateAttr()

    def __init__(self, *, reranker: Reranker | None = None, **data: Any) -> None:
        if reranker is not None:
            check_engine(reranker, Reranker, arg="reranker", data=data)
        super().__init__(**data)
        self._reranker = (
            reranker if reranker is not None else Reranker(self.model, device=self.device, **self.model_kwargs)
        )

    @field_validator("model", mode="before")
    @classmethod
    def _path_to_str(cls, value: object) -> object:
        return as_model_name(value)

    @property
    def reranker(self) -> Reranker:
        """The engine; pass it to other adapters to share the loaded model."""
        return self._reranker
