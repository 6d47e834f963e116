"""Documents and metadata kept beside a vector index that stores only vectors and integer labels.

Each record gets an integer *label* when it is added (0, 1, 2, ... in insertion order, never reused); the vector
backend stores vectors under these labels and the :class:`DocumentStore` maps them back to ids, texts and
metadata. Equality filters are answered from a per-key value index that is built on first use and dropped on the
next write.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jp_rerank.errors import IndexCorruptedError
from jp_rerank.hits import SearchHit, rank
from jp_rerank.index.base import Record, VectorIndex
from jp_rerank.index.vectors import Metric
from jp_rerank.types import Metadata, MetadataValue

__all__ = ["DocumentStore", "StoreBackedIndex"]

_FilterKey = tuple[str, str | int | float | bool]


def _value_key(value: MetadataValue) -> _FilterKey:
    """Hashable key under which a metadata value is indexed; bools never equal ints (``True`` != ``1``)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, str):
        return ("str", value)
    return ("num", value)


class DocumentStore:
    """Ids, texts and metadata of the records of a vector index, addressed by integer label.

    Not thread-safe on its own: the owning index holds its lock around every call.

    Example:
        >>> store = DocumentStore()
        >>> store.append(["a", "b"], ["犬", "猫"], [{"lang": "ja"}, {}]).tolist()
        [0, 1]
        >>> store.matching_labels({"lang": "ja"}).tolist()
        [0]
    """

    def __init__(self) -> None:
        self._ids: list[str | None] = []
        self._texts: list[str | None] = []
        self._metas: list[Metadata | None] = []
        self._label_of: dict[str, int] = {}
        self._filter_cache: dict[str, dict[_FilterKey, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._label_of)

    @property
    def next_label(self) -> int:
        """Label the next added record will get."""
        return len(self._ids)

    def label_of(self, id_: str) -> int | None:
        """Label of a stored id, or ``None``."""
        return self._label_of.get(id_)

    def labels_of(self, ids: Sequence[str]) -> np.ndarray:
        """Labels of the stored ones among ``ids`` (unknown ids are skipped), as int64."""
        found = [self._label_of[i] for i in ids if i in self._label_of]
        return np.asarray(found, dtype=np.int64)

    def append(self, ids: Sequence[str], texts: Sequence[str], metadatas: Sequence[Metadata]) -> np.ndarray:
        """Store new records (ids must not be stored) and return their labels."""
        start = len(self._ids)
        for offset, (id_, text, meta) in enumerate(zip(ids, texts, metadatas, strict=True)):
            self._label_of[id_] = start + offset
            self._ids.append(id_)
            self._texts.append(text)
            self._metas.append(dict(meta) if meta else None)
        self._filter_cache.clear()
        return np.arange(start, start + len(ids), dtype=np.int64)

    def remove(self, ids: Sequence[str]) -> np.ndarray:
        """Forget the stored ones among ``ids``; return their labels."""
        labels = self.labels_of(ids)
        for label in labels.tolist():
            id_ = self._ids[label]
            assert id_ is not None
            del self._label_of[id_]
            self._ids[label] = None
            self._texts[label] = None
            self._metas[label] = None
        if labels.size:
            self._filter_cache.clear()
        return labels

    def id_at(self, label: int) -> str | None:
        """Id stored under ``label`` (``None`` if deleted or unknown)."""
        return self._ids[label] if 0 <= label < len(self._ids) else None

    def record(self, label: int) -> Record:
        """The record stored under a live label (metadata copied)."""
        id_, text = self._ids[label], self._texts[label]
        if id_ is None or text is None:
            raise KeyError(f"label {label} is not live")
        meta = self._metas[label]
        return Record(id_, text, dict(meta) if meta else {})

    def hit(self, label: int, score: float) -> SearchHit:
        """A :class:`SearchHit` for a live label (metadata copied)."""
        rec = self.record(label)
        return SearchHit(rec.id, float(score), rec.text, rec.metadata)

    def top_hits(self, scores: np.ndarray, labels: np.ndarray, k: int) -> list[SearchHit]:
        """The ``k`` best hits among candidates (``scores[r]`` belongs to ``labels[r]``), in result order."""
        best = rank(scores, k, ids=lambda r: self._ids[int(labels[r])] or "")
        return [self.hit(int(labels[r]), float(scores[r])) for r in best]

    def live_labels(self) -> np.ndarray:
        """Labels of all stored records, ascending."""
        return np.fromiter(sorted(self._label_of.values()), dtype=np.int64, count=len(self._label_of))

    def matching_labels(self, where: Mapping[str, MetadataValue]) -> np.ndarray:
        """Sorted labels of records whose metadata equals ``where`` on every key (all records for ``{}``)."""
        result: np.ndarray | None = None
        for key, value in where.items():
            labels = self._value_index(key).get(_value_key(value), np.empty(0, dtype=np.int64))
            result = labels if result is None else np.intersect1d(result, labels, assume_unique=True)
            if result.size == 0:
                break
        return self.live_labels() if result is None else result

    def _value_index(self, key: str) -> dict[_FilterKey, np.ndarray]:
        cached = self._filter_cache.get(key)
        if cached is not None:
            return cached
        groups: dict[_FilterKey, list[int]] = {}
        for label, meta in enumerate(self._metas):
            if meta is not None and key in meta:
                groups.setdefault(_value_key(meta[key]), []).append(label)
        built = {vk: np.asarray(labels, dtype=np.int64) for vk, labels in groups.items()}
        self._filter_cache[key] = built
        return built

    def iter_live(self) -> Iterator[tuple[int, Record]]:
        """``(label, record)`` for every stored record, by ascending label."""
        for label, id_ in enumerate(self._ids):
            if id_ is not None:
                yield label, self.record(label)

    # ------------------------------------------------------------------ JSONL

    def write_jsonl(self, path: Path) -> None:
        """Write one JSON object per stored record (``label``, ``id``, ``text``, ``metadata``), UTF-8."""
        with path.open("w", encoding="utf-8", newline="\n") as fh:
            for label, rec in self.iter_live():
                row = {"label": label, "id": rec.id, "text": rec.text, "metadata": rec.metadata}
                fh.write(json.dumps(row, ensure_ascii=False, allow_nan=False))
                fh.write("\n")

    @classmethod
    def read_jsonl(cls, path: Path, *, next_label: int) -> DocumentStore:
        """Read a file written by :meth:`write_jsonl`.

        Args:
            path: The JSONL file.
            next_label: Label counter to restore (labels of deleted records are never reused).

        Raises:
            IndexCorruptedError: If a line is not valid JSON or the labels are inconsistent.
        """
        store = cls()
        store._ids = [None] * next_label
        store._texts = [None] * next_label
        store._metas = [None] * next_label
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                try:
                    row: dict[str, Any] = json.loads(line)
                    label, id_, text, meta = row["label"], row["id"], row["text"], row["metadata"]
                except (ValueError, KeyError, TypeError) as exc:
                    raise IndexCorruptedError(f"{path.name} line {lineno} is not a valid record: {exc}") from exc
                if not (isinstance(label, int) and 0 <= label < next_label) or store._ids[label] is not None:
                    raise IndexCorruptedError(f"{path.name} line {lineno} has a bad or repeated label {label!r}")
                if not isinstance(id_, str) or id_ in store._label_of:
                    raise IndexCorruptedError(f"{path.name} line {lineno} has a bad or repeated id {id_!r}")
                store._ids[label] = id_
                store._texts[label] = text
                store._metas[label] = meta or None
                store._label_of[id_] = label
        return store


class StoreBackedIndex(VectorIndex):
    """Base of the backends whose vector engine keeps only integer labels (numpy, faiss).

    Ids, texts and metadata live in a :class:`DocumentStore` (``self._store``), which answers the bookkeeping
    hooks here; subclasses implement inserting, removing, searching and persistence.

    Example:
        >>> from jp_rerank.index import ExactIndex
        >>> isinstance(ExactIndex(4), StoreBackedIndex)
        True
    """

    def __init__(self, dim: int, *, metric: Metric = "cosine", embedder_id: str | None = None) -> None:
        super().__init__(dim, metric=metric, embedder_id=embedder_id)
        self._store = DocumentStore()

    def _count(self) -> int:
        return len(self._store)

    def _present(self, ids: list[str]) -> list[str]:
        return [i for i in ids if self._store.label_of(i) is not None]

    def _get(self, ids: list[str]) -> list[Record | None]:
        labels = [self._store.label_of(i) for i in ids]
        return [None if label is None else self._store.record(label) for label in labels]

    def _iter_records(self, batch_size: int) -> Iterator[Record]:
        with self._lock:
            labels = self._store.live_labels()
        for start in range(0, labels.size, batch_size):
            with self._lock:  # records deleted since the listing are skipped
                page = [
                    self._store.record(lb)
                    for lb in labels[start : start + batch_size].tolist()
                    if self._store.id_at(lb) is not None
                ]
            yield from page
