"""The vector-index interface every backend implements, and the records and hits it exchanges.

A :class:`VectorIndex` maps string ids to vectors and keeps each passage's text and metadata beside its vector.
Backends (:class:`~jp_rerank.index.exact.ExactIndex`, :class:`~jp_rerank.index.faiss_index.FaissIndex`,
:class:`~jp_rerank.index.chroma_index.ChromaIndex`) only implement the protected ``_`` hooks; the public methods
here check every input once, so all backends accept and reject the same things.

Conventions, the same for every backend and checked by the tests:

* ``metric="cosine"`` normalises stored and query vectors to unit length (copies: caller arrays are never
  modified); ``metric="ip"`` scores by the raw inner product. Scores are plain Python floats, higher is better.
* Results are sorted by descending score; equal scores are ordered by ascending id.
* :meth:`VectorIndex.add` refuses ids that are already stored; :meth:`VectorIndex.upsert` replaces them. An id
  repeated inside one call is an error for both.
* :meth:`VectorIndex.delete` ignores ids that are not stored and returns how many records it removed.
* Metadata is a flat mapping from non-empty ``str`` keys to ``str``, ``int``, finite ``float`` or ``bool`` values
  (the subset every backend, Chroma included, stores losslessly). ``where={"lang": "ja"}`` keeps records whose
  metadata has every listed key equal to the given value (``True`` does not match ``1``); ``{}`` keeps all.
* Searching an empty index, or a filter that matches nothing, returns no hits.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from jp_rerank.checks import check_ids, check_k, check_metadata, check_positive_int, check_texts, check_where
from jp_rerank.defaults import DEFAULT_K
from jp_rerank.errors import IndexCorruptedError, IndexMismatchError
from jp_rerank.hits import SearchHit
from jp_rerank.index.vectors import Metric, as_matrix, check_metric, normalize_rows
from jp_rerank.snapshots import open_snapshot, write_snapshot
from jp_rerank.types import Metadata, MetadataValue, Where

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Batch", "Record", "VectorIndex"]


@dataclass(frozen=True)
class Record:
    """One passage to index, or one stored passage: its id, text and metadata.

    Attributes:
        id: Unique string id.
        text: Passage text (what a reranker reads).
        metadata: Flat metadata (see the module docstring for the allowed values).

    Example:
        >>> Record("d1", "富士山は日本一高い山です。", {"lang": "ja"}).id
        'd1'
    """

    id: str
    text: str
    metadata: Metadata = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Batch:
    """A checked batch of records with float32 vectors (normalised for cosine), ready for a backend."""

    ids: list[str]
    vectors: np.ndarray
    texts: list[str]
    metadatas: list[Metadata]


# ---------------------------------------------------------------------------------------------------- interface


class VectorIndex(ABC):
    """Interface of every vector index: add/upsert/delete by string id, search with an optional filter, save.

    All public methods are thread-safe (one lock per index). Subclasses implement the ``_`` hooks, which receive
    checked inputs and are called with the lock held.

    Args:
        dim: Vector dimension.
        metric: ``"cosine"`` or ``"ip"``.
        embedder_id: Id of the model that made the vectors (e.g. ``Embedder.model_id``); saved in the manifest and
            checked when the index is loaded.

    Example:
        >>> from jp_rerank.index import ExactIndex
        >>> index = ExactIndex(2)
        >>> index.add(["a", "b"], [[1.0, 0.0], [0.6, 0.8]], ["犬", "猫"])
        >>> [(h.id, round(h.score, 2)) for h in index.search([1.0, 0.0], k=2)]
        [('a', 1.0), ('b', 0.6)]
    """

    backend: ClassVar[str]
    """Name written to the manifest (``"exact"``, ``"faiss"``, ``"chroma"``)."""

    def __init__(self, dim: int, *, metric: Metric = "cosine", embedder_id: str | None = None) -> None:
        self._dim = check_positive_int(dim, name="dim")
        self._metric = check_metric(metric)
        if embedder_id is not None and (not isinstance(embedder_id, str) or not embedder_id):
            raise TypeError(f"embedder_id must be a non-empty str or None, got {embedder_id!r}")
        self._embedder_id = embedder_id
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ properties

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self._dim

    @property
    def metric(self) -> Metric:
        """``"cosine"`` or ``"ip"``."""
        return self._metric

    @property
    def embedder_id(self) -> str | None:
        """Id of the model that made the vectors, if known."""
        return self._embedder_id

    @property
    def needs_training(self) -> bool:
        """Whether :meth:`train` must be called before vectors can be added (IVF-PQ only)."""
        return False

    def params(self) -> dict[str, Any]:
        """Backend parameters, JSON-serialisable (written to the manifest)."""
        return {}

    def __len__(self) -> int:
        with self._lock:
            return self._count()

    def __contains__(self, id: object) -> bool:
        if not isinstance(id, str):
            return False
        with self._lock:
            return bool(self._present([id]))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self._dim}, metric={self._metric!r}, count={len(self)})"

    # ------------------------------------------------------------------ writes

    def train(self, vectors: object) -> None:
        """Train the index on a sample of vectors; a no-op (after checking them) for backends that need none.

        Args:
            vectors: Sample of shape ``(n, dim)``.
        """
        sample = self._prepare_vectors(vectors, name="vectors")
        with self._lock:
            self._train(sample)

    def add(
        self,
        ids: Sequence[str],
        vectors: object,
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, MetadataValue] | None] | None = None,
    ) -> None:
        """Add new records.

        Args:
            ids: One unique string id per vector; none may already be stored.
            vectors: Array-like of shape ``(len(ids), dim)``.
            texts: Passage text of each record.
            metadatas: Optional flat metadata of each record (``None`` items mean ``{}``).

        Raises:
            ValueError: On a wrong shape or dimension, NaN/inf values, a zero vector with cosine, mismatched
                lengths, an id repeated in ``ids``, or an id that is already stored (use :meth:`upsert`).
            TypeError: On ids, texts or metadata of the wrong type.
        """
        batch = self._prepare(ids, vectors, texts, metadatas)
        if not batch.ids:
            return
        with self._lock:
            present = self._present(batch.ids)
            if present:
                raise ValueError(
                    f"{len(present)} id(s) are already in the index (e.g. {present[0]!r}); use upsert() to replace"
                )
            self._insert(batch)

    def upsert(
        self,
        ids: Sequence[str],
        vectors: object,
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, MetadataValue] | None] | None = None,
    ) -> None:
        """Add records, replacing any stored record with the same id (vector, text and metadata).

        Arguments and errors are those of :meth:`add`, except that stored ids are allowed.
        """
        batch = self._prepare(ids, vectors, texts, metadatas)
        if not batch.ids:
            return
        with self._lock:
            self._upsert(batch)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete records by id; ids that are not stored are ignored.

        Returns:
            How many records were removed.
        """
        checked = check_ids(ids)
        if not checked:
            return 0
        with self._lock:
            return self._remove(checked)

    # ------------------------------------------------------------------ reads

    def get(self, ids: Sequence[str]) -> list[Record]:
        """Return the stored records of ``ids``, in the same order.

        Raises:
            KeyError: If an id is not stored (names it).
        """
        checked = check_ids(ids)
        with self._lock:
            found = self._get(checked)
        for id_, rec in zip(checked, found, strict=True):
            if rec is None:
                raise KeyError(f"id {id_!r} is not in the index")
        return [r for r in found if r is not None]

    def records(self, batch_size: int = 1000) -> Iterator[Record]:
        """Iterate over every stored record (order is backend-specific but stable between calls).

        Args:
            batch_size: How many records a backend fetches at a time (Chroma pages through its collection).
        """
        check_positive_int(batch_size, name="batch_size")
        yield from self._iter_records(batch_size)

    def search(self, query: object, k: int = DEFAULT_K, *, where: Where | None = None) -> list[SearchHit]:
        """Return the ``k`` stored records most similar to one query vector.

        Args:
            query: Array-like of shape ``(dim,)``.
            k: Number of hits (fewer when fewer records match).
            where: Optional equality filter on metadata, e.g. ``{"lang": "ja"}``.

        Returns:
            Hits sorted by descending score, ties by id.
        """
        return self._run_search(query, k, where, {}, single=True)[0]

    def search_many(self, queries: object, k: int = DEFAULT_K, *, where: Where | None = None) -> list[list[SearchHit]]:
        """Search many query vectors at once (one list of hits per row of ``queries``).

        Args:
            queries: Array-like of shape ``(n, dim)``.
            k: Number of hits per query.
            where: Optional equality filter on metadata, applied to every query.
        """
        return self._run_search(queries, k, where, {}, single=False)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """Save a snapshot of the index to a directory, atomically (see :mod:`jp_rerank.snapshots`).

        Returns:
            The snapshot folder that was written.
        """
        with self._lock:
            return write_snapshot(Path(path), self._manifest(), self._write_payload)

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        /,
        *,
        embedder_id: str | None = None,
        verify: bool = True,
        **options: Any,
    ) -> Self:
        """Load an index saved with :meth:`save` by this backend (:func:`jp_rerank.index.load_index`: any).

        Args:
            directory: Directory given to :meth:`save`.
            embedder_id: The embedder the caller will query with; must match the manifest's when both are known.
            verify: Check every file's checksum before reading it.
            **options: Backend-specific options (e.g. Chroma's ``path=``/``host=`` to import into).

        Raises:
            IndexMismatchError: If ``embedder_id`` differs from the manifest's, or the snapshot was written by
                another backend than ``cls``.
            IndexCorruptedError: If a file is missing, truncated or altered.
        """
        if getattr(cls, "backend", None) is None:
            raise TypeError("VectorIndex.load needs a concrete backend class; use jp_rerank.index.load_index")

        def expected(found: type[VectorIndex] | None, manifest: Mapping[str, Any]) -> type[VectorIndex]:
            if manifest.get("backend") != cls.backend:
                raise IndexMismatchError(f"{directory} holds a {manifest.get('backend')!r} index, not a {cls.__name__}")
            return cls

        return load_snapshot_with(expected, directory, embedder_id=embedder_id, verify=verify, **options)  # type: ignore[return-value]

    def _finish_load(
        self, directory: str | os.PathLike[str], manifest: Mapping[str, Any], embedder_id: str | None
    ) -> Self:
        """Check the loaded count against the manifest and adopt ``embedder_id`` when none was recorded."""
        if len(self) != manifest["count"]:
            raise IndexCorruptedError(
                f"{directory}: loaded {len(self)} records, the manifest recorded {manifest['count']}"
            )
        if embedder_id is not None and self._embedder_id is None:
            self._embedder_id = embedder_id
        return self

    def _manifest(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "embedder_id": self._embedder_id,
            "dim": self._dim,
            "metric": self._metric,
            "normalize": self._metric == "cosine",
            "count": self._count(),
            "params": self.params(),
        }

    # ------------------------------------------------------------------ helpers

    def _prepare_vectors(self, vectors: object, *, name: str, ndim: Literal[1, 2] = 2) -> np.ndarray:
        arr = as_matrix(vectors, self._dim, name=name, ndim=ndim)
        return normalize_rows(arr, name=name) if self._metric == "cosine" else arr

    def _prepare(
        self,
        ids: Sequence[str],
        vectors: object,
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, MetadataValue] | None] | None,
    ) -> Batch:
        checked_ids = check_ids(ids)
        checked_texts = check_texts(texts, name="texts")
        arr = self._prepare_vectors(vectors, name="vectors")
        if metadatas is None:
            metas: list[Metadata] = [{} for _ in checked_ids]
        else:
            if isinstance(metadatas, Mapping):
                raise TypeError("metadatas must be a sequence with one mapping per record, not a single mapping")
            metas = [check_metadata(m, name=f"metadatas[{i}]") for i, m in enumerate(metadatas)]
        lengths = {"ids": len(checked_ids), "vectors": arr.shape[0], "texts": len(checked_texts)}
        lengths["metadatas"] = len(metas)
        if len(set(lengths.values())) != 1:
            raise ValueError(f"ids, vectors, texts and metadatas must have the same length, got {lengths}")
        return Batch(checked_ids, arr, checked_texts, metas)

    def _run_search(
        self, queries: object, k: int, where: Where | None, options: Mapping[str, int], *, single: bool
    ) -> list[list[SearchHit]]:
        k = check_k(k)
        flt = check_where(where)
        mat = self._prepare_vectors(queries, name="query" if single else "queries", ndim=1 if single else 2)
        if mat.shape[0] == 0:
            return []
        with self._lock:
            if self._count() == 0:
                return [[] for _ in range(mat.shape[0])]
            return self._search(mat, k, flt or None, options)

    # ------------------------------------------------------------------ hooks

    def _train(self, vectors: np.ndarray) -> None:  # noqa: B027 - optional hook, no-op by default
        """Train on checked (normalised) vectors; backends without training do nothing."""

    def _upsert(self, batch: Batch) -> None:
        """Replace-or-insert; the default removes stored ids, then inserts."""
        present = self._present(batch.ids)
        if present:
            self._remove(present)
        self._insert(batch)

    @abstractmethod
    def _count(self) -> int:
        """Number of stored records."""

    @abstractmethod
    def _present(self, ids: list[str]) -> list[str]:
        """The subset of ``ids`` that is stored, in the order given."""

    @abstractmethod
    def _insert(self, batch: Batch) -> None:
        """Insert records whose ids are known not to be stored."""

    @abstractmethod
    def _remove(self, ids: list[str]) -> int:
        """Remove the stored ones among ``ids``; return how many."""

    @abstractmethod
    def _get(self, ids: list[str]) -> list[Record | None]:
        """Stored records (``None`` for unknown ids), in order."""

    @abstractmethod
    def _iter_records(self, batch_size: int) -> Iterator[Record]:
        """Every stored record; takes the lock itself, one page at a time."""

    @abstractmethod
    def _search(
        self, queries: np.ndarray, k: int, where: dict[str, MetadataValue] | None, options: Mapping[str, int]
    ) -> list[list[SearchHit]]:
        """Search checked, normalised float32 queries of shape ``(n, dim)`` in a non-empty index."""

    @abstractmethod
    def _write_payload(self, folder: Path) -> None:
        """Write the backend's files (vectors, documents) into an empty folder."""

    @classmethod
    @abstractmethod
    def _from_payload(cls, folder: Path, manifest: Mapping[str, Any], **options: Any) -> Self:
        """Rebuild an index from a verified snapshot folder and its manifest."""


def load_snapshot_with(
    pick: Callable[[type[VectorIndex] | None, Mapping[str, Any]], type[VectorIndex]],
    directory: str | os.PathLike[str],
    *,
    embedder_id: str | None,
    verify: bool,
    **options: Any,
) -> VectorIndex:
    """Open a saved vector index and rebuild it with the class ``pick(None, manifest)`` returns.

    A manifest that lacks a field the backend needs raises :class:`IndexCorruptedError` (not a raw ``KeyError``).
    A save that commits and cleans up the snapshot while it is being read makes the read start over on the new
    snapshot (a few times at most), so concurrent readers and writers never see a missing file.
    """
    attempts = 3
    for attempt in range(attempts):
        snapshot, manifest = open_snapshot(directory, embedder_id=embedder_id, verify=verify)
        cls = pick(None, manifest)
        try:
            index = cls._from_payload(snapshot, manifest, **options)
        except KeyError as exc:
            raise IndexCorruptedError(f"{directory}: the manifest of {snapshot.name} lacks the field {exc}") from exc
        except FileNotFoundError:
            if attempt == attempts - 1 or snapshot.exists():
                raise
            continue  # replaced by a newer snapshot while we read it: read that one
        return index._finish_load(directory, manifest, embedder_id)
    raise AssertionError("unreachable")  # pragma: no cover
