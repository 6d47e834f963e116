"""The faiss structures behind :class:`~jp_rerank.index.FaissIndex`: kinds, refine copies, sizes and training.

faiss is imported on first use (``pip install "jp-rerank[faiss]"``). All kinds search by inner product.

========  ===============================================  =========================================
kind      what it is                                       deletes
========  ===============================================  =========================================
flat      exact brute force (same results as ExactIndex)   removed from faiss at once
hnsw      HNSW graph over full vectors; ``ef_search``       marked deleted and skipped by searches;
          trades speed for recall per query                 :meth:`FaissIndex.compact` rebuilds
ivfpq     inverted lists + product quantisation, trained   removed from faiss at once
          on a sample (:func:`train_ivfpq`); ``nprobe``
          trades speed for recall; ~``pq_m`` bytes per
          vector
========  ===============================================  =========================================

PQ codes are lossy: at a few bytes per vector, recall@100 stops rising with ``nprobe`` well below 1 because the
approximate scores misorder close neighbours. ``refine="flat"`` or ``refine="sq8"`` keeps a second copy of every
vector (float32, or 8-bit scalar-quantised with a per-dimension range learnt in training) and re-scores the
best ``k * refine_factor`` IVF-PQ candidates with it, like faiss's ``IndexRefine``; returned scores are then the
refine copy's inner products (exact for ``"flat"``).

Bytes per vector held by faiss (the document store, and the slack of arrays grown by doubling, come on top):

============  ==========================================  ===================
index         bytes per vector                            384-d, ``pq_m=48``
============  ==========================================  ===================
flat          ``4*dim`` + ~50 (id map and reverse map)    ~1,590
ivfpq         ``pq_m`` + 8 (id in the inverted list)      56
ivfpq + sq8   ``pq_m + 8`` + ``dim`` + 8 (label array)    448
ivfpq + flat  ``pq_m + 8`` + ``4*dim`` + 8                1,600
============  ==========================================  ===================

"sq8" keeps about a quarter of the memory of a flat index; "flat" only buys speed, not memory.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

import numpy as np

from jp_rerank.extras import require

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "DEFAULT_PQ_NBITS",
    "FAISS_KINDS",
    "FAISS_REFINES",
    "FaissKind",
    "FaissRefine",
    "default_nlist",
    "default_pq_m",
    "faiss_module",
    "min_train_size",
    "new_faiss_index",
    "new_refine_index",
    "train_ivfpq",
]

logger = logging.getLogger(__name__)

FaissKind: TypeAlias = Literal["flat", "hnsw", "ivfpq"]
"""Exact brute force, HNSW graph, or inverted lists + product quantisation (trained first)."""
FAISS_KINDS: tuple[str, ...] = get_args(FaissKind)
FaissRefine: TypeAlias = Literal["none", "flat", "sq8"]
"""Second copy of the vectors that re-scores IVF-PQ candidates: none, float32, or 8-bit scalar-quantised."""
FAISS_REFINES: tuple[str, ...] = get_args(FaissRefine)
DEFAULT_PQ_NBITS = 8
"""Bits per PQ code (256 centroids per sub-quantiser)."""


def faiss_module() -> ModuleType:
    """The ``faiss`` module, or an ``ImportError`` naming the extra to install."""
    return require("faiss", "faiss")


def default_nlist(n_train: int) -> int:
    """Number of IVF lists chosen when ``nlist`` is not given: about ``4 * sqrt(n)``, >= 39 training points each.

    Example:
        >>> default_nlist(100_000)
        1265
    """
    return max(1, min(round(4 * math.sqrt(n_train)), n_train // 39))


def default_pq_m(dim: int) -> int:
    """Number of PQ sub-quantisers chosen when ``pq_m`` is not given: the largest divisor of ``dim`` <= dim / 8.

    Example:
        >>> default_pq_m(384)
        48
    """
    for m in range(max(1, dim // 8), 0, -1):
        if dim % m == 0:
            return m
    return 1


def min_train_size(nlist: int | None = None, pq_nbits: int = DEFAULT_PQ_NBITS) -> int:
    """Fewest vectors an IVF-PQ index can be trained on: one per list and one per PQ centroid.

    Args:
        nlist: IVF lists (``None``: :func:`default_nlist` of the sample, never more than the sample).
        pq_nbits: Bits per PQ code.

    Example:
        >>> min_train_size(), min_train_size(nlist=1024)
        (256, 1024)
    """
    return max(nlist or 1, 2**pq_nbits)


def new_faiss_index(
    kind: FaissKind, dim: int, *, nlist: int | None, pq_m: int, pq_nbits: int, hnsw_m: int, ef_construction: int
) -> Any:
    """An empty faiss index of ``kind`` (IVF-PQ: untrained, ``nlist`` lists) that searches by inner product."""
    faiss = faiss_module()
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if kind == "hnsw":
        graph = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = ef_construction
        return faiss.IndexIDMap2(graph)
    assert nlist is not None
    return _new_ivfpq_index(dim, nlist=nlist, pq_m=pq_m, pq_nbits=pq_nbits)


def _new_ivfpq_index(dim: int, *, nlist: int, pq_m: int, pq_nbits: int) -> Any:
    """An empty, untrained IVF-PQ index of ``nlist`` lists that searches by inner product."""
    faiss = faiss_module()
    return faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, pq_m, pq_nbits, faiss.METRIC_INNER_PRODUCT)


def new_refine_index(refine: FaissRefine, dim: int) -> Any:
    """An empty refine copy: float32 (``"flat"``) or 8-bit scalar-quantised (``"sq8"``, trained first)."""
    faiss = faiss_module()
    if refine == "flat":
        return faiss.IndexFlatIP(dim)
    return faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)


def train_ivfpq(
    vectors: np.ndarray, *, nlist: int | None, pq_m: int, pq_nbits: int, refine: FaissRefine
) -> tuple[Any, int, Any]:
    """Train an empty IVF-PQ index, and its refine copy, on the float32 ``(n, dim)`` sample ``vectors``.

    Args:
        vectors: Training sample.
        nlist: IVF lists (``None``: :func:`default_nlist` of the sample size).
        pq_m: PQ sub-quantisers.
        pq_nbits: Bits per PQ code.
        refine: Refine copy to train beside it.

    Returns:
        The trained index, its number of lists, and the trained refine copy (``None`` for ``refine="none"``).

    Raises:
        ValueError: If the sample is smaller than :func:`min_train_size`.
    """
    n, dim = vectors.shape
    nlist = nlist or default_nlist(n)
    if n < min_train_size(nlist, pq_nbits):
        raise ValueError(
            f"training IVF-PQ needs at least max(nlist={nlist}, 2**pq_nbits={2**pq_nbits}) vectors, got {n}"
        )
    if n < 39 * nlist:
        logger.warning("training %d IVF lists on %d vectors; faiss advises >= %d", nlist, n, 39 * nlist)
    index = _new_ivfpq_index(dim, nlist=nlist, pq_m=pq_m, pq_nbits=pq_nbits)
    index.train(vectors)
    refine_index = None
    if refine != "none":
        refine_index = new_refine_index(refine, dim)
        refine_index.train(vectors)  # sq8: per-dimension ranges; flat: no-op
    return index, nlist, refine_index
