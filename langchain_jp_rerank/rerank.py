"""LangChain document compressor that reranks documents with a Japanese cross-encoder."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, field_validator

from jp_rerank.checks import check_positive_int
from langchain_jp_rerank._common import RerankerAdapter, scored_copy

__all__ = ["JapaneseReranker"]


class JapaneseReranker(RerankerAdapter, BaseDocumentCompressor):
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

    top_n: int | None = 3
    """Number of documents to return (``None``: all of them, reordered)."""
    score_threshold: float | None = None
    """Drop documents scoring below this (scores are in ``[0, 1]`` for sigmoid rerankers)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("top_n", mode="before")
    @classmethod
    def _check_top_n(cls, value: object) -> object:
        return value if value is None else check_positive_int(value, name="top_n")

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
