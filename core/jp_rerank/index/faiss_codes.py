"""Records encoded on one copy of a trained faiss index and added to another (:meth:`FaissIndex.encode`).

The expensive part of adding to an IVF-PQ index is finding each vector's list and PQ code; encoding runs that on
copies of the trained index in worker processes, and only the small codes travel to the process that adds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from jp_rerank.index.base import Batch
from jp_rerank.types import Metadata

__all__ = ["EncodedBatch", "check_codes", "encode_batch"]


@dataclass(frozen=True)
class EncodedBatch:
    """Records checked and encoded by :meth:`FaissIndex.encode`, ready for :meth:`FaissIndex.add_encoded`.

    Picklable and small (the codes of IVF-PQ are ``pq_m`` bytes plus the list number per record), so encoding can
    run in worker processes on copies of a trained index while one process adds the codes.

    Attributes:
        ids: Record ids, checked.
        texts: Record texts.
        metadatas: Checked metadata of each record.
        codes: IVF-PQ: the faiss standalone codes of the vectors (``sa_encode``); flat and HNSW, which store the
            vectors themselves: the checked (normalised) float32 vectors.
        refine_codes: Codes of the refine copy (``None`` without one).
    """

    ids: list[str]
    texts: list[str]
    metadatas: list[Metadata]
    codes: np.ndarray
    refine_codes: np.ndarray | None


def encode_batch(batch: Batch, index: Any, refine_index: Any, *, ivfpq: bool) -> EncodedBatch:
    """The codes of a checked batch: ``sa_encode`` of the IVF-PQ index and refine copy, else the vectors."""
    ids, texts, metas = list(batch.ids), list(batch.texts), list(batch.metadatas)
    if not ivfpq:
        return EncodedBatch(ids, texts, metas, batch.vectors, None)
    codes = np.asarray(index.sa_encode(batch.vectors))
    refine_codes = None if refine_index is None else np.asarray(refine_index.sa_encode(batch.vectors))
    return EncodedBatch(ids, texts, metas, codes, refine_codes)


def check_codes(encoded: EncodedBatch, *, width: int, refined: bool) -> None:
    """Refuse codes that do not fit the index: ``width`` bytes (or dimensions) each, a refine copy iff ``refined``.

    Raises:
        ValueError: If the codes were made by an index of another kind, other parameters or refine setting.
    """
    n = len(encoded.ids)
    if encoded.codes.shape != (n, width):
        raise ValueError(
            f"codes of shape {encoded.codes.shape} do not fit this index ({n} records of "
            f"width {width}); encode with a copy of this trained index"
        )
    if (encoded.refine_codes is not None) != refined:
        raise ValueError("the codes were made for an index with another refine setting")
