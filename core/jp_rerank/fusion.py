"""Fusing several rankings of the same passages into one: reciprocal rank fusion and weighted score fusion.

Both functions take one ranking per first-stage retriever (dense, sparse, BM25...), best first, and return
:class:`FusedHit` objects sorted by descending fused score. An id may appear in only some of the rankings.

Conventions, all checked by the tests:

* **Reciprocal rank fusion** (Cormack et al., 2009): ``score(d) = sum_i w_i / (k + rank_i(d))`` with 1-based
  ranks, over the rankings that contain ``d`` (an absent id contributes nothing). ``k`` defaults to 60.
* **Weighted score fusion**: each ranking's scores are normalised, then ``score(d) = sum_i w_i * norm_i(d)``.

  - ``"minmax"``: ``(s - min) / (max - min)`` into [0, 1]; when all scores of a ranking are equal they all get
    1.0. An id absent from a ranking gets 0.0 from it.
  - ``"zscore"``: ``(s - mean) / std`` (population std); when all scores are equal they all get 0.0. An id absent
    from a ranking gets that ranking's lowest z-score (it ranked below everything that was returned).

* **Weights** default to 1 for every ranking; they must be finite and ``>= 0`` with at least one positive.
* **Ties** in the fused score are broken by first appearance: ids are ordered as they are first met when reading
  the rankings one after another (the whole first ranking in order, then the ids new in the second, ...).
  The result is therefore fully deterministic and independent of hashing.
* An id repeated within one ranking, a non-string id, or a non-finite score raises ``ValueError``/``TypeError``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from jp_rerank._validate import check_positive_int

__all__ = ["FusedHit", "Normalization", "reciprocal_rank_fusion", "weighted_score_fusion"]

Normalization = Literal["minmax", "zscore"]


@dataclass(frozen=True)
class FusedHit:
    """One fused result.

    Attributes:
        id: Passage id.
        score: Fused score (a plain float; higher is better).
        ranks: The id's 1-based rank in each input ranking, ``None`` where it is absent.

    Example:
        >>> FusedHit(id="doc-1", score=0.0325, ranks=(1, None))
        FusedHit(id='doc-1', score=0.0325, ranks=(1, None))
    """

    id: str
    score: float
    ranks: tuple[int | None, ...]


def _check_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0] * n
    if isinstance(weights, str) or not isinstance(weights, Sequence):
        raise TypeError(f"weights must be a sequence of numbers, got {type(weights).__name__}")
    if len(weights) != n:
        raise ValueError(f"got {n} rankings but {len(weights)} weights")
    out: list[float] = []
    for i, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, numbers.Real):
            raise TypeError(f"weights[{i}] must be a number, got {type(w).__name__}")
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"weights[{i}] must be finite and >= 0, got {w!r}")
        out.append(float(w))
    if n and not any(out):
        raise ValueError("at least one weight must be positive")
    return out


def _check_ids(ranking: object, i: int) -> list[str]:
    if isinstance(ranking, str | bytes) or not isinstance(ranking, Sequence):
        raise TypeError(f"rankings[{i}] must be a sequence of ids, got {type(ranking).__name__}")
    ids = list(ranking)
    seen: set[str] = set()
    for j, doc_id in enumerate(ids):
        if not isinstance(doc_id, str):
            raise TypeError(f"rankings[{i}][{j}] must be a str id, got {type(doc_id).__name__}")
        if doc_id in seen:
            raise ValueError(f"rankings[{i}] lists id {doc_id!r} more than once")
        seen.add(doc_id)
    return ids


def _check_rankings(rankings: object) -> list[object]:
    if isinstance(rankings, str | bytes) or not isinstance(rankings, Sequence):
        raise TypeError(f"rankings must be a sequence of rankings, got {type(rankings).__name__}")
    return list(rankings)


def _finish(totals: dict[str, float], ranks: dict[str, list[int | None]], top_n: int | None) -> list[FusedHit]:
    # dicts keep insertion order = first appearance; sorted() is stable, so ties keep that order
    order = sorted(totals, key=lambda doc_id: -totals[doc_id])
    if top_n is not None:
        order = order[:top_n]
    return [FusedHit(id=doc_id, score=float(totals[doc_id]), ranks=tuple(ranks[doc_id])) for doc_id in order]


def _rank_table(id_lists: list[list[str]]) -> dict[str, list[int | None]]:
    ranks: dict[str, list[int | None]] = {}
    for i, ids in enumerate(id_lists):
        for rank, doc_id in enumerate(ids, 1):
            ranks.setdefault(doc_id, [None] * len(id_lists))[i] = rank
    return ranks


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]],
    *,
    k: float = 60,
    weights: Sequence[float] | None = None,
    top_n: int | None = None,
) -> list[FusedHit]:
    """Fuse rankings of ids by reciprocal rank: ``sum_i w_i / (k + rank_i)``.

    Args:
        rankings: One list of ids per retriever, best first.
        k: Rank offset (``>= 0``); larger values flatten the difference between top and lower ranks.
        weights: One non-negative weight per ranking (default: all 1).
        top_n: Keep the best ``top_n`` (``None``: all).

    Returns:
        Fused hits sorted by descending score; ties in first-appearance order (see the module notes).

    Raises:
        ValueError: An id repeated in a ranking, ``k < 0``, bad weights or ``top_n <= 0``.
        TypeError: A ranking that is not a sequence of str ids.

    Example:
        >>> [(h.id, round(h.score, 5)) for h in reciprocal_rank_fusion([["a", "b"], ["b", "c"]], k=1)]
        [('b', 0.83333), ('a', 0.5), ('c', 0.33333)]
    """
    items = _check_rankings(rankings)
    if isinstance(k, bool) or not isinstance(k, numbers.Real) or not math.isfinite(k) or k < 0:
        raise ValueError(f"k must be a finite number >= 0, got {k!r}")
    if top_n is not None:
        check_positive_int(top_n, name="top_n")
    id_lists = [_check_ids(ranking, i) for i, ranking in enumerate(items)]
    w = _check_weights(weights, len(id_lists))
    ranks = _rank_table(id_lists)
    totals = {
        doc_id: math.fsum(w[i] / (k + r) for i, r in enumerate(doc_ranks) if r is not None)
        for doc_id, doc_ranks in ranks.items()
    }
    return _finish(totals, ranks, top_n)


def _normalise(scores: list[float], method: Normalization) -> tuple[list[float], float]:
    """Return the normalised scores of one ranking and the value an absent id gets from it."""
    lo, hi = min(scores), max(scores)
    if method == "minmax":
        if hi == lo:
            return [1.0] * len(scores), 0.0
        return [(s - lo) / (hi - lo) for s in scores], 0.0
    mean = math.fsum(scores) / len(scores)
    std = math.sqrt(math.fsum((s - mean) ** 2 for s in scores) / len(scores))
    if std == 0:
        return [0.0] * len(scores), 0.0
    z = [(s - mean) / std for s in scores]
    return z, min(z)


def weighted_score_fusion(
    rankings: Sequence[Sequence[tuple[str, float]]],
    *,
    weights: Sequence[float] | None = None,
    normalization: Normalization = "minmax",
    top_n: int | None = None,
) -> list[FusedHit]:
    """Fuse scored rankings by a weighted sum of per-ranking normalised scores.

    Args:
        rankings: One list of ``(id, score)`` per retriever, best first (the order gives :attr:`FusedHit.ranks`).
        weights: One non-negative weight per ranking (default: all 1).
        normalization: ``"minmax"`` or ``"zscore"`` (see the module notes for equal scores and absent ids).
        top_n: Keep the best ``top_n`` (``None``: all).

    Returns:
        Fused hits sorted by descending score; ties in first-appearance order.

    Raises:
        ValueError: An id repeated in a ranking, a non-finite score, bad weights, an unknown normalisation or
            ``top_n <= 0``.
        TypeError: A ranking that is not a sequence of ``(str, number)`` pairs.

    Example:
        >>> hits = weighted_score_fusion([[("a", 3.0), ("b", 1.0)], [("b", 0.9), ("c", 0.5)]])
        >>> [(h.id, h.score) for h in hits]
        [('a', 1.0), ('b', 1.0), ('c', 0.0)]
    """
    items = _check_rankings(rankings)
    if normalization not in ("minmax", "zscore"):
        raise ValueError(f"normalization must be 'minmax' or 'zscore', got {normalization!r}")
    if top_n is not None:
        check_positive_int(top_n, name="top_n")
    id_lists: list[list[str]] = []
    score_lists: list[list[float]] = []
    for i, ranking in enumerate(items):
        if isinstance(ranking, str | bytes) or not isinstance(ranking, Sequence):
            raise TypeError(f"rankings[{i}] must be a sequence of (id, score) pairs, got {type(ranking).__name__}")
        ids, scores = [], []
        for j, pair in enumerate(ranking):
            if not isinstance(pair, Sequence) or isinstance(pair, str | bytes) or len(pair) != 2:
                raise TypeError(f"rankings[{i}][{j}] must be an (id, score) pair, got {pair!r}")
            doc_id, score = pair
            if isinstance(score, bool) or not isinstance(score, numbers.Real):
                raise TypeError(f"rankings[{i}][{j}] score must be a number, got {type(score).__name__}")
            if not math.isfinite(score):
                raise ValueError(f"rankings[{i}][{j}] has a non-finite score {score!r}")
            ids.append(doc_id)
            scores.append(float(score))
        id_lists.append(_check_ids(ids, i))
        score_lists.append(scores)
    w = _check_weights(weights, len(id_lists))
    ranks = _rank_table(id_lists)
    per_ranking: list[tuple[dict[str, float], float]] = []
    for ids, scores in zip(id_lists, score_lists, strict=True):
        if not ids:
            per_ranking.append(({}, 0.0))
            continue
        normed, absent = _normalise(scores, normalization)
        per_ranking.append((dict(zip(ids, normed, strict=True)), absent))
    totals = {
        doc_id: math.fsum(w[i] * table.get(doc_id, absent) for i, (table, absent) in enumerate(per_ranking))
        for doc_id in ranks
    }
    return _finish(totals, ranks, top_n)
