"""Sparse (SPLADE) embeddings and an in-memory inverted index over them.

:class:`SparseEmbedder` wraps a sentence-transformers ``SparseEncoder`` (such as hotchpotch/japanese-splade-v2).
Its output is a ``scipy.sparse.csr_matrix`` of float32 with one row per text and one column per vocabulary
entry; rows keep only the active (non-zero) dimensions, with sorted column indices. Relevance is the dot product.

:class:`SparseIndex` stores such rows with their ids, texts and metadata, scores a query against every passage with
one sparse matrix product (the inverted-index computation), returns the vector indexes' ``SearchHit`` and saves
the same atomic, checksummed snapshots as they do (``matrix.npz`` + ``docs.jsonl`` + ``manifest.json``, no pickle).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from jp_rerank._validate import check_positive_int, check_query, check_texts
from jp_rerank._version import __version__
from jp_rerank.errors import IndexCorruptedError, IndexMismatchError
from jp_rerank.index.base import Metadata, MetadataValue, SearchHit, check_ids, check_metadata, check_metadatas
from jp_rerank.loading import ModelHandle
from jp_rerank.presets import DEFAULT_SPARSE
from jp_rerank.text import normalize_text

if TYPE_CHECKING:
    import torch
    from scipy.sparse import csr_matrix
    from sentence_transformers import SparseEncoder

__all__ = ["SparseEmbedder", "SparseIndex"]

logger = logging.getLogger(__name__)

Side = Literal["query", "document"]

_BACKEND = "sparse"
_FORMAT_VERSION = 1
_MATRIX_FILE, _DOCS_FILE = "matrix.npz", "docs.jsonl"
_DENSE_CELLS = 1 << 23
"""Most text x vocabulary values encoded at once before conversion to CSR (32 MiB of float32)."""
_SCORE_CELLS = 1 << 22
"""Most query x passage scores held densely at once (16 MiB of float32)."""


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
        device: Device string; default picks CUDA when available.
        normalize: Apply :func:`jp_rerank.text.normalize_text` (NFKC, whitespace) to inputs.
        batch_size: Texts per forward pass.
        max_length: Token limit (default: the preset's, else the model's).
        max_active_dims: Keep at most this many non-zero dimensions per text (default: the model's setting).
        query_prefix: Override the query prompt (default: the model's saved ``"query"`` prompt, if any).
        document_prefix: Override the document prompt.
        local_files_only: Only use local files / the HF cache (default: on when ``HF_HUB_OFFLINE`` is set).
        cache_folder: Hugging Face cache override.
        revision: Hub revision.
        trust_remote_code: Allow custom code from the hub repository.

    Example:
        >>> emb = SparseEmbedder("splade-ja")  # doctest: +SKIP
        >>> docs = emb.embed_documents(["富士山は日本一高い山です。", "京都には寺が多い。"])  # doctest: +SKIP
        >>> (emb.embed_query("日本で一番高い山") @ docs.T).toarray()  # doctest: +SKIP
        array([[21.3..., 1.2...]], dtype=float32)
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_SPARSE,
        *,
        device: str | None = None,
        normalize: bool = True,
        batch_size: int = 32,
        max_length: int | None = None,
        max_active_dims: int | None = None,
        query_prefix: str | None = None,
        document_prefix: str | None = None,
        local_files_only: bool | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        trust_remote_code: bool | None = None,
    ) -> None:
        super().__init__(
            model,
            device=device,
            local_files_only=local_files_only,
            cache_folder=cache_folder,
            revision=revision,
            trust_remote_code=trust_remote_code,
        )
        check_positive_int(batch_size, name="batch_size")
        if max_length is not None:
            check_positive_int(max_length, name="max_length")
        if max_active_dims is not None:
            check_positive_int(max_active_dims, name="max_active_dims")
        for name, value in (("query_prefix", query_prefix), ("document_prefix", document_prefix)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")
        self.normalize = normalize
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
        if self.normalize:
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


class SparseIndex:
    """Exact top-k search over SPLADE vectors (sparse dot product), with ids, texts and metadata.

    Passages are stored as one CSR matrix; a query is scored against all of them with a sparse matrix product,
    which touches only the passages sharing an active dimension with it (what an inverted index computes).
    Passages sharing none score 0 and are **not returned**, so a search may give fewer than ``k`` hits.
    Hits are :class:`~jp_rerank.index.SearchHit` objects, as from the vector indexes, and follow their rules:
    equal scores are ordered by ascending id, metadata is a flat mapping of ``str`` keys to ``str``, ``int``,
    finite ``float`` or ``bool`` values (checked and copied on :meth:`add`, copied again into every hit).
    One instance is safe to share between threads.

    Args:
        embedder: Encodes texts on :meth:`add` and queries on :meth:`search`. Without one, pass vectors to
            :meth:`add` and CSR rows to :meth:`search`.

    Example:
        >>> index = SparseIndex(SparseEmbedder("splade-ja"))  # doctest: +SKIP
        >>> index.add(["富士山は日本一高い山です。", "京都には寺が多い。"], ids=["fuji", "kyoto"])  # doctest: +SKIP
        ['fuji', 'kyoto']
        >>> index.search("日本で一番高い山", k=1)[0].id  # doctest: +SKIP
        'fuji'
    """

    def __init__(self, embedder: SparseEmbedder | None = None) -> None:
        self.embedder = embedder
        self._lock = threading.RLock()
        self._matrix: csr_matrix | None = None
        self._ids: list[str] = []
        self._texts: list[str] = []
        self._metadatas: list[Metadata] = []
        self._positions: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"SparseIndex(size={len(self)}, embedder={self.embedder!r})"

    @property
    def ids(self) -> list[str]:
        """Passage ids in insertion order (a copy)."""
        return list(self._ids)

    @property
    def matrix(self) -> csr_matrix | None:
        """The passage vectors (``None`` before the first :meth:`add`); read it, do not modify it."""
        return self._matrix

    def _require_embedder(self, what: str) -> SparseEmbedder:
        if self.embedder is None:
            raise ValueError(f"this SparseIndex has no embedder: {what}")
        return self.embedder

    def add(
        self,
        texts: Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, MetadataValue] | None] | None = None,
        vectors: csr_matrix | None = None,
    ) -> list[str]:
        """Add passages; returns their ids.

        Args:
            texts: Passage texts.
            ids: One unique id per text (default: ``"0"``, ``"1"``... continuing from the current size).
            metadatas: One flat mapping per text (checked and copied; default: empty).
            vectors: Precomputed rows ``(len(texts), vocab_size)``; default encodes ``texts`` with the embedder.

        Raises:
            ValueError: Lengths differ, an id is empty, repeats or already exists, the vocabulary size differs,
                or there is neither an embedder nor ``vectors``. Nothing is added when an error is raised.
            TypeError: A non-string text or id, or metadata that is not a flat mapping of supported values.
        """
        items = check_texts(texts, name="texts")
        with self._lock:
            new_ids = self._check_ids(ids, len(items))
            metas = check_metadatas(metadatas, len(items))
            if vectors is None:
                rows = self._require_embedder("pass vectors= or build it with an embedder").embed_documents(items)
            else:
                rows = _check_rows(vectors, len(items), "vectors")
            if self._matrix is not None and rows.shape[1] != self._matrix.shape[1]:
                raise ValueError(
                    f"vectors have {rows.shape[1]} columns but the index holds {self._matrix.shape[1]}-column vectors"
                )
            if not items:
                return []
            sp = _scipy_sparse()
            self._matrix = rows if self._matrix is None else sp.vstack([self._matrix, rows], format="csr")
            start = len(self._ids)
            self._ids.extend(new_ids)
            self._texts.extend(items)
            self._metadatas.extend(metas)
            self._positions.update({doc_id: start + i for i, doc_id in enumerate(new_ids)})
            return list(new_ids)

    def _check_ids(self, ids: Sequence[str] | None, n: int) -> list[str]:
        if ids is None:
            start = len(self._ids)
            new_ids = [str(start + i) for i in range(n)]
        else:
            new_ids = check_ids(ids)
            if len(new_ids) != n:
                raise ValueError(f"got {n} texts but {len(new_ids)} ids")
        stored = [doc_id for doc_id in new_ids if doc_id in self._positions]
        if stored:
            raise ValueError(f"{len(stored)} id(s) are already in the index (e.g. {stored[0]!r})")
        return new_ids

    def _query_rows(self, queries: Sequence[str] | csr_matrix) -> csr_matrix:
        if _is_sparse(queries):
            return _check_rows(queries, None, "queries")
        return self._require_embedder("pass query vectors instead of text").embed_queries(queries)

    def search(self, query: str | csr_matrix, k: int = 10) -> list[SearchHit]:
        """Return the ``k`` best passages for one query (text, or a ``(1, vocab_size)`` row).

        Returns:
            Hits sorted by descending score (ties: ascending id); passages scoring 0 are left out.

        Raises:
            ValueError: Empty query or ``k <= 0``.
        """
        if isinstance(query, str):
            check_query(query)
            return self.search_many([query], k)[0]
        return self.search_many(query, k)[0]

    def search_many(self, queries: Sequence[str] | csr_matrix, k: int = 10) -> list[list[SearchHit]]:
        """Search several queries at once (one batched encode and one matrix product); one hit list per query."""
        check_positive_int(k, name="k")
        rows = self._query_rows(queries)
        with self._lock:
            matrix, n = self._matrix, len(self._ids)
            if matrix is None or n == 0:
                return [[] for _ in range(rows.shape[0])]
            if rows.shape[1] != matrix.shape[1]:
                raise ValueError(
                    f"query vectors have {rows.shape[1]} columns but the index holds {matrix.shape[1]}-column vectors"
                )
            out: list[list[SearchHit]] = []
            block = max(1, _SCORE_CELLS // n)  # queries per dense (queries x passages) score block
            for start in range(0, rows.shape[0], block):
                scores = np.asarray((rows[start : start + block] @ matrix.T).toarray(), dtype=np.float32)
                out.extend(self._top_k(row, k) for row in scores)
            return out

    def _top_k(self, scores: np.ndarray, k: int) -> list[SearchHit]:
        candidates = np.flatnonzero(scores > 0)
        if candidates.size > k:
            # keep every passage tied with the k-th score, so the id tie-break below is exact
            kth = np.partition(scores[candidates], candidates.size - k)[candidates.size - k]
            candidates = candidates[scores[candidates] >= kth]
        best = sorted(candidates.tolist(), key=lambda i: (-float(scores[i]), self._ids[i]))[:k]
        return [
            SearchHit(
                id=self._ids[i],
                score=float(scores[i]),
                text=self._texts[i],
                metadata=dict(self._metadatas[i]),
            )
            for i in best
        ]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save a snapshot (``matrix.npz`` + ``docs.jsonl`` + ``manifest.json``) into the directory ``path``.

        The same atomic, checksummed snapshot layout as the vector indexes (see :mod:`jp_rerank.index.persist`):
        an interrupted save leaves the previous snapshot in place. No pickle.

        Returns:
            The snapshot folder that was written.

        Raises:
            ValueError: If ``path`` holds files that are not a jp-rerank index.
        """
        from jp_rerank.index.persist import write_snapshot

        with self._lock:
            matrix = self._matrix
            if matrix is None:
                matrix = _empty_rows(self.embedder.vocab_size if self.embedder else 0)
            manifest = {
                "backend": _BACKEND,
                "embedder_id": self.embedder.model_id if self.embedder else None,
                "vocab_size": int(matrix.shape[1]),
                "count": len(self._ids),
                "params": {"sparse_format_version": _FORMAT_VERSION},
            }
            docs = list(zip(self._ids, self._texts, self._metadatas, strict=True))

            def write_payload(folder: Path) -> None:
                with (folder / _MATRIX_FILE).open("wb") as fh:
                    _scipy_sparse().save_npz(fh, matrix.tocsr(), compressed=True)
                with (folder / _DOCS_FILE).open("w", encoding="utf-8", newline="\n") as fh:
                    for doc_id, text, meta in docs:
                        row = {"id": doc_id, "text": text, "metadata": meta}
                        fh.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")

            return write_snapshot(Path(path), manifest, write_payload)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], embedder: SparseEmbedder | None = None, *, verify: bool = True
    ) -> SparseIndex:
        """Load an index saved with :meth:`save`.

        Args:
            path: The directory given to :meth:`save`.
            embedder: Encoder for new texts and queries. A different model id than the saved one logs a warning.
            verify: Check every file's SHA-256 before reading it.

        Raises:
            FileNotFoundError: ``path`` is not a saved index.
            IndexMismatchError: The directory holds another kind of index, or ``embedder``'s vocabulary size
                differs from the saved vectors.
            IndexCorruptedError: A file is missing, truncated, altered or inconsistent.
        """
        from jp_rerank.index.persist import read_snapshot

        snapshot, manifest = read_snapshot(Path(path), verify=verify)
        if manifest.get("backend") != _BACKEND:
            raise IndexMismatchError(f"{path} holds a {manifest.get('backend')!r} index, not a sparse index")
        version = (manifest.get("params") or {}).get("sparse_format_version")
        if version != _FORMAT_VERSION:
            raise IndexMismatchError(
                f"{path} has sparse index format version {version!r}; this jp-rerank reads {_FORMAT_VERSION}"
            )
        matrix = _scipy_sparse().load_npz(snapshot / _MATRIX_FILE).tocsr().astype(np.float32)
        ids: list[str] = []
        texts: list[str] = []
        metas: list[Metadata] = []
        with (snapshot / _DOCS_FILE).open(encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, 1):
                try:
                    row = json.loads(line)
                    ids.append(str(row["id"]))
                    texts.append(str(row["text"]))
                    metas.append(check_metadata(row["metadata"], name=f"metadata of line {line_no}"))
                except (ValueError, KeyError, TypeError) as exc:
                    raise IndexCorruptedError(f"{_DOCS_FILE} line {line_no} is not a valid record: {exc}") from exc
        if matrix.shape[0] != len(ids) or manifest.get("count") != len(ids) or len(set(ids)) != len(ids):
            raise IndexCorruptedError(
                f"{path}: matrix has {matrix.shape[0]} rows, {_DOCS_FILE} {len(ids)} records "
                f"({len(set(ids))} distinct ids), manifest count {manifest.get('count')!r}"
            )
        if manifest.get("jp_rerank_version") != __version__:
            logger.warning(
                "sparse index %s was saved by jp-rerank %s, loading with %s",
                path,
                manifest.get("jp_rerank_version"),
                __version__,
            )
        if embedder is not None:
            saved = manifest.get("embedder_id")
            if saved is not None and saved != embedder.model_id:
                logger.warning("sparse index %s was built with %s, loading with %s", path, saved, embedder.model_id)
            if embedder.vocab_size != matrix.shape[1]:
                raise IndexMismatchError(
                    f"embedder {embedder.model_id!r} has vocabulary size {embedder.vocab_size} but the index at "
                    f"{path} holds {matrix.shape[1]}-column vectors"
                )
        index = cls(embedder)
        index._ids, index._texts, index._metadatas = ids, texts, metas
        index._positions = {doc_id: i for i, doc_id in enumerate(ids)}
        index._matrix = matrix if ids else None
        return index


def _is_sparse(value: object) -> bool:
    return bool(getattr(value, "format", None) and hasattr(value, "tocsr"))


def _check_rows(rows: Any, n: int | None, name: str) -> csr_matrix:
    if not _is_sparse(rows) or len(rows.shape) != 2:
        raise TypeError(f"{name} must be a 2-D scipy.sparse matrix, got {type(rows).__name__}")
    if n is not None and rows.shape[0] != n:
        raise ValueError(f"{name} has {rows.shape[0]} rows but {n} texts were given")
    matrix = _scipy_sparse().csr_matrix(rows, dtype=np.float32)
    if matrix.nnz and not np.isfinite(matrix.data).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return matrix
