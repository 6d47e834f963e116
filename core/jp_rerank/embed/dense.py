"""Dense embedders: sentence-transformers transformer models and StaticEmbedding models."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from jp_rerank.checks import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_DOCUMENTS,
    check_optional_positive_int,
    check_positive_int,
    check_query,
    check_texts,
)
from jp_rerank.engines import ModelHandle
from jp_rerank.http_client import is_url
from jp_rerank.presets import DEFAULT_EMBEDDER, prefix_family
from jp_rerank.runtime import TorchPrecision, autocast, low_precision_for
from jp_rerank.text import normalize_text
from jp_rerank.types import Side

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["Embedder"]

logger = logging.getLogger(__name__)

EmbedPrecision = Literal["auto", "fp32", "bf16", "fp16"]

TRANSFORMER_BATCH_SIZE = 16
"""Default texts per forward pass of a transformer embedder (measured fastest on CPU with bf16 and fp32)."""

STATIC_BATCH_SIZE = 1024
"""Default texts per batch of a StaticEmbedding model (no transformer: large batches amortise per-batch costs)."""

_warned_no_prefix: set[str] = set()
_warned_lock = threading.Lock()


def _warn_missing_prefix_once(model_id: str, family: tuple[str, str]) -> None:
    """Warn that a model of a prefix-trained family got no prefix, once per model and process."""
    with _warned_lock:
        if model_id in _warned_no_prefix:
            return
        _warned_no_prefix.add(model_id)
    logger.warning(
        "%s looks like a %s model, which needs query/passage prefixes, but none were found: pass preset=... "
        "(e.g. %r) or query_prefix=/document_prefix=",
        model_id,
        family[0],
        family[1],
    )


class Embedder(ModelHandle):
    """A Japanese text embedder that always applies the model's query/document prompts.

    A server URL instead of a model (``Embedder("http://127.0.0.1:8080", api_key=...)``) gives a
    :class:`~jp_rerank.embed.remote.RemoteEmbedder` that embeds on a ``jp-rerank serve`` server (one loaded model
    for many processes, no torch in them).

    Prompts come, in order of precedence, from the ``query_prefix`` / ``document_prefix`` arguments, the prompts
    saved with the model (``"query"`` / ``"document"``, used by sentence-transformers' ``encode_query`` /
    ``encode_document``; an empty saved prompt counts as missing), or the preset (``"query: "`` / ``"passage: "``
    for multilingual-e5, ``検索クエリ: `` / ``検索文書: `` for Ruri v3). A local folder gets its preset from
    ``preset=`` or from its files or name (:func:`jp_rerank.presets.recognize_preset`). Feeding a retrieval model
    without its prefix silently loses quality, so a model whose name shows a prefix-trained family (E5, Ruri)
    that ends up with no prefix logs one warning per model and process.

    ``copy.deepcopy`` shares the loaded model; a pickled embedder loads it again on first use (see
    :class:`jp_rerank.engines.ModelHandle`).

    Args:
        model: Alias, hub id or local directory of a sentence-transformers model (transformer or StaticEmbedding).
        preset: The preset (alias or hub id) a local folder is a copy of, for its prompts, limits and
            activation (default: recognised from the folder's files or name).
        device: Device string; default picks CUDA when available.
        truncate_dim: Keep the first ``truncate_dim`` dimensions (Matryoshka models), then re-normalise.
        normalize_embeddings: L2-normalise outputs (default ``True``: dot product = cosine).
        normalize_text: Apply :func:`jp_rerank.text.normalize_text` (NFKC, whitespace) to inputs.
        batch_size: Texts per forward pass (default 16 for transformers, 1024 for StaticEmbedding models).
        max_length: Token limit (default: the preset's, else the model's).
        precision: ``"auto"`` (bf16 autocast on CPUs with native bf16 and on CUDA, fp32 otherwise and for
            StaticEmbedding models), ``"fp32"`` (exact), ``"bf16"`` or ``"fp16"`` autocast. See
            :func:`jp_rerank.runtime.low_precision_for`.
        query_prefix: Override the query prompt.
        document_prefix: Override the document prompt.
        local_files_only: Only use local files / the HF cache (default: on when ``HF_HUB_OFFLINE`` is set).
        cache_folder: Hugging Face cache override.
        revision: Hub revision.
        trust_remote_code: Allow custom code from the hub repository.
        num_threads: torch CPU threads, set for the whole process when the model loads (``None``: torch's
            choice; see :func:`jp_rerank.runtime.set_torch_threads`).
        show_progress_bar: Show sentence-transformers' progress bar while encoding (default off).
        max_documents: Most texts one call accepts (default 100,000; ``None``: no cap). Checked before any model
            work; over the cap raises ``ValueError``.
        max_chars: Most characters of one text (default 1,000,000; ``None``: no cap). Checked before any model
            work; over the cap raises ``ValueError`` (chunk long texts first).

    Example:
        >>> emb = Embedder("static-ja", truncate_dim=256)
        >>> emb.embed_documents(["富士山は日本一高い山です。"]).shape
        (1, 256)
        >>> Embedder("me5-small").prefix("query")  # the preset's prefix, even though the model saved none
        'query: '
    """

    role = "embedder"
    _loaded_attrs = ("_model",)

    def __new__(cls, model: str | os.PathLike[str] = DEFAULT_EMBEDDER, *args: Any, **kwargs: Any) -> Embedder:
        """A server URL instead of a model gives a :class:`~jp_rerank.embed.remote.RemoteEmbedder` (see there)."""
        if is_url(model):
            from jp_rerank.embed.remote import RemoteEmbedder

            return RemoteEmbedder(str(model), *args, **kwargs)  # type: ignore[return-value]
        return super().__new__(cls)

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_EMBEDDER,
        *,
        preset: str | None = None,
        device: str | None = None,
        truncate_dim: int | None = None,
        normalize_embeddings: bool = True,
        normalize_text: bool = True,
        batch_size: int | None = None,
        max_length: int | None = None,
        precision: EmbedPrecision = "auto",
        query_prefix: str | None = None,
        document_prefix: str | None = None,
        local_files_only: bool | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        trust_remote_code: bool | None = None,
        num_threads: int | None = None,
        show_progress_bar: bool = False,
        max_documents: int | None = DEFAULT_MAX_DOCUMENTS,
        max_chars: int | None = DEFAULT_MAX_CHARS,
    ) -> None:
        super().__init__(
            model,
            preset=preset,
            device=device,
            local_files_only=local_files_only,
            cache_folder=cache_folder,
            revision=revision,
            trust_remote_code=trust_remote_code,
            num_threads=num_threads,
        )
        self.max_documents = check_optional_positive_int(max_documents, name="max_documents")
        self.max_chars = check_optional_positive_int(max_chars, name="max_chars")
        if truncate_dim is not None:
            check_positive_int(truncate_dim, name="truncate_dim")
        if batch_size is not None:
            check_positive_int(batch_size, name="batch_size")
        if precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
        if max_length is not None:
            check_positive_int(max_length, name="max_length")
        for name, value in (("query_prefix", query_prefix), ("document_prefix", document_prefix)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")
        self.truncate_dim = truncate_dim
        self.normalize_embeddings = normalize_embeddings
        self.show_progress_bar = bool(show_progress_bar)
        self.normalize_text = normalize_text
        self.batch_size = batch_size
        self.precision: EmbedPrecision = precision
        self._resolved: tuple[int, TorchPrecision] = (TRANSFORMER_BATCH_SIZE, "fp32")
        self._max_length = max_length
        self._prefix_override: dict[Side, str | None] = {"query": query_prefix, "document": document_prefix}
        self._model: SentenceTransformer | None = None
        self._prefixes: dict[Side, str] = {}

    def __repr__(self) -> str:
        return f"Embedder(model={self.source.name!r}, truncate_dim={self.truncate_dim!r})"

    @property
    def model(self) -> SentenceTransformer:
        """The loaded sentence-transformers model."""
        return self._load()

    @property
    def dim(self) -> int:
        """Output dimension (after ``truncate_dim``)."""
        return self.truncate_dim or self._full_dim(self._load())

    def _full_dim(self, model: SentenceTransformer) -> int:
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        full = get()
        if full is None:
            with self._lock:
                full = int(np.asarray(model.encode(["次元"], convert_to_numpy=True)).shape[1])
        return int(full)

    @property
    def precision_in_use(self) -> TorchPrecision:
        """The precision the model runs at once loaded (``"fp32"`` for StaticEmbedding models)."""
        self._load()
        return self._resolved[1]

    def prefix(self, side: Side) -> str:
        """The text put before inputs of ``side`` (``"query"`` or ``"document"``).

        Raises:
            ValueError: Another side (passages are the ``"document"`` side).
        """
        if side not in ("query", "document"):
            raise ValueError(f"side must be 'query' or 'document' (passages are the document side), got {side!r}")
        self._load()
        return self._prefixes[side]

    def _load(self) -> SentenceTransformer:
        model = self._model
        if model is not None:
            return model
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                model = self._load_st(SentenceTransformer)
                self._check_truncate_dim(model)
                own_limit = getattr(model, "max_seq_length", None)
                if self._max_length is not None:
                    model.max_seq_length = self._max_length
                elif self.preset is not None and self.preset.max_length is not None and own_limit is not None:
                    model.max_seq_length = min(self.preset.max_length, int(own_limit))
                self._prefixes = self._choose_prefixes(getattr(model, "prompts", None) or {})
                self._resolved = self._resolve_speed(model)
                self._model = model
            return self._model

    def _choose_prefixes(self, saved: dict[str, str]) -> dict[Side, str]:
        """Prompts by side: the argument, else the model's saved prompt, else the preset's prefix.

        An empty saved prompt counts as missing: sentence-transformers fills unsaved ``query``/``document``
        prompts with ``""``, and hub uploads that predate saved prompts (multilingual-e5) would otherwise lose
        their ``query: `` / ``passage: `` prefixes silently.
        """
        chosen: dict[Side, str] = {}
        for side in ("query", "document"):
            override = self._prefix_override[side]
            preset_prefix = ""
            if self.preset is not None:
                preset_prefix = self.preset.query_prefix if side == "query" else self.preset.document_prefix
            chosen[side] = override if override is not None else (saved.get(side) or preset_prefix)
        family = prefix_family(self.model_id) if not any(chosen.values()) else None
        if family is not None and all(v is None for v in self._prefix_override.values()):
            _warn_missing_prefix_once(self.model_id, family)
        return chosen

    def _resolve_speed(self, model: SentenceTransformer) -> tuple[int, TorchPrecision]:
        """Batch size and precision: StaticEmbedding models run fp32 in large batches."""
        first = model[0] if len(model) else None
        auto_model = getattr(first, "auto_model", None)
        if auto_model is None:  # StaticEmbedding and other modules without a transformer
            return self.batch_size or STATIC_BATCH_SIZE, "fp32"
        if self.precision == "auto":
            precision, reason = low_precision_for(str(model.device))
        else:
            precision, reason = self.precision, "as requested"
        logger.info("%s embeds with %s (%s)", self.model_id, precision, reason)
        return self.batch_size or TRANSFORMER_BATCH_SIZE, precision

    def _check_truncate_dim(self, model: SentenceTransformer) -> None:
        if self.truncate_dim is None:
            return
        full = self._full_dim(model)
        if self.truncate_dim > full:
            raise ValueError(f"truncate_dim={self.truncate_dim} exceeds the model's dimension {full}")
        trained = self.preset.matryoshka_dims if self.preset else ()
        if trained and self.truncate_dim not in trained:
            logger.warning(
                "truncate_dim=%d is not one of the dimensions %s was trained for %s",
                self.truncate_dim,
                self.model_id,
                trained,
            )

    @property
    def _caps(self) -> dict[str, Any]:
        """The caps of :func:`jp_rerank.checks.check_texts`, held after normalisation too (NFKC can make 1 char 18)."""
        return {
            "max_documents": self.max_documents,
            "max_chars": self.max_chars,
            "nfkc": self.normalize_text,
            "owner": "Embedder",
        }

    def _encode(self, texts: list[str], side: Side) -> np.ndarray:
        model = self._load()
        if self.normalize_text:
            texts = [normalize_text(t) for t in texts]
        prompt = self._prefixes[side]
        batch_size, precision = self._resolved
        with self._lock, autocast(model.device.type, precision):
            out = model.encode(
                texts,
                prompt=prompt or None,
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=False,
                show_progress_bar=self.show_progress_bar,
            )
        vectors = np.asarray(out, dtype=np.float32)
        bad = int((~np.isfinite(vectors).all(axis=1)).sum()) if vectors.size else 0
        if bad:
            logger.warning("the model returned NaN or infinite values for %d of %d texts", bad, len(texts))
        if self.truncate_dim is not None:
            vectors = vectors[:, : self.truncate_dim]
        if self.normalize_embeddings:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed passages with the document prompt.

        Returns:
            float32 array ``(len(texts), dim)``; ``(0, dim)`` for an empty list.

        Raises:
            TypeError: A non-string item (the message names its position).
        """
        items = check_texts(texts, name="texts", **self._caps)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._encode(items, "document")

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Embed questions with the query prompt; returns float32 ``(len(queries), dim)``.

        Raises:
            ValueError: An empty or whitespace-only query.
        """
        items = check_texts(queries, name="queries", **self._caps)
        for i, q in enumerate(items):
            check_query(q, name=f"queries[{i}]")
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._encode(items, "query")

    def embed_query(self, query: str) -> np.ndarray:
        """Embed one question; returns a float32 vector ``(dim,)``."""
        checked = check_query(query, max_chars=self.max_chars, nfkc=self.normalize_text, owner="Embedder")
        return self._encode([checked], "query")[0]
