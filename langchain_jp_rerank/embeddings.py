"""LangChain ``Embeddings`` over :class:`jp_rerank.Embedder`, with query/document prompts applied for you."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar, Literal

from langchain_core.embeddings import Embeddings
from pydantic import Field, PrivateAttr, field_validator

from jp_rerank.embed import Embedder
from jp_rerank.engines import shared_engine
from jp_rerank.presets import DEFAULT_EMBEDDER
from langchain_jp_rerank._common import ENGINE_FIELDS, EngineFields, as_model_name, check_engine

__all__ = ["JapaneseEmbeddings"]

ENCODE_KWARGS = {
    "normalize_embeddings": "normalize_embeddings",
    "batch_size": "batch_size",
    "show_progress_bar": "show_progress_bar",
}
"""``encode_kwargs`` keys of ``HuggingFaceEmbeddings`` this adapter takes, and the engine argument each sets."""

PROMPT_KWARGS = ("prompt", "prompt_name", "convert_to_numpy")
"""Further ``encode_kwargs`` / ``query_encode_kwargs`` keys e5 users pass to ``HuggingFaceEmbeddings``: ``prompt``
replaces that side's prompt, ``prompt_name`` picks a side's prompt by name (``"query"``, ``"document"`` or
``"passage"``), ``convert_to_numpy`` changes nothing (vectors are lists of floats either way)."""

_SIDES = {"query": "query", "document": "document", "passage": "document"}
logger = logging.getLogger(__name__)


class JapaneseEmbeddings(EngineFields, Embeddings):
    """Japanese text embeddings for LangChain vector stores and retrievers.

    Queries get the model's query prompt and documents its document prompt (e.g. ``query: `` / ``passage: `` for
    multilingual-e5, ``検索クエリ: `` / ``検索文書: `` for Ruri v3), so a retrieval model never silently loses
    quality; a local copy of a preset gets the preset's prompts (``preset="me5-small"``, or recognised from the
    folder). Vectors are lists of Python floats. The async methods run the model in a worker thread, so the event
    loop is never blocked.

    Configuration (the same pattern in every adapter of jp-rerank): ``model_name``, the named
    fields ``device``, ``cache_folder``, ``preset``, and ``model_kwargs`` for any other :class:`jp_rerank.Embedder`
    argument (``truncate_dim``, ``query_prefix``, ``trust_remote_code``, ``num_threads``...; the named fields may
    be given there too). Names carried over from ``HuggingFaceEmbeddings``: ``model_name``,
    ``model_kwargs={"device": "cpu"}``, ``encode_kwargs`` (``normalize_embeddings``, ``batch_size``) and
    ``show_progress``. Or pass ``embedder=`` to use an engine you built. Embeddings configured alike share one
    engine and one loaded model, with each other and with the LlamaIndex adapter; ``model_copy(deep=True)``
    shares it too, and a pickled copy loads it again on first use.

    Example:
        >>> from langchain_core.vectorstores import InMemoryVectorStore
        >>> emb = JapaneseEmbeddings(model_name="static-ja", model_kwargs={"device": "cpu", "truncate_dim": 256})
        >>> store = InMemoryVectorStore.from_texts(["富士山は日本一高い山です。", "京都には寺が多い。"], emb)
        >>> len(emb.embed_query("富士山の高さ"))
        256
        >>> store.similarity_search("富士山の高さ", k=1)[0].page_content  # the real static-ja model  # doctest: +SKIP
        '富士山は日本一高い山です。'
    """

    model_field: ClassVar[str] = "model_name"
    model_name: str = Field(default=DEFAULT_EMBEDDER, frozen=True)
    """Alias from :mod:`jp_rerank.presets`, hub id or local directory of a sentence-transformers model (the name
    ``HuggingFaceEmbeddings`` gives it)."""
    encode_kwargs: dict[str, Any] = Field(default_factory=dict, frozen=True)
    """As in ``HuggingFaceEmbeddings``: ``normalize_embeddings`` (default ``True``), ``batch_size`` and
    ``show_progress_bar``. Prompts are never needed here: the model's query/document prompts are applied for you."""
    query_encode_kwargs: dict[str, Any] = Field(default_factory=dict, frozen=True)
    """As in ``HuggingFaceEmbeddings``: options for queries (``prompt``, ``prompt_name``; the ``encode_kwargs``
    keys too, where they agree with ``encode_kwargs``: one engine serves both sides)."""
    multi_process: bool = Field(default=False, frozen=True)
    """Accepted for ``HuggingFaceEmbeddings`` compatibility; jp-rerank encodes in this process (batched, thread-safe).
    ``True`` logs once how to scale out instead (``jp-rerank embed-corpus --ray``)."""
    show_progress: bool = Field(default=False, frozen=True)
    """Show sentence-transformers' progress bar while encoding."""

    @field_validator("model_name", mode="before")
    @classmethod
    def _model_path(cls, value: object) -> object:
        return as_model_name(value)

    _embedder: Embedder = PrivateAttr()

    def __init__(self, *, embedder: Embedder | None = None, **data: Any) -> None:
        if embedder is not None:
            fields = ENGINE_FIELDS | {"encode_kwargs", "query_encode_kwargs", "show_progress"}
            check_engine(embedder, Embedder, arg="embedder", data=data, model_field=self.model_field, fields=fields)
        self.effective_device(data)
        super().__init__(**data)
        if embedder is None:
            embedder = shared_engine(
                Embedder, self.engine_model(), **self.engine_kwargs(Embedder, **self._encode_options())
            )
        self._embedder = embedder

    def _encode_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        for source, side in ((self.encode_kwargs, "document"), (self.query_encode_kwargs, "query")):
            name = "encode_kwargs" if side == "document" else "query_encode_kwargs"
            for key, value in source.items():
                if key in PROMPT_KWARGS:
                    options.update(_prompt_option(name, side, key, value))  # type: ignore[arg-type]
                    continue
                if key not in ENCODE_KWARGS:
                    raise TypeError(
                        f"{name} has {key!r}; JapaneseEmbeddings takes {', '.join(sorted(ENCODE_KWARGS))}, "
                        f"{', '.join(PROMPT_KWARGS)} there (other jp_rerank.Embedder arguments go in model_kwargs)"
                    )
                engine_arg = ENCODE_KWARGS[key]
                if engine_arg in options and options[engine_arg] != value:
                    raise ValueError(
                        f"encode_kwargs and query_encode_kwargs set {key} differently ({options[engine_arg]!r} vs "
                        f"{value!r}); one engine embeds both sides, so give it once"
                    )
                options[engine_arg] = value
        if self.show_progress:
            options["show_progress_bar"] = True
        if self.multi_process:
            logger.warning(
                "multi_process=True is accepted but not used: jp-rerank batches in this process (thread-safe); "
                "for large corpora use `jp-rerank embed-corpus --ray`"
            )
        return options

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


def _prompt_option(name: str, side: Literal["query", "document"], key: str, value: object) -> dict[str, Any]:
    """The engine argument a ``prompt`` / ``prompt_name`` / ``convert_to_numpy`` entry of ``name`` sets."""
    if key == "convert_to_numpy":
        return {}
    if key == "prompt":
        if not isinstance(value, str):
            raise TypeError(f"{name}['prompt'] must be a string, got {type(value).__name__}")
        logger.info("%s['prompt'] = %r replaces the model's %s prompt", name, value, side)
        return {f"{side}_prefix": value}
    wanted = _SIDES.get(str(value))
    if wanted is None:
        raise ValueError(
            f"{name}['prompt_name'] = {value!r}: jp-rerank knows the prompts 'query' and 'document' (or 'passage'); "
            f"pass {name}={{'prompt': '...'}} to give the text itself"
        )
    if wanted != side:
        raise ValueError(
            f"{name}['prompt_name'] = {value!r} would give {side} texts the {wanted} prompt; "
            f"pass {name}={{'prompt': '...'}} if that is really wanted"
        )
    return {}  # the side's own prompt is what is applied anyway
