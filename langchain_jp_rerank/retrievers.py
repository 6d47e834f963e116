"""LangChain retriever over jp-rerank's two-stage pipeline: Japanese BM25 / hybrid first stage → rerank."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, PrivateAttr, ValidationInfo, field_validator

from jp_rerank.checks import check_positive_int
from jp_rerank.embed import Embedder
from jp_rerank.pipeline import TwoStageRetriever
from jp_rerank.presets import DEFAULT_RERANKER
from jp_rerank.rerank import Reranker
from langchain_jp_rerank.embeddings import JapaneseEmbeddings
from langchain_jp_rerank.rerank import JapaneseReranker

__all__ = ["JapaneseRetriever"]

ModelArg = str | os.PathLike[str]


class JapaneseRetriever(BaseRetriever):
    """Retrieve Japanese passages: BM25 (MeCab) and/or dense first stage, fused, then cross-encoder rerank.

    Wraps :class:`jp_rerank.pipeline.TwoStageRetriever`. Build it with :meth:`from_documents` /
    :meth:`from_texts`, or pass an already-built pipeline as ``pipeline=`` (to share it, and its loaded
    models, with other adapters). Results are new ``Document`` objects, best first, carrying the passage's id and
    a copy of its metadata plus ``relevance_score`` (the ranking score) and ``first_stage_score`` as floats.
    ``k`` and ``fetch_k`` can also be given per call: ``retriever.invoke(query, k=3)``.

    Example:
        >>> from langchain_core.documents import Document
        >>> docs = [Document("富士山は日本一高い山です。", id="a"), Document("京都には寺が多い。", id="b")]
        >>> retriever = JapaneseRetriever.from_documents(docs, reranker="xsmall", k=1)  # doctest: +SKIP
        >>> retriever.invoke("京都の寺")[0].id  # doctest: +SKIP
        'b'
    """

    k: int = 4
    """Documents returned per query."""
    fetch_k: int | None = None
    """First-stage candidates handed to the reranker (``None``: the pipeline's ``first_k``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    _pipeline: TwoStageRetriever = PrivateAttr()

    def __init__(self, *, pipeline: TwoStageRetriever, **data: Any) -> None:
        if not isinstance(pipeline, TwoStageRetriever):
            raise TypeError(f"pipeline must be a jp_rerank.pipeline.TwoStageRetriever, got {type(pipeline).__name__}")
        super().__init__(**data)
        self._pipeline = pipeline

    @field_validator("k", "fetch_k", mode="before")
    @classmethod
    def _positive(cls, value: object, info: ValidationInfo) -> object:
        return value if value is None else check_positive_int(value, name=str(info.field_name))

    @property
    def pipeline(self) -> TwoStageRetriever:
        """The engine's two-stage retriever (share it with other adapters)."""
        return self._pipeline

    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
        *,
        reranker: Reranker | JapaneseReranker | ModelArg | None = DEFAULT_RERANKER,
        embedder: Embedder | JapaneseEmbeddings | ModelArg | None = None,
        bm25: str | None = "mecab",
        k: int = 4,
        fetch_k: int | None = None,
        **pipeline_kwargs: Any,
    ) -> JapaneseRetriever:
        """Index texts and build the retriever.

        Args:
            texts: Passages.
            metadatas: One flat mapping per passage (copied): values must be ``str``, ``int``, ``float`` or
                ``bool``, as in the engine's indexes.
            ids: One unique id per passage (default ``"0"``, ``"1"``...).
            reranker: Cross-encoder (engine, :class:`JapaneseReranker`, alias, hub id or path); ``None`` to return
                the first-stage order.
            embedder: Dense embedder (engine, :class:`JapaneseEmbeddings`, alias, hub id or path) for a hybrid
                first stage; ``None`` for BM25 only.
            bm25: BM25 tokenizer (``"mecab"``, ``"sudachi"``, ``"char2"``...); ``None`` for no BM25 stage.
            k: Documents returned per query.
            fetch_k: First-stage candidates per query (default: the pipeline's ``first_k``, 100).
            **pipeline_kwargs: Further :meth:`TwoStageRetriever.from_texts` arguments (``sparse``,
                ``score_threshold``, ``fusion``, ``weights``, ``vector_backend``...).

        Raises:
            ValueError: No texts, no first stage, duplicate ids or lengths that differ.
            TypeError: A metadata value that is not ``str``, ``int``, ``float`` or ``bool`` (named in the message).
        """
        if isinstance(reranker, JapaneseReranker):
            reranker = reranker.reranker
        if isinstance(embedder, JapaneseEmbeddings):
            embedder = embedder.embedder
        pipeline = TwoStageRetriever.from_texts(
            texts, ids=ids, metadatas=metadatas, embedder=embedder, bm25=bm25, reranker=reranker, **pipeline_kwargs
        )
        return cls(pipeline=pipeline, k=k, fetch_k=fetch_k)

    @classmethod
    def from_documents(cls, documents: Iterable[Document], **kwargs: Any) -> JapaneseRetriever:
        """Index LangChain documents (text, metadata and ids) and build the retriever.

        A document without an ``id`` gets its position (``"0"``, ``"1"``...) as id. Metadata values must be
        ``str``, ``int``, ``float`` or ``bool``. ``kwargs`` are those of :meth:`from_texts`.
        """
        docs = list(documents)
        ids = [doc.id if doc.id is not None else str(i) for i, doc in enumerate(docs)]
        return cls.from_texts([d.page_content for d in docs], [d.metadata for d in docs], ids, **kwargs)

    def _search(self, query: str, k: int | None, fetch_k: int | None) -> list[Document]:
        passages = self._pipeline.retrieve(
            query, top_n=self.k if k is None else k, first_k=self.fetch_k if fetch_k is None else fetch_k
        )
        return [
            Document(
                page_content=p.text,
                id=p.id,
                metadata={**p.metadata, "relevance_score": p.score, "first_stage_score": p.first_stage_score},
            )
            for p in passages
        ]

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        fetch_k: int | None = None,
    ) -> list[Document]:
        return self._search(query, k, fetch_k)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        fetch_k: int | None = None,
    ) -> list[Document]:
        return await asyncio.to_thread(self._search, query, k, fetch_k)
