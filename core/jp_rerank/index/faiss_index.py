"""faiss vector index: exact flat inner product, HNSW graph, or IVF-PQ for corpora of millions.

faiss is imported on first use (``pip install "jp-rerank[faiss]"``). Vectors are stored in faiss under the
integer labels of a :class:`~jp_rerank.index.store.DocumentStore`, which keeps ids, texts and metadata beside
them; all three kinds search by inner product (on unit vectors for ``metric="cosine"``). The kinds (flat, HNSW,
IVF-PQ), the refine copy that re-scores IVF-PQ candidates, and their memory are described in
:mod:`jp_rerank.index.faiss_kinds`.

Metadata filters (``where=``) run inside faiss through an id selector. When a filter keeps at most
``exhaustive_filter_limit`` records, HNSW scores exactly those records instead of walking the graph (graph
search with a very selective filter can miss matches), IVF-PQ with a refine copy scores them with that copy,
and IVF-PQ without one probes every list, so a small filter still returns ``min(k, matches)`` hits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jp_rerank.checks import check_positive_int
from jp_rerank.defaults import DEFAULT_K
from jp_rerank.hits import SearchHit, sort_hits
from jp_rerank.index.base import Batch
from jp_rerank.index.faiss_codes import EncodedBatch, check_codes, encode_batch
from jp_rerank.index.faiss_kinds import (
    DEFAULT_PQ_NBITS,
    FAISS_KINDS,
    FAISS_REFINES,
    FaissKind,
    FaissRefine,
    default_pq_m,
    faiss_module,
    new_faiss_index,
    train_ivfpq,
)
from jp_rerank.index.faiss_snapshot import faiss_settings, read_faiss_files, write_faiss_files
from jp_rerank.index.store import DocumentStore, StoreBackedIndex
from jp_rerank.index.vectors import Metric
from jp_rerank.types import MetadataValue, Where

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["FaissIndex"]


class FaissIndex(StoreBackedIndex):
    """A faiss index (flat, HNSW or IVF-PQ) with ids, texts and metadata kept beside it.

    Args:
        dim: Vector dimension.
        kind: ``"flat"`` (exact), ``"hnsw"`` or ``"ivfpq"``.
        metric: ``"cosine"`` (normalised) or ``"ip"``.
        embedder_id: Id of the model that made the vectors, checked when the index is loaded.
        hnsw_m: HNSW graph degree.
        ef_construction: HNSW build-time beam width.
        ef_search: Default HNSW query-time beam width (raised to ``k`` when smaller); override per query.
        nlist: IVF lists; ``None`` picks :func:`~jp_rerank.index.faiss_kinds.default_nlist` of the training
            sample size at :meth:`train`.
        pq_m: PQ sub-quantisers (must divide ``dim``); ``None`` picks :func:`~jp_rerank.index.faiss_kinds.default_pq_m`.
        pq_nbits: Bits per PQ code (8 = 256 centroids per sub-quantiser).
        nprobe: Default number of IVF lists probed per query; override per query.
        refine: IVF-PQ only: ``"flat"`` or ``"sq8"`` keeps a float32 or 8-bit copy of every vector (``4 * dim`` or
            ``dim`` more bytes each) and re-scores the PQ candidates with it; ``"none"`` returns PQ scores.
        refine_factor: Default number of PQ candidates re-scored, as a multiple of ``k``; override per query.
            Ignored when ``refine="none"``.
        exhaustive_filter_limit: Filters matching at most this many records are searched exhaustively
            (HNSW: exact scores; IVF-PQ: all lists, or the refine copy's scores when there is one).

    Raises:
        ValueError: On an unknown ``kind`` or ``refine``, ``refine`` with another kind than ``"ivfpq"``, a
            ``pq_m`` that does not divide ``dim``, or a parameter that is not a positive int.

    Example:
        >>> index = FaissIndex(2, kind="hnsw", ef_search=32)
        >>> index.add(["a", "b"], [[1.0, 0.0], [0.0, 1.0]], ["犬", "猫"], [{"lang": "ja"}, {"lang": "ja"}])
        >>> [h.id for h in index.search([0.9, 0.1], k=1, where={"lang": "ja"})]
        ['a']
        >>> ivf = FaissIndex(2, kind="ivfpq", nlist=1, pq_m=1, pq_nbits=2, refine="flat", refine_factor=4)
        >>> ivf.train([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]])
        >>> ivf.add(["a", "b"], [[1.0, 0.0], [0.6, 0.8]], ["犬", "猫"])
        >>> [(h.id, round(h.score, 3)) for h in ivf.search([1.0, 0.0], k=2)]
        [('a', 1.0), ('b', 0.6)]
    """

    backend = "faiss"

    def __init__(
        self,
        dim: int,
        *,
        kind: FaissKind = "flat",
        metric: Metric = "cosine",
        embedder_id: str | None = None,
        hnsw_m: int = 32,
        ef_construction: int = 100,
        ef_search: int = 64,
        nlist: int | None = None,
        pq_m: int | None = None,
        pq_nbits: int = DEFAULT_PQ_NBITS,
        nprobe: int = 16,
        refine: FaissRefine = "none",
        refine_factor: int = 4,
        exhaustive_filter_limit: int = 10_000,
    ) -> None:
        super().__init__(dim, metric=metric, embedder_id=embedder_id)
        if kind not in FAISS_KINDS:
            raise ValueError(f"kind must be one of {list(FAISS_KINDS)}, got {kind!r}")
        self._kind: FaissKind = kind
        self._hnsw_m = check_positive_int(hnsw_m, name="hnsw_m")
        self._ef_construction = check_positive_int(ef_construction, name="ef_construction")
        self._ef_search = check_positive_int(ef_search, name="ef_search")
        self._nlist = None if nlist is None else check_positive_int(nlist, name="nlist")
        self._pq_m = default_pq_m(dim) if pq_m is None else check_positive_int(pq_m, name="pq_m")
        if dim % self._pq_m:
            raise ValueError(f"pq_m={self._pq_m} must divide the dimension {dim}")
        self._pq_nbits = check_positive_int(pq_nbits, name="pq_nbits")
        self._nprobe = check_positive_int(nprobe, name="nprobe")
        if refine not in FAISS_REFINES:
            raise ValueError(f"refine must be one of {list(FAISS_REFINES)}, got {refine!r}")
        if refine != "none" and kind != "ivfpq":
            raise ValueError(f"refine={refine!r} applies only to kind='ivfpq', not {kind!r}")
        self._refine: FaissRefine = refine
        self._refine_factor = check_positive_int(refine_factor, name="refine_factor")
        # The refine copy stores vectors by position, in ascending label order; _refine_labels[pos] is the label.
        self._refine_index: Any = None
        self._refine_labels = np.empty(0, dtype=np.int64)
        self._exhaustive_limit = check_positive_int(exhaustive_filter_limit, name="exhaustive_filter_limit")
        self._tombstones: set[int] = set()  # HNSW labels deleted but still in the graph
        self._tomb_selector: Any = None
        self._index: Any = None if (kind == "ivfpq" and self._nlist is None) else self._new_index(self._nlist)

    # ------------------------------------------------------------------ configuration

    @property
    def kind(self) -> FaissKind:
        """``"flat"``, ``"hnsw"`` or ``"ivfpq"``."""
        return self._kind

    @property
    def nprobe(self) -> int:
        """Default number of IVF lists probed per query (IVF-PQ)."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._nprobe = check_positive_int(value, name="nprobe")

    @property
    def refine(self) -> FaissRefine:
        """``"none"``, ``"flat"`` or ``"sq8"``: the copy of the vectors that re-scores IVF-PQ candidates."""
        return self._refine

    @property
    def refine_factor(self) -> int:
        """Default number of IVF-PQ candidates re-scored per query, as a multiple of ``k``."""
        return self._refine_factor

    @refine_factor.setter
    def refine_factor(self, value: int) -> None:
        self._refine_factor = check_positive_int(value, name="refine_factor")

    @property
    def ef_search(self) -> int:
        """Default HNSW query-time beam width."""
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._ef_search = check_positive_int(value, name="ef_search")

    @property
    def nlist(self) -> int | None:
        """Number of IVF lists (``None`` until an IVF-PQ index with automatic ``nlist`` is trained)."""
        return self._nlist

    @property
    def is_trained(self) -> bool:
        """Whether vectors can be added (always true except for an untrained IVF-PQ index)."""
        return self._index is not None and bool(self._index.is_trained)

    @property
    def needs_training(self) -> bool:
        """Whether :meth:`train` must be called before :meth:`add`."""
        return not self.is_trained

    @property
    def n_tombstones(self) -> int:
        """HNSW records deleted but still occupying the graph (see :meth:`compact`)."""
        return len(self._tombstones)

    def params(self) -> dict[str, Any]:
        """Backend parameters for the manifest."""
        return {
            "kind": self._kind,
            "hnsw_m": self._hnsw_m,
            "ef_construction": self._ef_construction,
            "ef_search": self._ef_search,
            "nlist": self._nlist,
            "pq_m": self._pq_m,
            "pq_nbits": self._pq_nbits,
            "nprobe": self._nprobe,
            "refine": self._refine,
            "refine_factor": self._refine_factor,
            "exhaustive_filter_limit": self._exhaustive_limit,
            "next_label": self._store.next_label,
            "faiss_version": faiss_module().__version__,
        }

    def _new_index(self, nlist: int | None) -> Any:
        return new_faiss_index(
            self._kind,
            self.dim,
            nlist=nlist,
            pq_m=self._pq_m,
            pq_nbits=self._pq_nbits,
            hnsw_m=self._hnsw_m,
            ef_construction=self._ef_construction,
        )

    def _refine_positions(self, labels: np.ndarray) -> np.ndarray:
        """Positions of live labels in the refine copy."""
        pos = np.searchsorted(self._refine_labels, labels)
        if pos.size and (pos.max() >= self._refine_labels.size or not np.array_equal(self._refine_labels[pos], labels)):
            raise RuntimeError("the refine copy of the vectors is out of step with the IVF-PQ index")
        return pos

    def _vectors_of(self, labels: np.ndarray) -> np.ndarray:
        """Stored vectors of live labels (from the refine copy when there is one), float32 ``(n, dim)``."""
        if self._refine_index is not None:
            return np.asarray(self._refine_index.reconstruct_batch(self._refine_positions(labels)))
        return np.asarray(self._index.reconstruct_batch(labels))

    # ------------------------------------------------------------------ training and maintenance

    def _train(self, vectors: np.ndarray) -> None:
        if self._kind != "ivfpq":
            return
        if self.is_trained:
            raise ValueError("this IVF-PQ index is already trained")
        index, nlist, refine_index = train_ivfpq(
            vectors, nlist=self._nlist, pq_m=self._pq_m, pq_nbits=self._pq_nbits, refine=self._refine
        )
        self._index, self._nlist, self._refine_index = index, nlist, refine_index

    def compact(self) -> int:
        """Rebuild an HNSW graph without its deleted records (no-op for flat and IVF-PQ).

        Returns:
            How many deleted records were dropped from the graph.
        """
        with self._lock:
            if not self._tombstones:
                return 0
            dropped = len(self._tombstones)
            live = self._store.live_labels()
            vectors = self._index.reconstruct_batch(live) if live.size else None
            index = self._new_index(None)
            if vectors is not None:
                index.add_with_ids(vectors, live)
            self._index = index
            self._set_tombstones(set())
            return dropped

    def _set_tombstones(self, tombstones: set[int]) -> None:
        self._tombstones = tombstones
        self._tomb_selector = None
        if tombstones:
            faiss = faiss_module()
            batch = faiss.IDSelectorBatch(np.fromiter(sorted(tombstones), dtype=np.int64))
            self._tomb_selector = (faiss.IDSelectorNot(batch), batch)  # keep the inner selector alive

    # ------------------------------------------------------------------ hooks

    def _insert(self, batch: Batch) -> None:
        if not self.is_trained:
            raise ValueError("this IVF-PQ index must be trained first: call train(sample_vectors)")
        start = self._store.next_label
        labels = np.arange(start, start + len(batch.ids), dtype=np.int64)
        self._index.add_with_ids(batch.vectors, labels)
        if self._refine_index is not None:  # labels only grow, so appending keeps the copy in label order
            self._refine_index.add(batch.vectors)
            self._refine_labels = np.concatenate([self._refine_labels, labels])
        self._store.append(batch.ids, batch.texts, batch.metadatas)

    def _remove(self, ids: list[str]) -> int:
        labels = self._store.labels_of(ids)
        if labels.size == 0:
            return 0
        if self._kind == "hnsw":
            self._set_tombstones(self._tombstones | set(labels.tolist()))
        else:
            removed = self._index.remove_ids(faiss_module().IDSelectorBatch(labels))
            if removed != labels.size:
                raise RuntimeError(f"faiss removed {removed} vectors instead of {labels.size}")
            if self._refine_index is not None:
                pos = self._refine_positions(np.sort(labels))
                removed = self._refine_index.remove_ids(faiss_module().IDSelectorBatch(pos))
                if removed != labels.size:
                    raise RuntimeError(f"faiss removed {removed} refine vectors instead of {labels.size}")
                self._refine_labels = np.delete(self._refine_labels, pos)
        self._store.remove(ids)
        return int(labels.size)

    # ------------------------------------------------------------------ encoding elsewhere

    def encode(
        self,
        ids: Sequence[str],
        vectors: object,
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, MetadataValue] | None] | None = None,
    ) -> EncodedBatch:
        """Check records as :meth:`add` does and compute their faiss codes, without adding them.

        The expensive part of adding to an IVF-PQ index (the nearest list and the PQ code of each vector) can so
        run on copies of one trained index in other processes; :meth:`add_encoded` then stores the codes, giving
        exactly the index :meth:`add` would have built. Arguments and errors are those of :meth:`add`.

        Raises:
            ValueError: If the index must be trained first, or as :meth:`add`.

        Example:
            >>> import numpy as np
            >>> index = FaissIndex(4, kind="flat")
            >>> encoded = index.encode(["a"], np.eye(4, dtype=np.float32)[:1], ["犬"])
            >>> index.add_encoded(encoded)
            >>> index.search(np.eye(4, dtype=np.float32)[0], 1)[0].id
            'a'
        """
        if not self.is_trained:
            raise ValueError("this IVF-PQ index must be trained first: call train(sample_vectors)")
        batch = self._prepare(ids, vectors, texts, metadatas)
        return encode_batch(batch, self._index, self._refine_index, ivfpq=self._kind == "ivfpq")

    def add_encoded(self, encoded: EncodedBatch) -> None:
        """Add records encoded by :meth:`encode` (here or on a copy of this trained index in another process).

        Raises:
            ValueError: If an id is already stored, or the codes do not fit this index (another kind, other
                parameters, or a refine copy missing on one side).
        """
        n = len(encoded.ids)
        if not n:
            return
        width = self._index.sa_code_size() if self._kind == "ivfpq" else self.dim
        check_codes(encoded, width=width, refined=self._refine_index is not None)
        with self._lock:
            present = self._present(encoded.ids)
            if present:
                raise ValueError(
                    f"{len(present)} id(s) are already in the index (e.g. {present[0]!r}); use upsert() to replace"
                )
            if self._kind != "ivfpq":
                self._insert(Batch(encoded.ids, encoded.codes, encoded.texts, encoded.metadatas))
                return
            start = self._store.next_label
            labels = np.arange(start, start + n, dtype=np.int64)
            self._index.add_sa_codes(encoded.codes, labels)
            if encoded.refine_codes is not None:
                self._refine_index.add_sa_codes(encoded.refine_codes)
                self._refine_labels = np.concatenate([self._refine_labels, labels])
            self._store.append(encoded.ids, encoded.texts, encoded.metadatas)

    # ------------------------------------------------------------------ search

    def search(
        self,
        query: object,
        k: int = DEFAULT_K,
        *,
        where: Where | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
        refine_factor: int | None = None,
    ) -> list[SearchHit]:
        """Return the ``k`` stored records most similar to one query vector.

        Args:
            query: Array-like of shape ``(dim,)``.
            k: Number of hits.
            where: Optional equality filter on metadata, e.g. ``{"lang": "ja"}``.
            nprobe: IVF lists to probe for this query (IVF-PQ; default :attr:`nprobe`).
            ef_search: HNSW beam width for this query (default :attr:`ef_search`).
            refine_factor: IVF-PQ candidates re-scored, as a multiple of ``k`` (with ``refine``; default
                :attr:`refine_factor`).
        """
        options = self._options(nprobe, ef_search, refine_factor)
        return self._run_search(query, k, where, options, single=True)[0]

    def search_many(
        self,
        queries: object,
        k: int = DEFAULT_K,
        *,
        where: Where | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
        refine_factor: int | None = None,
    ) -> list[list[SearchHit]]:
        """Search many query vectors at once; see :meth:`search` for the arguments."""
        options = self._options(nprobe, ef_search, refine_factor)
        return self._run_search(queries, k, where, options, single=False)

    def _options(self, nprobe: int | None, ef_search: int | None, refine_factor: int | None) -> dict[str, int]:
        return {
            "nprobe": self._nprobe if nprobe is None else check_positive_int(nprobe, name="nprobe"),
            "ef_search": self._ef_search if ef_search is None else check_positive_int(ef_search, name="ef_search"),
            "refine_factor": (
                self._refine_factor
                if refine_factor is None
                else check_positive_int(refine_factor, name="refine_factor")
            ),
        }

    def _search(
        self, queries: np.ndarray, k: int, where: dict[str, MetadataValue] | None, options: Mapping[str, int]
    ) -> list[list[SearchHit]]:
        faiss = faiss_module()
        allowed = None if where is None else self._store.matching_labels(where)
        if allowed is not None and allowed.size == 0:
            return [[] for _ in range(queries.shape[0])]
        small_filter = allowed is not None and allowed.size <= self._exhaustive_limit
        if small_filter and (self._kind == "hnsw" or self._refine_index is not None):
            assert allowed is not None
            return self._score_exactly(queries, k, allowed)
        keep: list[Any] = []  # selectors must outlive the search call
        selector = None
        if allowed is not None:
            selector = faiss.IDSelectorBatch(allowed)
        elif self._tomb_selector is not None:
            selector = self._tomb_selector[0]
        keep.append(selector)
        if self._kind == "ivfpq":
            nprobe = self._nlist if small_filter else min(options["nprobe"], self._nlist or 1)
            params = faiss.SearchParametersIVF(nprobe=nprobe)
        elif self._kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(options["ef_search"], k))
        else:
            params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
        n_live = len(self._store)
        if self._refine_index is not None:
            k_base = min(k * options["refine_factor"], n_live)
            _, candidates = self._index.search(queries, k_base, params=params)
            del keep
            return [self._rescore(q, row[row >= 0], k) for q, row in zip(queries, candidates, strict=True)]
        distances, labels = self._index.search(queries, min(k, n_live), params=params)
        del keep
        out: list[list[SearchHit]] = []
        for drow, lrow in zip(distances, labels, strict=True):
            hits = [self._store.hit(int(lb), float(d)) for d, lb in zip(drow, lrow, strict=True) if lb >= 0]
            out.append(sort_hits(hits))
        return out

    def _rescore(self, query: np.ndarray, labels: np.ndarray, k: int) -> list[SearchHit]:
        """Score candidate labels with the refine copy and keep the best ``k``."""
        if labels.size == 0:
            return []
        return self._store.top_hits(self._vectors_of(labels) @ query, labels, k)

    def _score_exactly(self, queries: np.ndarray, k: int, labels: np.ndarray) -> list[list[SearchHit]]:
        vectors = self._vectors_of(labels)
        return [self._store.top_hits(row, labels, k) for row in queries @ vectors.T]

    # ------------------------------------------------------------------ persistence

    def _write_payload(self, folder: Path) -> None:
        write_faiss_files(folder, self._index, self._refine_index, self._tombstones)
        self._store.write_jsonl(folder / "docs.jsonl")

    @classmethod
    def _from_payload(cls, folder: Path, manifest: Mapping[str, Any], **options: Any) -> Self:
        if options:
            raise TypeError(f"unexpected options for a faiss index: {sorted(options)}")
        index = cls(**faiss_settings(manifest))
        index._store = DocumentStore.read_jsonl(folder / "docs.jsonl", next_label=manifest["params"]["next_label"])
        index._index, index._refine_index, tombstones = read_faiss_files(
            folder, manifest["files"], unsaved=index._index, refine=index._refine, records=len(index._store)
        )
        if index._refine_index is not None:
            index._refine_labels = index._store.live_labels()
        index._set_tombstones(tombstones)
        return index
