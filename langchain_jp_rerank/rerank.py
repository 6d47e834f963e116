"""LangChain document compressor that reranks documents with a Japanese cross-encoder."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PrivateAttr, field_validator

from jp_rerank._validate import check_positive_int
from jp_rerank.presets import DEFAULT_RERANKER
from jp_rerank.rerank import Reranker
from langchain_jp_rerank._common import as_model_name, check_engine, scored_copy

__all__ = ["JapaneseReranker"]


class JapaneseReranker(BaseDocumentCompressor):
    """Rerank retrieved documents with a Japanese cross-encoder (a LangChain ``BaseDocumentCompressor``).

    Returns new ``Document`` objects, best first, each a copy of an input document (same ``id``, deep-copied
    metadata) with ``metadata["relevance_score"]`` set to a Python float; the caller's documents are never
    modified. No documents in gives no documents out. Works inside ``ContextualCompressionRetriever`` and as a
    step of an LCEL chain; ``acompress_documents`` runs the model in a worker thread.

    Pass ``reranker=`` to share one loaded :class:`jp_rerank.Reranker` between adapters; otherwise one is
    built from ``model``, ``device`` and ``model_kwargs`` and loaded on first use.

    Example:
        >>> from langchain_core.documents import Document
        >>> compressor = JapaneseReranker(model="xsmall", top_n=1)  # doctest: +SKIP
        >>> docs = [Document("京都の寺。"), Document("富士山は3776mです。")]
        >>> compressor.compress_documents(docs, "富士山の高さは？")  # doctest: +SKIP
        [Document(metadata={'relevance_score': 0.98...}, page_content='富士山は3776mです。')]
    """

    model: str = Field(default=DEFAULT_RERANKER, frozen=True)
    """Alias from :mod:`jp_rerank.presets`, hub id or local directory of a cross-encoder."""
    device: str | None = Field(default=None, frozen=True)
    """``"cpu"``, ``"cuda"``...; ``None`` picks CUDA when available."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict, frozen=True)
    """Further :class:`jp_rerank.Reranker` arguments (``max_length``, ``overflow``, ``batch_size``...)."""
    top_n: int | None = 3
    """Number of documents to return (``None``: all of them, reordered)."""
    score_threshold: float | None = None
    """Drop documents scoring below this (scores are in ``[0, 1]`` for sigmoid rerankers)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

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

    @field_validator("top_n", mode="before")
    @classmethod
    def _check_top_n(cls, value: object) -> object:
        return value if value is None else check_positive_int(value, name="top_n")

    @property
    def reranker(self) -> Reranker:
        """The engine; pass it to other adapters to share the loaded model."""
        return self._reranker

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Return copies of the best ``top_n`` documents (at or above ``score_threshold``), best first.

        Args:
            documents: Retrieved documents; left unmodified.
            query: The question.
            callbacks: Unused; accepted for the LangChain interface.

        Returns:
            New documents with ``metadata["relevance_score"]`` (float), sorted by descending score (ties keep
            input order).

        Raises:
            ValueError: An empty or whitespace-only query.
            TypeError: A non-string query, or an item that is not a ``Document`` (the message names its position).
        """
        docs = list(documents)
        for i, doc in enumerate(docs):
            if not isinstance(doc, Document):
                raise TypeError(f"documents[{i}] must be a langchain_core Document, got {type(doc).__name__}")
        results = self._reranker.rerank(
            query,
            [doc.page_content for doc in docs],
            top_n=self.top_n,
            score_threshold=self.score_threshold,
        )
        return [scored_copy(docs[r.index], r.score) for r in results]

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Like :meth:`compress_documents`, computed in a worker thread so the event loop stays free."""
        return await asyncio.to_thread(self.compress_documents, documents, query, callbacks)
