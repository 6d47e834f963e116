"""LlamaIndex embedding model backed by a Japanese embedder (:class:`jp_rerank.Embedder`)."""

from __future__ import annotations

import asyncio
import os

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager

from jp_rerank.embed import Embedder
from jp_rerank.presets import DEFAULT_EMBEDDER
from llamaindex_jp_rerank._common import build_engine

__all__ = ["JapaneseEmbedding"]


class JapaneseEmbedding(BaseEmbedding):
    """Embed queries and nodes with a Japanese embedder, applying the model's query/document prompts.

    Queries get the query prompt and node texts the document prompt (``検索クエリ: `` / ``検索文書: ``
    for Ruri v3). Each batch of texts goes to the model in one call; the async methods run the model in a
    worker thread, and the engine's lock lets LlamaIndex's concurrent batches (``num_workers``) share one
    loaded model safely.

    Args:
        model_name: Alias, hub id or local directory (default :data:`jp_rerank.DEFAULT_EMBEDDER`).
        embedder: An already-built :class:`jp_rerank.Embedder` to share (then leave the model options unset).
        truncate_dim: Keep this many leading dimensions (Matryoshka models) for a newly built embedder.
        device: Device for a newly built embedder.
        batch_size: Texts per forward pass for a newly built embedder.
        max_length: Token limit for a newly built embedder.
        query_prefix: Override the query prompt of a newly built embedder.
        document_prefix: Override the document prompt of a newly built embedder.
        local_files_only: Only use local files / the HF cache (newly built embedder).
        embed_batch_size: Texts LlamaIndex hands over per call.
        num_workers: Concurrent batches in LlamaIndex's async embedding.
        callback_manager: LlamaIndex callback manager.

    Example:
        >>> emb = JapaneseEmbedding("static-ja")  # doctest: +SKIP
        >>> len(emb.get_query_embedding("富士山の高さは？"))  # doctest: +SKIP
        1024
    """

    truncate_dim: int | None = Field(default=None, description="Dimensions kept (None: the model's full size).")
    _engine: Embedder = PrivateAttr()

    def __init__(
        self,
        model_name: str | os.PathLike[str] | None = None,
        *,
        embedder: Embedder | None = None,
        truncate_dim: int | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        max_length: int | None = None,
        query_prefix: str | None = None,
        document_prefix: str | None = None,
        local_files_only: bool | None = None,
        embed_batch_size: int = 64,
        num_workers: int | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        options = {
            "truncate_dim": truncate_dim,
            "device": device,
            "batch_size": batch_size,
            "max_length": max_length,
            "query_prefix": query_prefix,
            "document_prefix": document_prefix,
            "local_files_only": local_files_only,
        }
        engine = build_engine(Embedder, embedder, model_name, DEFAULT_EMBEDDER, options)
        super().__init__(
            model_name=engine.model_id,
            truncate_dim=engine.truncate_dim,
            embed_batch_size=embed_batch_size,
            num_workers=num_workers,
            callback_manager=callback_manager or CallbackManager([]),
        )
        self._engine = engine

    @classmethod
    def class_name(cls) -> str:
        """Name used by LlamaIndex serialisation."""
        return "JapaneseEmbedding"

    @property
    def embedder(self) -> Embedder:
        """The underlying engine (share it with the LangChain adapter)."""
        return self._engine

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._engine.embed_query(query).tolist()

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._engine.embed_documents(texts).tolist()

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
