"""LlamaIndex embedding model backed by a Japanese embedder (:class:`jp_rerank.Embedder`)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager

from jp_rerank.embed import Embedder
from jp_rerank.engines import build_engine
from jp_rerank.presets import DEFAULT_EMBEDDER
from llamaindex_jp_rerank._common import PlainPickle

__all__ = ["JapaneseEmbedding"]


class JapaneseEmbedding(PlainPickle, BaseEmbedding):
    """Embed queries and nodes with a Japanese embedder, applying the model's query/document prompts.

    Queries get the query prompt and node texts the document prompt (``query: `` / ``passage: `` for
    multilingual-e5, ``検索クエリ: `` / ``検索文書: `` for Ruri v3; a local copy of a preset gets the preset's, by
    ``preset=`` or recognised from the folder). Each batch of texts goes to the model in one call; the async
    methods run the model in a worker thread, and the engine's lock lets LlamaIndex's concurrent batches
    (``num_workers``) share one loaded model safely.

    Configuration (the same pattern in every adapter of jp-rerank): the model, the named options below (the names
    of LlamaIndex's ``HuggingFaceEmbedding`` where it has one: ``query_instruction`` / ``text_instruction`` are
    its names for our ``query_prefix`` / ``document_prefix``, ``normalize`` for ``normalize_embeddings``), and
    ``model_kwargs`` for any other :class:`jp_rerank.Embedder` argument. Or pass ``embedder=`` to use an engine
    you built. Embeddings configured alike share one engine and one loaded model, with each other and with the
    LangChain adapter. A pickled embedding (``multiprocessing``, Ray) loads the model again on first use.

    Args:
        model_name: Alias, hub id or local directory (default :data:`jp_rerank.DEFAULT_EMBEDDER`).
        embedder: An already-built :class:`jp_rerank.Embedder` to share (then leave the model options unset).
        preset: The preset a local folder is a copy of (its prompts and limits).
        device: Device (default: CUDA when available).
        cache_folder: Hugging Face cache folder to load from.
        trust_remote_code: Allow custom code from the hub repository.
        local_files_only: Only use local files / the HF cache.
        max_length: Token limit.
        truncate_dim: Keep this many leading dimensions (Matryoshka models).
        query_instruction: The query prompt instead of the model's (our ``query_prefix``).
        text_instruction: The document prompt instead of the model's (our ``document_prefix``).
        normalize: L2-normalise the output vectors (default ``True``): ``HuggingFaceEmbedding``'s name for
            :class:`jp_rerank.Embedder`'s ``normalize_embeddings``. Text normalisation (NFKC) is the engine's
            ``normalize_text``, set through ``model_kwargs``.
        show_progress_bar: Show sentence-transformers' progress bar while encoding.
        model_kwargs: Further :class:`jp_rerank.Embedder` arguments (``batch_size``, ``num_threads``...).
        embed_batch_size: Texts LlamaIndex hands over per call.
        num_workers: Concurrent batches in LlamaIndex's async embedding.
        callback_manager: LlamaIndex callback manager.

    Example:
        >>> emb = JapaneseEmbedding("static-ja", device="cpu", truncate_dim=256)
        >>> len(emb.get_query_embedding("富士山の高さは？"))
        256
    """

    truncate_dim: int | None = Field(default=None, description="Dimensions kept (None: the model's full size).")
    _engine: Embedder = PrivateAttr()

    def __init__(
        self,
        model_name: str | os.PathLike[str] | None = None,
        *,
        embedder: Embedder | None = None,
        preset: str | None = None,
        device: str | None = None,
        cache_folder: str | os.PathLike[str] | None = None,
        trust_remote_code: bool | None = None,
        local_files_only: bool | None = None,
        max_length: int | None = None,
        truncate_dim: int | None = None,
        query_instruction: str | None = None,
        text_instruction: str | None = None,
        normalize: bool | None = None,
        show_progress_bar: bool | None = None,
        model_kwargs: dict[str, Any] | None = None,
        embed_batch_size: int = 64,
        num_workers: int | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        options = {
            "preset": preset,
            "device": device,
            "cache_folder": os.fspath(cache_folder) if cache_folder is not None else None,
            "trust_remote_code": trust_remote_code,
            "local_files_only": local_files_only,
            "max_length": max_length,
            "truncate_dim": truncate_dim,
            "query_prefix": query_instruction,
            "document_prefix": text_instruction,
            "normalize_embeddings": normalize,
            "show_progress_bar": show_progress_bar,
        }
        engine = build_engine(Embedder, embedder, model_name, DEFAULT_EMBEDDER, options, model_kwargs)
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
