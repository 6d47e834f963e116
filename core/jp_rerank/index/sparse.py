"""An in-memory inverted index over sparse (SPLADE) vectors: exact top-k by sparse dot product.

:class:`SparseIndex` stores CSR rows (from :class:`jp_rerank.SparseEmbedder` or your own) with their ids, texts
and metadata, scores a query against every passage with one sparse matrix product (the inverted-index
computation), returns :class:`~jp_rerank.hits.SearchHit` objects and saves the same atomic, checksummed snapshots as
the vector indexes (``matrix.npz`` + ``docs.jsonl`` + ``manifest.json``, no pickle).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from jp_rerank._version import __version__
from jp_rerank.checks import check_ids, check_metadata, check_metadatas, check_positive_int, check_query, check_texts
from jp_rerank.defaults import DEFAULT_K
from jp_rerank.errors import IndexCorruptedError, IndexMismatchError
from jp_rerank.hits import SearchHit, rank
from jp_rerank.snapshots import read_snapshot, write_snapshot
from jp_rerank.types import Metadata, MetadataValue

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

__all__ = ["SparseEncoderLike", "SparseIndex"]

logger = logging.getLogger(__name__)

_BACKEND = "sparse"
_FORMAT_VERSION = 1
_MATRIX_FILE, _DOCS_FILE = "matrix.npz", "docs.jsonl"
_SCORE_CELLS = 1 << 22
"""Most query x passage scores held densely at once (16 MiB of float32)."""


class SparseEncoderLike(Protocol):
    """What :class:`SparseIndex` needs of an encoder (:class:`jp_rerank.SparseEmbedder` is one)."""

    @property
    def model_id(self) -> str:
        """Identifier recorded in the manifest."""
        ...

    @property
    def vocab_size(self) -> int:
        """Number of columns of the rows it makes."""
        ...

    def embed_documents(self, texts: Sequence[str]) -> csr_matrix:
        """Encode passages."""
        ...

    def embed_queries(self, queries: Sequence[str]) -> csr_matrix:
        """Encode questions."""
        ...


def _scipy_sparse() -> Any:
    import scipy.sparse

    return scipy.sparse


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
        name: Name of this first stage (the key of its scores in fused results).

    Example:
        >>> from jp_rerank import SparseEmbedder
        >>> index = SparseIndex(SparseEmbedder("splade-ja"))
        >>> index.add(["富士山は日本一高い山です。", "京都には寺が多い。"], ids=["fuji", "kyoto"])
        ['fuji', 'kyoto']
        >>> index.search("日本で一番高い山", k=1)[0].id  # the real splade-ja model  # doctest: +SKIP
        'fuji'
    """

    def __init__(self, embedder: SparseEncoderLike | None = None, *, name: str = "sparse") -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        self.embedder = embedder
        self._name = name
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
    def name(self) -> str:
        """Name of this first stage."""
        return self._name

    @property
    def ids(self) -> list[str]:
        """Passage ids in insertion order (a copy)."""
        return list(self._ids)

    @property
    def matrix(self) -> csr_matrix | None:
        """The passage vectors (``None`` before the first :meth:`add`); read it, do not modify it."""
        return self._matrix

    def _require_embedder(self, what: str) -> SparseEncoderLike:
        if self.embedder is None:
            raise ValueError(f"this SparseIndex has no embedder: {what}")
        return self.embedder

    def add(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, MetadataValue] | None] | None = None,
        *,
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

    def search(self, query: str | csr_matrix, k: int = DEFAULT_K) -> list[SearchHit]:
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

    def search_many(self, queries: Sequence[str] | csr_matrix, k: int = DEFAULT_K) -> list[list[SearchHit]]:
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
        best = rank(scores, k, ids=self._ids, min_score=0.0, strict=True)  # passages sharing nothing score 0
        return [SearchHit(self._ids[i], float(scores[i]), self._texts[i], dict(self._metadatas[i])) for i in best]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save a snapshot (``matrix.npz`` + ``docs.jsonl`` + ``manifest.json``) into the directory ``path``.

        The same atomic, checksummed snapshot layout as the vector indexes (see :mod:`jp_rerank.snapshots`):
        an interrupted save leaves the previous snapshot in place. No pickle.

        Returns:
            The snapshot folder that was written.

        Raises:
            ValueError: If ``path`` holds files that are not a jp-rerank index.
        """
        with self._lock:
            matrix = self._matrix
            if matrix is None:
                n_cols = self.embedder.vocab_size if self.embedder else 0
                matrix = _scipy_sparse().csr_matrix((0, n_cols), dtype=np.float32)
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
        cls, path: str | os.PathLike[str], embedder: SparseEncoderLike | None = None, *, verify: bool = True
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
