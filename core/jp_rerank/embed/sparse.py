"""Sparse (SPLADE) embeddings: :class:`SparseEmbedder` over a sentence-transformers ``SparseEncoder``.

Its output is a ``scipy.sparse.csr_matrix`` of float32 with one row per text and one column per vocabulary
entry (such as hotchpotch/japanese-splade-v2); rows keep only the active (non-zero) dimensions, with sorted
column indices. Relevance is the dot product. :class:`jp_rerank.index.SparseIndex` stores and searches such rows.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from jp_rerank.checks import check_positive_int, check_query, check_texts
from jp_rerank.engines import ModelHandle
from jp_rerank.presets import DEFAULT_SPARSE
from jp_rerank.text import normalize_text
from jp_rerank.types import Side

if TYPE_CHECKING:
    import torch
    from scipy.sparse import csr_matrix
    from sentence_transformers import SparseEncoder

__all__ = ["SparseEmbedder"]

logger = logging.getLogger(__name__)

_DENSE_CELLS = 1 << 23
"""Most text x vocabulary values encoded at once before conversion to CSR (32 MiB of float32)."""


def _scipy_sparse() -> Any:
    import scipy.sparse

    return scipy.sparse


def _empty_rows(n_cols: int) -> csr_matrix:
    return _scipy_sparse().csr_matrix((0, n_cols), dtype=np.float32)


def _to_csr(tensor: torch.Tensor) -> csr_matrix:
    """Convert a dense 2-D torch tensor to a float32 CSR matrix without explicit zeros, indices sorted."""
    matrix = _scipy_sparse().csr_matrix(tensor.detach().cpu().float().numpy(), dtype=np.float32)
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return matrix


class SparseEmbedder(ModelHandle):
    """A SPLADE-style sparse encoder for Japanese text (sentence-transformers ``SparseEncoder``).

    Queries go through ``encode_query`` and passages through ``encode_document``, so a model's saved ``"query"``
    / ``"document"`` prompts and query/document routing (inference-free SPLADE) are always applied.

    Output format: ``scipy.sparse.csr_matrix`` of float32, shape ``(n_texts, vocab_size)``, explicit zeros
    removed and column indices sorted; similarity is the dot product (``queries @ documents.T``).

    Args:
        model: Alias (``"splade-ja"``), hub id or local directory of a sentence-transformers ``SparseEncoder``.
        preset: The preset (alias or hub id) a local folder is a copy of, for its prompts, limits and
            activation (default: recognised from the folder's files or name).
        device: Device string; default picks CUDA when available.
        normalize_text: Apply :func:`jp_rerank.text.normalize_text` (NFKC, whitespace) to inputs.
        batch_size: Texts per forward pass.
        max_length: Token limit (default: the preset's, else the model's).
        max_active_dims: Keep at most this many non-zero dimensions per text (default: the model's setting).
        query_prefix: Override the query prompt (default: the model's saved ``"query"`` prompt, if any).
        document_prefix: Override the document prompt.
        local_files_only: Only use local files / the HF cache (default: on when ``HF_HUB_OFFLINE`` is set).
        cache_folder: Hugging Face cache override.
        revision: Hub revision.
        trust_remote_code: Allow custom code from the hub repository.
        num_threads: torch CPU threads, set for the whole process when the model loads (``None``: torch's
            choice; see :func:`jp_rerank.runtime.set_torch_threads`).

    Example:
        >>> emb = SparseEmbedder("splade-ja")
        >>> docs = emb.embed_documents(["富士山は日本一高い山です。", "京都には寺が多い。"])
        >>> scores = (emb.embed_query("日本で一番高い山") @ docs.T).toarray()
        >>> scores.shape, scores.dtype
        ((1, 2), dtype('float32'))
        >>> scores  # the real splade-ja model  # doctest: +SKIP
        array([[21.3..., 1.2...]], dtype=float32)
    """

    role = "sparse"
    _loaded_attrs = ("_model",)

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_SPARSE,
        *,
        preset: str | None = None,
        device: str | None = None,
        normalize_text: bool = True,
        batch_size: int = 32,
        max_length: int | None = None,
        max_active_dims: int | None = None,
        query_prefix: str | None = None,
        document_prefix: str | None = None,
        local_files_only: bool | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        trust_remote_code: bool | None = None,
        num_threads: int | None = None,
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
        check_positive_int(batch_size, name="batch_size")
        if max_length is not None:
            check_positive_int(max_length, name="max_length")
        if max_active_dims is not None:
            check_positive_int(max_active_dims, name="max_active_dims")
        for name, value in (("query_prefix", query_prefix), ("document_prefix", document_prefix)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")
        self.normalize_text = normalize_text
        self.batch_size = batch_size
        self.max_active_dims = max_active_dims
        self._max_length = max_length
        self._prefix_override: dict[Side, str | None] = {"query": query_prefix, "document": document_prefix}
        self._model: SparseEncoder | None = None

    def __repr__(self) -> str:
        return f"SparseEmbedder(model={self.source.name!r})"

    @property
    def model(self) -> SparseEncoder:
        """The loaded sentence-transformers ``SparseEncoder``."""
        return self._load()

    @property
    def vocab_size(self) -> int:
        """Number of columns of the output (the model's vocabulary size)."""
        model = self._load()
        dim = model.get_embedding_dimension()
        if dim is None:  # pragma: no cover - SPLADE pooling always knows its dimension
            raise ValueError(f"sparse model {self.model_id!r} does not report its output dimension")
        return int(dim)

    def _load(self) -> SparseEncoder:
        model = self._model
        if model is not None:
            return model
        with self._lock:
            if self._model is None:
                from sentence_transformers import SparseEncoder

                model = self._load_st(SparseEncoder)
                limit = self._max_length or (self.preset.max_length if self.preset else None)
                if limit is not None and getattr(model, "max_seq_length", None) is not None:
                    model.max_seq_length = min(limit, model.max_seq_length) if self._max_length is None else limit
                self._model = model
            return self._model

    def prefix(self, side: Side) -> str:
        """The prompt put before inputs of ``side`` (the override, else the model's saved prompt, else ``""``)."""
        override = self._prefix_override[side]
        if override is not None:
            return override
        prompts = getattr(self._load(), "prompts", None) or {}
        return str(prompts.get(side) or "")

    def _encode(self, texts: list[str], side: Side) -> csr_matrix:
        model = self._load()
        n_cols = self.vocab_size
        if not texts:
            return _empty_rows(n_cols)
        if self.normalize_text:
            texts = [normalize_text(t) for t in texts]
        encode = model.encode_query if side == "query" else model.encode_document
        # Longest first over the whole call, so sentence-transformers' per-call length sorting spans every chunk.
        # Each chunk comes back dense (chunk x vocab, freed right after conversion): iterating sparse COO tensors
        # inside sentence-transformers costs more than the forward pass on CPU.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        chunk = max(1, _DENSE_CELLS // n_cols)
        parts = []
        with self._lock:
            for start in range(0, len(order), chunk):
                out = encode(
                    [texts[i] for i in order[start : start + chunk]],
                    prompt=self._prefix_override[side],
                    batch_size=self.batch_size,
                    show_progress_bar=False,
                    convert_to_tensor=True,
                    convert_to_sparse_tensor=False,
                    save_to_cpu=True,
                    max_active_dims=self.max_active_dims,
                )
                parts.append(_to_csr(out))
        sp = _scipy_sparse()
        stacked = parts[0] if len(parts) == 1 else sp.vstack(parts, format="csr")
        inverse = np.empty(len(order), dtype=np.int64)
        inverse[np.asarray(order, dtype=np.int64)] = np.arange(len(order), dtype=np.int64)
        rows = stacked[inverse]
        rows.sort_indices()
        return sp.csr_matrix(rows, dtype=np.float32)

    def embed_documents(self, texts: Sequence[str]) -> csr_matrix:
        """Encode passages with the document prompt / route.

        Returns:
            float32 CSR matrix ``(len(texts), vocab_size)``; ``(0, vocab_size)`` for an empty list.

        Raises:
            TypeError: A non-string item (the message names its position).
        """
        return self._encode(check_texts(texts, name="texts"), "document")

    def embed_queries(self, queries: Sequence[str]) -> csr_matrix:
        """Encode questions with the query prompt / route; float32 CSR ``(len(queries), vocab_size)``.

        Raises:
            ValueError: An empty or whitespace-only query.
        """
        items = check_texts(queries, name="queries")
        for i, q in enumerate(items):
            check_query(q, name=f"queries[{i}]")
        return self._encode(items, "query")

    def embed_query(self, query: str) -> csr_matrix:
        """Encode one question; float32 CSR ``(1, vocab_size)``."""
        return self._encode([check_query(query)], "query")

    def decode(self, row: csr_matrix, *, top_k: int | None = 10) -> list[tuple[str, float]]:
        """Name the heaviest vocabulary entries of one encoded text (to see what a SPLADE vector matches on).

        Args:
            row: A ``(1, vocab_size)`` row returned by this embedder.
            top_k: Keep this many entries (``None``: all active ones).

        Returns:
            ``(token, weight)`` pairs by descending weight (ties: lower token id first).
        """
        if top_k is not None:
            check_positive_int(top_k, name="top_k")
        if row.shape[0] != 1:
            raise ValueError(f"decode expects a single row of shape (1, vocab_size), got {row.shape}")
        coo = row.tocoo()
        order = np.lexsort((coo.col, -coo.data))[:top_k]
        tokens = self._load().tokenizer.convert_ids_to_tokens([int(coo.col[i]) for i in order])
        return [(str(tok), float(coo.data[i])) for tok, i in zip(tokens, order, strict=True)]
