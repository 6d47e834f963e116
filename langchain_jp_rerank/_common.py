"""What the LangChain adapters share: one configuration pattern, engine injection, scored document copies.

The configuration pattern (every adapter of this package and of ``llamaindex_jp_rerank``):

- the model (alias, hub id or local folder) under the name of the wrapper each adapter replaces, and under that name
  only: ``model`` for the compressor (as ``CohereRerank``), ``model_name`` for the cross-encoder and the embeddings
  (as ``HuggingFaceCrossEncoder`` / ``HuggingFaceEmbeddings``);
- named fields for the options the wrappers users already have name: ``device``, ``cache_folder`` and ``preset``
  (the preset a local folder is a copy of, for its prompts and limits);
- ``model_kwargs`` for every other engine argument (:class:`jp_rerank.Reranker` / :class:`jp_rerank.Embedder`:
  ``batch_size``, ``max_length``, ``trust_remote_code``, ``local_files_only``, ``num_threads``...). It also takes
  the named options, so the familiar ``model_kwargs={"device": "cpu"}`` works; a name given both ways must agree;
- or an engine passed in (``reranker=`` / ``embedder=``), whose loaded model is then used as is.

Adapters configured alike share one engine and one loaded model (:func:`jp_rerank.engines.shared_engine`), across
LangChain and LlamaIndex. Adapters deep-copy (``model_copy(deep=True)``) by sharing that model and pickle without
it (it is loaded again on first use after unpickling).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from copy import deepcopy
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from jp_rerank.engines import ModelHandle, engine_options, shared_engine
from jp_rerank.rerank import Reranker, RerankResult

if TYPE_CHECKING:
    from langchain_core.documents import Document

__all__ = [
    "ENGINE_FIELDS",
    "EngineFields",
    "RerankerAdapter",
    "as_model_name",
    "check_engine",
    "scored_copy",
]

E = TypeVar("E")

ENGINE_FIELDS = frozenset({"preset", "device", "cache_folder", "model_kwargs"})
"""Adapter fields besides the model that configure an engine the adapter builds itself (meaningless when one is
injected)."""


def as_model_name(value: object) -> object:
    """Turn a path-like model name into a ``str``; leave anything else for pydantic to check.

    Example:
        >>> from pathlib import Path
        >>> as_model_name(Path("/models/ce"))
        '/models/ce'
    """
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def check_engine(
    engine: object,
    engine_type: type[E],
    *,
    arg: str,
    data: dict[str, Any],
    model_field: str,
    fields: Iterable[str] = ENGINE_FIELDS,
) -> E:
    """Validate an injected engine and fill the adapter's model and ``device`` fields from it.

    Args:
        engine: What the caller passed as ``arg``.
        engine_type: The engine class expected (e.g. :class:`jp_rerank.Reranker`).
        arg: Name of the constructor argument, for error messages.
        data: The adapter's other constructor arguments; the model and ``device`` are set from the engine.
        model_field: The adapter's name for the model (``model`` or ``model_name``).
        fields: The adapter's other fields that configure an engine.

    Returns:
        ``engine``.

    Raises:
        TypeError: If ``engine`` is not an ``engine_type``.
        ValueError: If ``data`` also configures an engine (the model, ``device``, ``model_kwargs``...).
    """
    if not isinstance(engine, engine_type):
        raise TypeError(f"{arg} must be a jp_rerank.{engine_type.__name__}, got {type(engine).__name__}")
    clash = sorted({model_field, *fields} & set(data))
    if clash:
        raise ValueError(f"pass either {arg}= or {', '.join(clash)}, not both (the injected engine is configured)")
    source = getattr(engine, "source", None)
    data[model_field] = source.name if source is not None else str(getattr(engine, "model_id", ""))
    data["device"] = getattr(engine, "device", None)
    return engine


def scored_copy(document: Document, result: RerankResult) -> Document:
    """Return a copy of ``document`` whose (deep-copied) metadata holds the result's scores.

    ``relevance_score`` is the score results are ranked by; a fused result adds ``rerank_score`` (the
    cross-encoder's) and ``first_stage_score`` (when the document had one). The caller's document and its metadata
    are left untouched; ``id`` and any other fields are kept.

    Example:
        >>> from langchain_core.documents import Document
        >>> from jp_rerank import RerankResult
        >>> doc = Document("本文", id="d1", metadata={"source": "a"})
        >>> scored_copy(doc, RerankResult(0, 0.5)).metadata
        {'source': 'a', 'relevance_score': 0.5}
        >>> doc.metadata
        {'source': 'a'}
    """
    metadata = deepcopy(document.metadata)
    metadata["relevance_score"] = result.score
    if result.rerank_score is not None:
        metadata["rerank_score"] = result.rerank_score
    if result.first_stage_score is not None:
        metadata["first_stage_score"] = result.first_stage_score
    return document.model_copy(update={"metadata": metadata})


class EngineFields(BaseModel):
    """The configuration fields every LangChain adapter has (see the module docs for the pattern).

    Subclasses add their model field, under the name of the wrapper they replace (:attr:`model_field`).

    Example:
        >>> EngineFields(model_kwargs={"device": "cpu"}).engine_kwargs()
        {'device': 'cpu'}
    """

    model_field: ClassVar[str] = "model"
    """The name of the subclass's model field: ``model`` or ``model_name``."""

    preset: str | None = Field(default=None, frozen=True)
    """The preset (alias or hub id) a local folder is a copy of, for its prompts and limits (default: recognised
    from the folder's files or name)."""
    device: str | None = Field(default=None, frozen=True)
    """``"cpu"``, ``"cuda"``...; ``None`` picks CUDA when available (``model_kwargs["device"]`` works too)."""
    cache_folder: str | None = Field(default=None, frozen=True)
    """Hugging Face cache folder to load from (default: ``$HF_HOME/hub``)."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict, frozen=True)
    """Further engine arguments (``batch_size``, ``max_length``, ``trust_remote_code``, ``local_files_only``,
    ``num_threads``...); the named fields above may be given here too."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("cache_folder", mode="before")
    @classmethod
    def _path_to_str(cls, value: object) -> object:
        return as_model_name(value)

    def engine_model(self) -> str:
        """The model the engine is built from (the :attr:`model_field` field)."""
        return str(getattr(self, self.model_field))

    def engine_kwargs(self, engine: type[ModelHandle] = Reranker, **named: Any) -> dict[str, Any]:
        """The keyword arguments of ``engine``: the named fields (and ``named``) merged with ``model_kwargs``."""
        fields = {"preset": self.preset, "device": self.device, "cache_folder": self.cache_folder}
        return engine_options(engine, {**fields, **named}, self.model_kwargs)

    @staticmethod
    def effective_device(data: dict[str, Any]) -> None:
        """Show ``model_kwargs["device"]`` in the ``device`` field when that is unset (it is the engine's device)."""
        kwargs = data.get("model_kwargs")
        if data.get("device") is None and isinstance(kwargs, Mapping) and kwargs.get("device") is not None:
            data["device"] = kwargs["device"]


class RerankerAdapter(EngineFields):
    """Pydantic fields and engine injection shared by the LangChain adapters over :class:`jp_rerank.Reranker`.

    Pass ``reranker=`` to share one loaded engine (``model``/``device`` are then read from it); otherwise the
    adapter takes the engine of its configuration from :func:`jp_rerank.engines.shared_engine` (built on first
    sight, loaded on first use, shared by every adapter configured alike).

    Example:
        >>> from langchain_jp_rerank import JapaneseReranker
        >>> JapaneseReranker(model="xsmall", model_kwargs={"device": "cpu"}).reranker.device
        'cpu'
    """

    _reranker: Reranker = PrivateAttr()

    def __init__(self, *, reranker: Reranker | None = None, **data: Any) -> None:
        if reranker is not None:
            check_engine(reranker, Reranker, arg="reranker", data=data, model_field=self.model_field)
        self.effective_device(data)
        super().__init__(**data)
        self._reranker = (
            reranker if reranker is not None else shared_engine(Reranker, self.engine_model(), **self.engine_kwargs())
        )

    @property
    def reranker(self) -> Reranker:
        """The engine; pass it to other adapters to share the loaded model."""
        return self._reranker
