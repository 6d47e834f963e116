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

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias, get_args

import numpy as np

from jp_rerank._validate import check_positive_int, check_texts
from jp_rerank.errors import IndexCorruptedError, IndexMismatchError

if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "IndexCorruptedError",
    "IndexMismatchError",
    "Metadata",
    "MetadataValue",
    "Metric",
    "Record",
    "SearchHit",
    "VectorIndex",
    "Where",
]

Metric: TypeAlias = Literal["cosine", "ip"]
"""Similarity: ``"cosine"`` (vectors normalised to unit length) or ``"ip"`` (raw inner product)."""

MetadataValue: TypeAlias = str | int | float | bool
Metadata: TypeAlias = dict[str, MetadataValue]
Where: TypeAlias = Mapping[str, MetadataValue]

_METRICS: tuple[str, ...] = get_args(Metric)


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
class SearchHit:
    """One search result.

    Attributes:
        id: Id of the stored passage.
        score: Similarity (cosine or inner product, approximate for compressed indexes); higher is better.
        text: Stored passage text.
        metadata: A copy of the stored metadata (changing it does not change the index).

    Example:
        >>> SearchHit("d1", 0.83, "富士山は日本一高い山です。", {}).score
        0.83
    """

    id: str
    score: float
    text: str
    metadata: Metadata = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Batch:
    """A checked batch of records with float32 vectors (normalised for cosine), ready for a backend."""

    ids: list[str]
    vectors: np.ndarray
    texts: list[str]
    metadatas: list[Metadata]


# --------------------------------------------------------------------------------------------------- validation


def check_metric(metric: object) -> Metric:
    """Return ``metric`` if it is a known metric name.

    Raises:
        ValueError: If it is not ``"cosine"`` or ``"ip"``.

    Example:
        >>> check_metric("cosine")
        'cosine'
    """
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {list(_METRICS)}, got {metric!r}")
    return metric  # type: ignore[return-value]


def check_ids(ids: object, *, name: str = "ids") -> list[str]:
    """Return ``ids`` as a list of non-empty strings with no repeats.

    Raises:
        TypeError: If ``ids`` is a single string or an item is not a ``str``.
        ValueError: If an id is empty or repeated.

    Example:
        >>> check_ids(("a", "b"))
        ['a', 'b']
    """
    items = check_texts(ids, name=name)
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not item:
            raise ValueError(f"{name}[{i}] is an empty string")
        if item in seen:
            raise ValueError(f"{name} contains {item!r} more than once (at position {i})")
        seen.add(item)
    return items


def check_metadata_value(key: str, value: object, *, name: str) -> MetadataValue:
    """Return ``value`` if it is a storable metadata value (``str``, ``int``, finite ``float``, ``bool``).

    Raises:
        TypeError: If the value has another type (``None``, lists, dicts...).
        ValueError: If it is a NaN or infinite float.
    """
    if isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name}[{key!r}] is {value}; metadata floats must be finite")
        return value
    raise TypeError(f"{name}[{key!r}] must be str, int, float or bool, got {type(value).__name__}")


def check_metadata(metadata: object, *, name: str = "metadata") -> Metadata:
    """Return a checked shallow copy of one metadata mapping (``None`` means ``{}``).

    Raises:
        TypeError: If it is not a mapping, a key is not a ``str`` or a value has an unsupported type.
        ValueError: If a key is empty or a float value is not finite.

    Example:
        >>> check_metadata({"lang": "ja", "year": 2024})
        {'lang': 'ja', 'year': 2024}
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"{name} must be a mapping, got {type(metadata).__name__}")
    out: Metadata = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"{name} keys must be non-empty str, got {key!r}")
        out[key] = check_metadata_value(key, value, name=name)
    return out


def check_metadatas(metadatas: Sequence[Mapping[str, MetadataValue] | None] | None, n: int) -> list[Metadata]:
    """Check and copy one flat metadata mapping per passage (the vector indexes' rules; ``None`` → ``{}``).

    Raises:
        TypeError: Not a sequence of mappings, or a key/value of an unsupported type.
        ValueError: A length other than ``n``, an empty key or a non-finite float.
    """
    if metadatas is None:
        return [{} for _ in range(n)]
    if isinstance(metadatas, Mapping) or not isinstance(metadatas, Sequence):
        raise TypeError("metadatas must be a sequence with one mapping per text, not a single mapping")
    if len(metadatas) != n:
        raise ValueError(f"got {n} texts but {len(metadatas)} metadatas")
    return [check_metadata(meta, name=f"metadatas[{i}]") for i, meta in enumerate(metadatas)]


def check_where(where: object) -> dict[str, MetadataValue] | None:
    """Return a checked copy of an equality filter, or ``None`` for no filter.

    Raises:
        TypeError: If it is not a mapping of str keys to metadata values.
        ValueError: If a key is empty or a float value is not finite.

    Example:
        >>> check_where({"lang": "ja"})
        {'lang': 'ja'}
    """
    if where is None:
        return None
    return check_metadata(where, name="where")


def check_k(k: object) -> int:
    """Return ``k`` if it is a positive int (numpy integers accepted).

    Raises:
        TypeError: If it is not an integer.
        ValueError: If it is zero or negative.

    Example:
        >>> check_k(10)
        10
    """
    if isinstance(k, np.integer):
        k = int(k)
    return check_positive_int(k, name="k")


def as_matrix(vectors: object, dim: int, *, name: str = "vectors", ndim: Literal[1, 2] = 2) -> np.ndarray:
    """Return a C-contiguous float32 copy of ``vectors`` after checking its shape and values.

    Args:
        vectors: Array-like of shape ``(n, dim)`` (``ndim=2``) or ``(dim,)`` (``ndim=1``).
        dim: Expected vector dimension.
        name: Argument name used in error messages.
        ndim: Expected number of array dimensions.

    Returns:
        A float32 array of shape ``(n, dim)`` (a single vector becomes ``(1, dim)``).

    Raises:
        ValueError: If the shape or dimension is wrong, or a value is NaN or infinite (also after the cast
            to float32).

    Example:
        >>> as_matrix([[1, 0], [0, 1]], 2).dtype
        dtype('float32')
    """
    arr = np.asarray(vectors)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        want = f"(n, {dim})" if ndim == 2 else f"({dim},)"
        raise ValueError(f"{name} must have shape {want}, got an array of shape {arr.shape}")
    if arr.shape[-1] != dim:
        raise ValueError(f"{name} have dimension {arr.shape[-1]} but the index has dimension {dim}")
    with np.errstate(over="ignore"):  # overflow becomes inf, reported just below
        out = np.array(arr, dtype=np.float32, order="C", copy=True).reshape(-1, dim)
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        raise ValueError(f"{name} row {bad} contains NaN or infinite values (after casting to float32)")
    return out


def normalize_rows(vectors: np.ndarray, *, name: str = "vectors") -> np.ndarray:
    """Scale each row of a float32 matrix to unit length, in place, and return it.

    Raises:
        ValueError: If a row has zero length (it has no direction, so no cosine).

    Example:
        >>> normalize_rows(np.array([[3.0, 4.0]], dtype=np.float32)).tolist()
        [[0.6000000238418579, 0.800000011920929]]
    """
    norms = np.linalg.norm(vectors, axis=1)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise ValueError(f"{name} row {int(zero[0])} has zero length and cannot be normalised for cosine")
    vectors /= norms[:, None].astype(np.float32)
    return vectors


def sort_hits(hits: list[SearchHit]) -> list[SearchHit]:
    """Return ``hits`` sorted by descending score, equal scores by ascending id.

    Example:
        >>> [h.id for h in sort_hits([SearchHit("b", 1.0, ""), SearchHit("a", 1.0, ""), SearchHit("c", 2.0, "")])]
        ['c', 'a', 'b']
    """
    return sorted(hits, key=lambda h: (-h.score, h.id))


def top_k_rows(scores: np.ndarray, k: int, id_of: Callable[[int], str]) -> list[int]:
    """Return the positions of the ``k`` best scores, best first, equal scores by ascending id.

    Ties at the cut-off are resolved by id too, so the result does not depend on storage order.

    Args:
        scores: 1-D scores, one per candidate.
        k: How many to keep.
        id_of: Id of the candidate at a position (called only for the few candidates near the top).

    Example:
        >>> top_k_rows(np.array([0.5, 0.9, 0.9], dtype=np.float32), 2, ["a", "c", "b"].__getitem__)
        [2, 1]
    """
    n = scores.shape[0]
    if n == 0:
        return []
    if k < n:
        kth = np.partition(scores, n - k)[n - k]
        cand = np.flatnonzero(scores >= kth)
    else:
        cand = np.arange(n)
    order = sorted(cand.tolist(), key=lambda r: (-float(scores[r]), id_of(r)))
    return order[:k]


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
    def normalize(self) -> bool:
        """Whether vectors are normalised to unit length before they are stored or searched."""
        return self._metric == "cosine"

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

    def search(self, query: object, k: int = 10, *, where: Where | None = None) -> list[SearchHit]:
        """Return the ``k`` stored records most similar to one query vector.

        Args:
            query: Array-like of shape ``(dim,)``.
            k: Number of hits (fewer when fewer records match).
            where: Optional equality filter on metadata, e.g. ``{"lang": "ja"}``.

        Returns:
            Hits sorted by descending score, ties by id.
        """
        return self._run_search(query, k, where, {}, single=True)[0]

    def search_batch(self, queries: object, k: int = 10, *, where: Where | None = None) -> list[list[SearchHit]]:
        """Search many query vectors at once (one list of hits per row of ``queries``).

        Args:
            queries: Array-like of shape ``(n, dim)``.
            k: Number of hits per query.
            where: Optional equality filter on metadata, applied to every query.
        """
        return self._run_search(queries, k, where, {}, single=False)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """Save a snapshot of the index to a directory, atomically (see :mod:`jp_rerank.index.persist`).

        Returns:
            The snapshot folder that was written.
        """
        from jp_rerank.index.persist import write_snapshot

        with self._lock:
            return write_snapshot(Path(path), self._manifest(), self._write_payload)

    @classmethod
    def load(
        cls, directory: str | Path, /, *, embedder_id: str | None = None, verify: bool = True, **options: Any
    ) -> Self:
        """Load an index saved with :meth:`save`.

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
        from jp_rerank.index.persist import load_index

        index = load_index(directory, embedder_id=embedder_id, verify=verify, **options)
        if not isinstance(index, cls):
            raise IndexMismatchError(f"{directory} holds a {type(index).__name__}, not a {cls.__name__}")
        return index

    def _manifest(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "embedder_id": self._embedder_id,
            "dim": self._dim,
            "metric": self._metric,
            "normalize": self.normalize,
            "count": self._count(),
            "params": self.params(),
        }

    # ------------------------------------------------------------------ helpers

    def _prepare_vectors(self, vectors: object, *, name: str, ndim: Literal[1, 2] = 2) -> np.ndarray:
        arr = as_matrix(vectors, self._dim, name=name, ndim=ndim)
        return normalize_rows(arr, name=name) if self.normalize else arr

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
