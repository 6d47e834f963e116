"""Exact (brute-force) vector index in numpy: the reference every other backend is tested against."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jp_rerank.errors import IndexCorruptedError
from jp_rerank.hits import SearchHit
from jp_rerank.index.base import Batch
from jp_rerank.index.store import DocumentStore, StoreBackedIndex
from jp_rerank.index.vectors import Metric
from jp_rerank.types import MetadataValue

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["ExactIndex"]

_SCORE_BLOCK = 1 << 24
"""Largest number of query x vector scores computed at once (64 MiB of float32)."""


class ExactIndex(StoreBackedIndex):
    """Scores every stored vector for every query (float32 matrix product): exact, simple, O(n) per query.

    Use it for small corpora (up to ~100k passages) and as ground truth for the approximate backends.

    Args:
        dim: Vector dimension.
        metric: ``"cosine"`` (normalised) or ``"ip"``.
        embedder_id: Id of the model that made the vectors, checked when the index is loaded.

    Example:
        >>> index = ExactIndex(2, metric="ip")
        >>> index.add(["a", "b"], [[1.0, 0.0], [0.0, 2.0]], ["犬", "猫"], [{"lang": "ja"}, {"lang": "en"}])
        >>> [h.id for h in index.search([1.0, 1.0], k=2)]
        ['b', 'a']
        >>> [h.id for h in index.search([1.0, 1.0], k=2, where={"lang": "ja"})]
        ['a']
    """

    backend = "exact"

    def __init__(self, dim: int, *, metric: Metric = "cosine", embedder_id: str | None = None) -> None:
        super().__init__(dim, metric=metric, embedder_id=embedder_id)
        # Rows [0, _n) of _buf hold the stored vectors; _labels[r] is the label of row r (ascending).
        self._buf = np.empty((0, dim), dtype=np.float32)
        self._labels = np.empty(0, dtype=np.int64)
        self._n = 0

    @property
    def _vectors(self) -> np.ndarray:
        return self._buf[: self._n]

    # ------------------------------------------------------------------ hooks

    def _insert(self, batch: Batch) -> None:
        need = self._n + len(batch.ids)
        if need > self._buf.shape[0]:  # grow geometrically so streaming many small batches stays linear
            grown = np.empty((max(need, 2 * self._buf.shape[0], 1024), self.dim), dtype=np.float32)
            grown[: self._n] = self._vectors
            self._buf = grown
        self._buf[self._n : need] = batch.vectors
        labels = self._store.append(batch.ids, batch.texts, batch.metadatas)
        self._labels = np.concatenate([self._labels, labels])
        self._n = need

    def _remove(self, ids: list[str]) -> int:
        labels = self._store.remove(ids)
        if labels.size:
            keep = ~np.isin(self._labels, labels)
            kept = self._vectors[keep]
            self._n = kept.shape[0]
            self._buf[: self._n] = kept
            self._labels = self._labels[keep]
        return int(labels.size)

    def _search(
        self, queries: np.ndarray, k: int, where: dict[str, MetadataValue] | None, options: Mapping[str, int]
    ) -> list[list[SearchHit]]:
        vectors, labels = self._vectors, self._labels
        if where is not None:
            rows = np.flatnonzero(np.isin(labels, self._store.matching_labels(where)))
            vectors, labels = vectors[rows], labels[rows]
        if labels.size == 0:
            return [[] for _ in range(queries.shape[0])]
        out: list[list[SearchHit]] = []
        step = max(1, _SCORE_BLOCK // labels.size)
        for start in range(0, queries.shape[0], step):
            scores = queries[start : start + step] @ vectors.T
            out.extend(self._store.top_hits(row, labels, k) for row in scores)
        return out

    # ------------------------------------------------------------------ persistence

    def params(self) -> dict[str, Any]:
        """Backend parameters for the manifest (the label counter)."""
        return {"next_label": self._store.next_label}

    def _write_payload(self, folder: Path) -> None:
        np.save(folder / "vectors.npy", self._vectors, allow_pickle=False)
        np.save(folder / "labels.npy", self._labels, allow_pickle=False)
        self._store.write_jsonl(folder / "docs.jsonl")

    @classmethod
    def _from_payload(cls, folder: Path, manifest: Mapping[str, Any], **options: Any) -> Self:
        if options:
            raise TypeError(f"unexpected options for an exact index: {sorted(options)}")
        index = cls(manifest["dim"], metric=manifest["metric"], embedder_id=manifest["embedder_id"])
        index._store = DocumentStore.read_jsonl(folder / "docs.jsonl", next_label=manifest["params"]["next_label"])
        try:
            vectors = np.load(folder / "vectors.npy", allow_pickle=False)
            labels = np.load(folder / "labels.npy", allow_pickle=False)
        except ValueError as exc:
            raise IndexCorruptedError(f"cannot read the vectors in {folder}: {exc}") from exc
        if vectors.shape != (labels.size, index.dim) or vectors.dtype != np.float32 or labels.dtype != np.int64:
            raise IndexCorruptedError(f"vectors.npy/labels.npy in {folder} do not have the recorded shape")
        if not np.array_equal(labels, index._store.live_labels()):
            raise IndexCorruptedError(f"labels.npy and docs.jsonl in {folder} list different records")
        index._buf, index._labels, index._n = vectors, labels, labels.size
        return index
