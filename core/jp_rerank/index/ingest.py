"""Streaming ingestion: embed and index a corpus from an iterator, one batch at a time.

Memory is bounded by one batch (its texts and their vectors), not by the corpus: records are pulled from the
iterator lazily, embedded with the caller's ``embed_documents`` and written to the index before the next batch is
read. The only exception is an index that must be trained first (IVF-PQ): then the first ``train_size`` records
are embedded and held until the index is trained on them, and streaming continues after that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np

from jp_rerank.checks import check_positive_int
from jp_rerank.index.base import Record, VectorIndex
from jp_rerank.types import MetadataValue

__all__ = ["EmbedDocuments", "IngestReport", "RecordLike", "ingest", "iter_batches"]

logger = logging.getLogger(__name__)

EmbedDocuments: TypeAlias = Callable[[list[str]], np.ndarray]
"""``embed_documents(texts) -> float32 array of shape (len(texts), dim)``, e.g. ``Embedder.embed_documents``."""

RecordLike: TypeAlias = (
    Record | tuple[str, str] | tuple[str, str, Mapping[str, MetadataValue] | None] | Mapping[str, Any]
)
"""A :class:`Record`, an ``(id, text)`` or ``(id, text, metadata)`` tuple, or a mapping with ``id``, ``text``
and optionally ``metadata`` keys."""


@dataclass(frozen=True)
class IngestReport:
    """What :func:`ingest` did.

    Attributes:
        n_records: Records written to the index.
        n_batches: Batches embedded and written.
        trained_on: Number of vectors the index was trained on (0 if it needed no training).
        seconds: Wall-clock time.

    Example:
        >>> IngestReport(n_records=3, n_batches=1, trained_on=0, seconds=0.1).n_records
        3
    """

    n_records: int
    n_batches: int
    trained_on: int
    seconds: float


def to_record(item: object, position: int) -> Record:
    """Turn one :data:`RecordLike` into a :class:`Record`.

    Raises:
        TypeError: If ``item`` has none of the accepted shapes (names its position in the stream).

    Example:
        >>> to_record(("d1", "本文", {"lang": "ja"}), 0)
        Record(id='d1', text='本文', metadata={'lang': 'ja'})
    """
    if isinstance(item, Record):
        return item
    if isinstance(item, Mapping):
        if "id" not in item or "text" not in item:
            raise TypeError(f"record {position} is a mapping without 'id' and 'text' keys: {sorted(item)}")
        return Record(item["id"], item["text"], dict(item.get("metadata") or {}))
    if isinstance(item, tuple) and len(item) in (2, 3):
        meta = item[2] if len(item) == 3 else None
        return Record(item[0], item[1], dict(meta or {}))
    raise TypeError(
        f"record {position} must be a Record, an (id, text[, metadata]) tuple or a mapping, got {type(item).__name__}"
    )


def iter_batches(records: Iterable[RecordLike], batch_size: int) -> Iterator[list[Record]]:
    """Group a stream of records into lists of at most ``batch_size``, reading the stream lazily.

    Example:
        >>> [len(b) for b in iter_batches([("a", "x"), ("b", "y"), ("c", "z")], 2)]
        [2, 1]
    """
    check_positive_int(batch_size, name="batch_size")
    batch: list[Record] = []
    for position, item in enumerate(records):
        batch.append(to_record(item, position))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _embed(embed_documents: EmbedDocuments, texts: list[str], dim: int) -> np.ndarray:
    vectors = np.asarray(embed_documents(texts))
    if vectors.ndim != 2 or vectors.shape != (len(texts), dim):
        raise ValueError(
            f"embed_documents returned shape {vectors.shape} for {len(texts)} texts; expected ({len(texts)}, {dim})"
        )
    return vectors


def _write(index: VectorIndex, mode: Literal["add", "upsert"], batch: Sequence[Record], vectors: np.ndarray) -> None:
    write = index.add if mode == "add" else index.upsert
    write([r.id for r in batch], vectors, [r.text for r in batch], [r.metadata for r in batch])


def ingest(
    index: VectorIndex,
    records: Iterable[RecordLike],
    embed_documents: EmbedDocuments,
    *,
    batch_size: int = 256,
    mode: Literal["add", "upsert"] = "add",
    train_size: int = 100_000,
    total: int | None = None,
    progress: bool = True,
) -> IngestReport:
    """Embed and index a stream of records, ``batch_size`` at a time, with a tqdm progress bar.

    Args:
        index: Any :class:`VectorIndex`.
        records: Iterable of :data:`RecordLike` (read once, lazily).
        embed_documents: Turns a list of texts into a float32 array ``(n, index.dim)`` (document side: use the
            embedder's document prompt, e.g. ``Embedder.embed_documents``).
        batch_size: Records per embedding call and index write.
        mode: ``"add"`` (an id already stored is an error) or ``"upsert"`` (replace it; safe to re-run).
        train_size: For an index that needs training (IVF-PQ): how many leading records to embed and train on
            before writing (these are held in memory; if the stream is shorter, all of it is used).
        total: Number of records, if known, for the progress bar.
        progress: Show a tqdm progress bar.

    Returns:
        An :class:`IngestReport`.

    Raises:
        ValueError: If ``embed_documents`` returns the wrong shape or non-finite values, or a batch is invalid
            (see :meth:`VectorIndex.add`). Batches written before the error stay in the index.

    Example:
        >>> import numpy as np
        >>> from jp_rerank.index import ExactIndex
        >>> def embed(texts):
        ...     return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)
        >>> index = ExactIndex(2)
        >>> ingest(index, [("a", "犬"), ("b", "猫です")], embed, progress=False).n_records
        2
    """
    from tqdm.auto import tqdm

    if mode not in ("add", "upsert"):
        raise ValueError(f"mode must be 'add' or 'upsert', got {mode!r}")
    check_positive_int(train_size, name="train_size")
    started = time.perf_counter()
    n_records = n_batches = trained_on = 0
    batches = iter_batches(records, batch_size)
    with tqdm(total=total, unit="doc", desc="indexing", disable=not progress) as bar:
        if index.needs_training:
            held: list[tuple[list[Record], np.ndarray]] = []
            n_held = 0
            for batch in batches:
                held.append((batch, _embed(embed_documents, [r.text for r in batch], index.dim)))
                n_held += len(batch)
                if n_held >= train_size:
                    break
            if not held:
                return IngestReport(0, 0, 0, time.perf_counter() - started)
            sample = np.concatenate([v for _, v in held])
            logger.info("training %s on %d vectors", type(index).__name__, sample.shape[0])
            index.train(sample)
            trained_on = sample.shape[0]
            del sample
            for batch, vectors in held:
                _write(index, mode, batch, vectors)
                n_records += len(batch)
                n_batches += 1
                bar.update(len(batch))
            held.clear()
        for batch in batches:
            _write(index, mode, batch, _embed(embed_documents, [r.text for r in batch], index.dim))
            n_records += len(batch)
            n_batches += 1
            bar.update(len(batch))
    return IngestReport(n_records, n_batches, trained_on, time.perf_counter() - started)
