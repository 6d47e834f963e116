"""What every search returns, how results are ordered, and the contract every first stage meets.

One hit type and one rule for the whole engine:

* :class:`SearchHit` (``id``, ``score``, ``text``, ``metadata``, and per-stage ``scores``) is returned by every
  search over a collection: vector indexes, BM25, SPLADE, the dense retriever, fusion and the two-stage pipeline.
* :class:`RerankResult` (``index``, ``score``) is returned when the caller hands over the list itself
  (``Reranker.rerank``): the position in that list is the passage's identity.
* **Ordering**: higher score first; equal scores by ascending id (for a :class:`RerankResult`, ascending index,
  i.e. input order); NaN scores last. Results therefore never depend on insertion or storage order, so a
  rebuilt or reloaded index answers exactly as the original. :func:`rank` implements it, once.
* :class:`FirstStage` is what a first-stage retriever offers: a ``name`` and ``search`` / ``search_many`` over
  query *text* with the same default ``k`` (:data:`jp_rerank.defaults.DEFAULT_K`).
  :class:`~jp_rerank.lexical.BM25Index`, :class:`~jp_rerank.index.SparseIndex` and
  :class:`~jp_rerank.pipeline.DenseRetriever` implement it (and :class:`FirstStageIndex`: ``add`` and ``save``);
  so can your own classes.

Example:
    >>> rank([0.2, 0.9, 0.9, float("nan")], ids=["d", "c", "a", "b"])
    [2, 1, 0, 3]
    >>> SearchHit("a", 0.9, "富士山", scores={"bm25": 12.5}).scores["bm25"]
    12.5
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from jp_rerank.defaults import DEFAULT_K
from jp_rerank.types import Metadata

__all__ = [
    "FIRST_STAGE",
    "RERANK",
    "FirstStage",
    "FirstStageIndex",
    "RerankResult",
    "SearchHit",
    "check_ranking",
    "rank",
    "rank_scores",
    "sort_hits",
]

FIRST_STAGE = "first_stage"
"""Key in :attr:`SearchHit.scores` of the (fused) first-stage score of a pipeline result."""

RERANK = "rerank"
"""Key in :attr:`SearchHit.scores` of the cross-encoder score of a pipeline result."""


@dataclass(frozen=True)
class SearchHit:
    """One passage found by a search.

    Attributes:
        id: Id of the stored passage.
        score: The score it was ranked by (higher is better): a similarity, a BM25 score, a fused score or a
            reranker score. A plain Python float.
        text: The passage text (what a reranker reads).
        metadata: A copy of the passage's metadata (changing it changes nothing stored).
        scores: Per-stage scores behind ``score``, by stage name (e.g. ``{"bm25": 12.1, "dense": 0.83}`` after
            fusion, ``{"first_stage": 0.033, "rerank": 0.91}`` from the pipeline); empty for a single search.

    Example:
        >>> hit = SearchHit("d1", 0.91, "富士山は日本一高い山です。", scores={"first_stage": 0.03, "rerank": 0.91})
        >>> hit.first_stage_score, hit.rerank_score
        (0.03, 0.91)
    """

    id: str
    score: float
    text: str = ""
    metadata: Metadata = field(default_factory=dict, hash=False)
    scores: Mapping[str, float] = field(default_factory=dict, hash=False)

    @property
    def first_stage_score(self) -> float:
        """The first-stage score: ``scores["first_stage"]`` when a pipeline set it, else ``score``."""
        return float(self.scores.get(FIRST_STAGE, self.score))

    @property
    def rerank_score(self) -> float | None:
        """The cross-encoder score when a reranker ran (``scores["rerank"]``), else ``None``."""
        value = self.scores.get(RERANK)
        return None if value is None else float(value)


@dataclass(frozen=True)
class RerankResult:
    """One reranked document: its position in the caller's list and its relevance score.

    Attributes:
        index: Position of the document in the list passed to ``rerank``.
        score: The score results are ranked by (a plain Python float; higher is more relevant): the reranker's, or
            with fusion the combined score.
        rerank_score: With fusion, the cross-encoder's own score; else ``None``.
        first_stage_score: With fusion, the score the document arrived with (``None`` when it had none).

    Example:
        >>> RerankResult(index=2, score=0.93)
        RerankResult(index=2, score=0.93)
        >>> RerankResult(index=0, score=0.7, rerank_score=0.9, first_stage_score=12.5).rerank_score
        0.9
    """

    index: int
    score: float
    rerank_score: float | None = None
    first_stage_score: float | None = None

    def __repr__(self) -> str:
        extra = "".join(
            f", {name}={value!r}"
            for name, value in (("rerank_score", self.rerank_score), ("first_stage_score", self.first_stage_score))
            if value is not None
        )
        return f"RerankResult(index={self.index!r}, score={self.score!r}{extra})"


def check_ranking(top_n: object = None, score_threshold: object = None) -> tuple[int | None, float | None]:
    """Check the ranking arguments of a call before any work: ``top_n`` and ``score_threshold``.

    Args:
        top_n: ``None`` or a positive int (numpy integers accepted).
        score_threshold: ``None`` or a number that is not NaN (no score would ever pass NaN, silently).

    Returns:
        ``top_n`` as an ``int`` (or ``None``) and the threshold as a ``float`` (or ``None``).

    Raises:
        TypeError: A ``top_n`` that is not an int, or a threshold that is not a number.
        ValueError: A ``top_n`` that is not positive, or a NaN threshold.

    Example:
        >>> check_ranking(3, 0.5)
        (3, 0.5)
    """
    if top_n is not None:
        if isinstance(top_n, bool) or not isinstance(top_n, int | np.integer):
            raise TypeError(f"top_n must be an int or None, got {type(top_n).__name__}")
        if top_n <= 0:
            raise ValueError(f"top_n must be a positive integer or None, got {top_n}")
        top_n = int(top_n)
    if score_threshold is not None:
        if isinstance(score_threshold, bool) or not isinstance(score_threshold, numbers.Real):
            raise TypeError(f"score_threshold must be a number or None, got {score_threshold!r}")
        if math.isnan(score_threshold):
            raise ValueError("score_threshold must not be NaN")
        score_threshold = float(score_threshold)
    return top_n, score_threshold


def rank(
    scores: Sequence[float] | np.ndarray,
    k: int | None = None,
    *,
    ids: Sequence[str] | Callable[[int], str] | None = None,
    min_score: float | None = None,
    strict: bool = False,
) -> list[int]:
    """Return positions of ``scores`` in result order: score descending, ties by ascending id, NaN last.

    The one ranking rule of the engine (see the module notes). Work is ``O(n)`` plus a sort of the ``k`` best
    (and of every candidate tied with the ``k``-th, so that the tie-break is exact).

    Args:
        scores: One score per candidate.
        k: Keep at most this many (``None``: all).
        ids: Tie-break key of each candidate, as a sequence or a function of the position (called only for the
            few candidates near the top); default: the position itself, i.e. input order.
        min_score: Keep only scores ``>= min_score`` (``> min_score`` when ``strict``); NaN never passes.
        strict: Whether ``min_score`` itself is excluded.

    Returns:
        Candidate positions, best first.

    Example:
        >>> rank([0.5, 0.9, 0.9], 2, ids=["a", "c", "b"])
        [2, 1]
        >>> rank([3.0, 0.0, 1.0], min_score=0.0, strict=True)
        [0, 2]
    """
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    positions = np.arange(values.size)
    if min_score is not None:
        with np.errstate(invalid="ignore"):
            keep = values > min_score if strict else values >= min_score
        positions = positions[keep]
    if positions.size == 0:
        return []
    nan = np.isnan(values[positions])
    keys = np.where(nan, -np.inf, values[positions])
    if k is not None and k < positions.size:
        cut = positions.size - k
        kth = np.partition(keys, cut)[cut]
        near = keys >= kth  # every candidate tied with the k-th stays, so the tie-break below is exact
        positions, keys, nan = positions[near], keys[near], nan[near]
    if ids is None:
        tie = positions
    else:
        id_of = ids if callable(ids) else ids.__getitem__
        keys_of_ties = np.asarray([id_of(p) for p in positions.tolist()], dtype=object)
        tie = np.argsort(np.argsort(keys_of_ties, kind="stable"), kind="stable")
    order = np.lexsort((tie, nan, -keys))
    if k is not None:
        order = order[:k]
    return [int(p) for p in positions[order]]


def rank_scores(
    scores: Sequence[float] | np.ndarray,
    *,
    top_n: int | None = None,
    score_threshold: float | None = None,
) -> list[RerankResult]:
    """Rank a caller's list by score (:func:`rank` with positions as ids), keep ``top_n`` above the threshold.

    NaN scores sort last and never pass a threshold.

    Args:
        scores: One score per document, in input order.
        top_n: Keep at most this many (``None`` keeps all).
        score_threshold: Keep only scores ``>= score_threshold``.

    Returns:
        Results sorted by descending score (ties: lower index first).

    Raises:
        ValueError: If ``top_n`` is not positive or the threshold is NaN.

    Example:
        >>> rank_scores([0.1, 0.9, 0.5], top_n=2)
        [RerankResult(index=1, score=0.9), RerankResult(index=2, score=0.5)]
    """
    top_n, score_threshold = check_ranking(top_n, score_threshold)
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    return [RerankResult(index=i, score=float(values[i])) for i in rank(values, top_n, min_score=score_threshold)]


def sort_hits(hits: Sequence[SearchHit], k: int | None = None) -> list[SearchHit]:
    """Return ``hits`` in result order (score descending, ties by ascending id), at most ``k`` of them.

    Example:
        >>> [h.id for h in sort_hits([SearchHit("b", 1.0), SearchHit("a", 1.0), SearchHit("c", 2.0)])]
        ['c', 'a', 'b']
    """
    items = list(hits)
    return [items[i] for i in rank([h.score for h in items], k, ids=[h.id for h in items])]


@runtime_checkable
class FirstStage(Protocol):
    """A first-stage retriever: finds up to ``k`` candidate passages for query text, best first.

    ``search_many`` returns one list per query, each equal to ``search(query, k)`` (batched encoding). Hits are
    :class:`SearchHit` objects (or anything with ``id``, ``score``, ``text`` and ``metadata``) ordered by the
    module's rule.
    """

    @property
    def name(self) -> str:
        """Short unique name (``"dense"``, ``"sparse"``, ``"bm25"``...): the key of its scores and timings."""
        ...

    def search(self, query: str, k: int = DEFAULT_K) -> list[SearchHit]:
        """Return at most ``k`` hits for one query, best first."""
        ...

    def search_many(self, queries: Sequence[str], k: int = DEFAULT_K) -> list[list[SearchHit]]:
        """Return, for each query, at most ``k`` hits sorted best first."""
        ...


@runtime_checkable
class FirstStageIndex(FirstStage, Protocol):
    """A first stage that also stores passages: ``add`` them by text and ``save`` an atomic snapshot."""

    def __len__(self) -> int:
        """Number of stored passages."""
        ...

    def add(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, object] | None] | None = None,
    ) -> list[str]:
        """Store passages (default ids continue ``"0"``, ``"1"``...); return their ids."""
        ...

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write an atomic snapshot into the folder ``path``; return the snapshot folder."""
        ...
