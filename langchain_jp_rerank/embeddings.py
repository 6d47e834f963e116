"""LangChain ``Embeddings`` over :class:`jp_rerank.Embedder`, with query/document prompts applied for you."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from jp_rerank.embed import Embedder
from jp_rerank.presets import DEFAULT_EMBEDDER
from langchain_jp_rerank._common import as_model_name, check_engine

__all__ = ["JapaneseEmbeddings"]


class JapaneseEmbeddings(BaseModel, Embeddings):
    """Japanese text embeddings for LangChain vector stores and retrievers.

    Queries get the model's query prompt and documents its document prompt (e.g. ``検索クエリ: `` /
    ``検索文書: `` for Ruri v3), so a retrieval model never silently loses quality. Vectors are lists of
    Python floats. The async methods run the model in a worker thread, so the event loop is never blocked.

    Pass ``embedder=`` to share one loaded :class:`jp_rerank.Embedder` between adapters (LangChain and
    LlamaIndex at once); otherwise one is built from ``model``, ``device`` and ``model_kwargs`` and loaded on
    first use.

    Example:
        >>> from langchain_core.vectorstores import InMemoryVectorStore
        >>> emb = JapaneseEmbeddings(model="static-ja", model_kwargs={"truncate_dim": 256})  # doctest: +SKIP
        >>> store = InMemoryVectorStore.from_texts(["富士山は日本一高い山です。"], emb)  # doctest: +SKIP
        >>> store.similarity_search("富士山の高さ", k=1)[0].page_content  # doctest: +SKIP
        '富士山は日本一高い山です。'
    """

    model: str = Field(default=DEFAULT_EMBEDDER, frozen=True)
    """Alias from :mod:`jp_rerank.presets`, hub id or local directory of a sentence-transformers model."""
    device: str | None = Field(default=None, frozen=True)
    """``"cpu"``, ``"cuda"``...; ``None`` picks CUDA when available."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict, frozen=True)
    """More :class:`jp_rerank.Embedder` arguments (``truncate_dim``, ``batch_size``, ``query_prefix``...)."""

    model_config = ConfigDict(extra="forbid")

    _embedder: Embedder = PrivateAttr()

    def __init__(self, *, embedder: Embedder | None = None, **data: Any) -> None:
        if embedder is not None:
            check_engine(embedder, Embedder, arg="embedder", data=data)
        super().__init__(**data)
        self._embedder = (
            embedder if embedder is not None else Embedder(self.model, device=self.device, **self.model_kwargs)
        )

    @field_validator("model", mode="before")
    @classmethod
    def _path_to_str(cls, value: object) -> object:
        return as_model_name(value)

    @property
    def embedder(self) -> Embedder:
        """The engine; pass it to other adapters to share the loaded model."""
        return self._embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages with the document prompt.

        Args:
            texts: Passages; an empty list gives an empty list.

        Returns:
            One vector (list of floats) per passage, in input order.

        Raises:
            TypeError: A non-string item (the message names its position).
        """
        vectors: list[list[float]] = self._embedder.embed_documents(texts).tolist()
        return vectors

    def embed_query(self, text: str) -> list[float]:
        """Embed a question with the query prompt.

        Raises:
            ValueError: An empty or whitespace-only query.
        """
        vector: list[float] = self._embedder.embed_query(text).tolist()
        return vector

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Like :meth:`embed_documents`, computed in a worker thread."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Like :meth:`embed_query`, computed in a worker thread."""
        return await asyncio.to_thread(self.embed_query, text)
