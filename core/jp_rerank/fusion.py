"""Fusing several rankings of the same passages into one: reciprocal rank fusion and weighted score fusion.

Both functions take one ranking per retriever (dense, sparse, BM25..., or a reranker against its first stage),
best first, and return :class:`~jp_rerank.hits.SearchHit` objects sorted by the fused score. An id may appear in
only some of the rankings. A ranking is a sequence of hits (anything with ``id`` and ``score``, and optionally
``text`` and ``metadata``: :class:`~jp_rerank.hits.SearchHit`), of ``(id, score)`` pairs, or — for reciprocal
rank fusion, which needs no scores — of plain ``str`` ids.

Conventions, all checked by the tests:

* **Reciprocal rank fusion** (Cormack et al., 2009): ``score(d) = sum_i w_i / (k + rank_i(d))`` with 1-based
  ranks, over the rankings that contain ``d`` (an absent id contributes nothing). ``k`` defaults to 60.
* **Weighted score fusion**: each ranking's scores are normalised, then ``score(d) = sum_i w_i * norm_i(d)``.

  - ``"minmax"``: ``(s - min) / (max - min)`` into [0, 1]; when all scores of a ranking are equal they all get
    1.0. An id absent from a ranking gets 0.0 from it.
  - ``"zscore"``: ``(s - mean) / std`` (population std); when all scores are equal they all get 0.0. An id absent
    from a ranking gets that ranking's lowest z-score (it ranked below everything that was returned).

* **Weights** default to 1 for every ranking; they must be finite and ``>= 0`` with at least one positive.
* **Results**: each hit's ``scores`` maps a ranking's name (``names``, default ``"0"``, ``"1"``...) to the score the
  id had there (rankings of plain ids record none); ``text`` and ``metadata`` come from the first ranking that
  holds the id with them. Ties in the fused score follow the engine's one rule: ascending id
  (:func:`jp_rerank.hits.rank`).
* An id repeated within one ranking, a non-string id, or a non-finite score raises ``ValueError``/``TypeError``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from jp_rerank.checks import check_positive_int
from jp_rerank.hits import RerankResult, SearchHit, rank, rank_scores
from jp_rerank.types import Metadata

__all__ = [
    "FIRST_STAGE_KEYS",
    "Normalization",
    "RerankFusion",
    "RerankFusionMethod",
    "as_first_stage_score",
    "check_weights",
    "first_stage_score",
    "reciprocal_rank_fusion",
    "weighted_score_fusion",
]

Normalization = Literal["minmax", "zscore"]

RankingItem = str | tuple[str, float] | SearchHit
"""One entry of a ranking: a hit, an ``(id, score)`` pair, or (reciprocal rank fusion only) a ``str`` id."""


def as_first_stage_score(value: object) -> float | None:
    """The first-stage score a caller's object carries, as a float; ``None`` for anything that is not one.

    Real numbers (numpy's too) that are finite count; ``None``, ``bool``, strings, NaN and infinities do not (a
    document with such a value is treated as one that arrived without a score).

    Example:
        >>> as_first_stage_score(3), as_first_stage_score("3"), as_first_stage_score(float("nan"))
        (3.0, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


FIRST_STAGE_KEYS = ("first_stage_score", "relevance_score", "score")
"""Keys looked up, in order, for the score a document arrived with (its metadata, or a request's item)."""


def first_stage_score(fields: Mapping[str, object], keys: Sequence[str] = FIRST_STAGE_KEYS) -> float | None:
    """The first usable score under ``keys`` in ``fields`` (:func:`as_first_stage_score`); ``None`` if none.

    Example:
        >>> first_stage_score({"relevance_score": 0.8, "source": "a"}), first_stage_score({"score": "high"})
        (0.8, None)
    """
    for key in keys:
        score = as_first_stage_score(fields.get(key))
        if score is not None:
            return score
    return None


def check_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    """Return one weight per ranking: finite, ``>= 0``, at least one positive (default all 1).

    Raises:
        TypeError: If ``weights`` is not a sequence of numbers.
        ValueError: If the count differs from ``n`` or a weight is negative or not finite, or all are 0.

    Example:
        >>> check_weights(None, 2)
        [1.0, 1.0]
    """
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


def _check_names(names: Sequence[str] | None, n: int) -> list[str]:
    if names is None:
        return [str(i) for i in range(n)]
    out = list(names)
    if len(out) != n or len(set(out)) != n or not all(isinstance(x, str) and x for x in out):
        raise ValueError(f"names must be {n} distinct non-empty strings, one per ranking, got {out!r}")
    return out


def _parse(
    rankings: object, *, scores_needed: bool
) -> tuple[list[list[str]], list[list[float] | None], dict[str, tuple[str, Metadata]]]:
    """Split rankings into id lists, score lists (``None`` for plain ids) and the first text/metadata per id."""
    if isinstance(rankings, str | bytes) or not isinstance(rankings, Sequence):
        raise TypeError(f"rankings must be a sequence of rankings, got {type(rankings).__name__}")
    id_lists: list[list[str]] = []
    score_lists: list[list[float] | None] = []
    documents: dict[str, tuple[str, Metadata]] = {}
    for i, ranking in enumerate(rankings):
        if isinstance(ranking, str | bytes) or not isinstance(ranking, Sequence):
            raise TypeError(f"rankings[{i}] must be a sequence of ids, pairs or hits, got {type(ranking).__name__}")
        ids: list[str] = []
        scores: list[float] = []
        seen: set[str] = set()
        for j, item in enumerate(ranking):
            doc_id, score = _item(item, i, j, scores_needed=scores_needed)
            if doc_id in seen:
                raise ValueError(f"rankings[{i}] lists id {doc_id!r} more than once")
            seen.add(doc_id)
            ids.append(doc_id)
            if score is not None:
                scores.append(score)
            text = getattr(item, "text", None)
            if isinstance(text, str) and doc_id not in documents:
                documents[doc_id] = (text, dict(getattr(item, "metadata", None) or {}))
        if scores and len(scores) != len(ids):
            raise TypeError(f"rankings[{i}] mixes plain ids with scored entries")
        id_lists.append(ids)
        score_lists.append(scores if ids and scores else None)
    return id_lists, score_lists, documents


def _item(item: object, i: int, j: int, *, scores_needed: bool) -> tuple[str, float | None]:
    if isinstance(item, str):
        if scores_needed:
            raise TypeError(f"rankings[{i}][{j}] must be an (id, score) pair or a hit, got {item!r}")
        return item, None
    if isinstance(item, tuple | list):
        if len(item) != 2:
            raise TypeError(f"rankings[{i}][{j}] must be an (id, score) pair, got {item!r}")
        doc_id, score = item
    elif hasattr(item, "id") and hasattr(item, "score"):
        doc_id, score = item.id, item.score
    else:
        what = "an (id, score) pair or a hit" if scores_needed else "a str id"
        raise TypeError(f"rankings[{i}][{j}] must be {what}, got {type(item).__name__}")
    if not isinstance(doc_id, str):
        raise TypeError(f"rankings[{i}][{j}] must be a str id, got {type(doc_id).__name__}")
    if isinstance(score, bool) or not isinstance(score, numbers.Real):
        raise TypeError(f"rankings[{i}][{j}] score must be a number, got {type(score).__name__}")
    if not math.isfinite(score):
        raise ValueError(f"rankings[{i}][{j}] has a non-finite score {score!r}")
    return doc_id, float(score)


def _hits(
    totals: dict[str, float],
    id_lists: list[list[str]],
    score_lists: list[list[float] | None],
    names: list[str],
    documents: dict[str, tuple[str, Metadata]],
    top_n: int | None,
) -> list[SearchHit]:
    per_id: dict[str, dict[str, float]] = {doc_id: {} for doc_id in totals}
    for name, ids, scores in zip(names, id_lists, score_lists, strict=True):
        if scores is not None:
            for doc_id, score in zip(ids, scores, strict=True):
                per_id[doc_id][name] = score
    order = list(totals)
    best = rank([totals[d] for d in order], top_n, ids=order)
    out = []
    for position in best:
        doc_id = order[position]
        text, metadata = documents.get(doc_id, ("", {}))
        out.append(SearchHit(doc_id, float(totals[doc_id]), text, dict(metadata), per_id[doc_id]))
    return out


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[RankingItem]],
    *,
    k: float = 60,
    weights: Sequence[float] | None = None,
    top_n: int | None = None,
    names: Sequence[str] | None = None,
) -> list[SearchHit]:
    """Fuse rankings by reciprocal rank: ``sum_i w_i / (k + rank_i)``.

    Args:
        rankings: One ranking per retriever, best first: ids, ``(id, score)`` pairs or hits.
        k: Rank offset (``>= 0``); larger values flatten the difference between top and lower ranks.
        weights: One non-negative weight per ranking (default: all 1).
        top_n: Keep the best ``top_n`` (``None``: all).
        names: One name per ranking, the keys of each hit's ``scores`` (default ``"0"``, ``"1"``...).

    Returns:
        Fused hits sorted by descending score, ties by ascending id.

    Raises:
        ValueError: An id repeated in a ranking, ``k < 0``, bad weights or names, or ``top_n <= 0``.
        TypeError: A ranking that is not a sequence of ids, pairs or hits.

    Example:
        >>> [(h.id, round(h.score, 5)) for h in reciprocal_rank_fusion([["a", "b"], ["b", "c"]], k=1)]
        [('b', 0.83333), ('a', 0.5), ('c', 0.33333)]
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Real) or not math.isfinite(k) or k < 0:
        raise ValueError(f"k must be a finite number >= 0, got {k!r}")
    if top_n is not None:
        check_positive_int(top_n, name="top_n")
    id_lists, score_lists, documents = _parse(rankings, scores_needed=False)
    w = check_weights(weights, len(id_lists))
    labels = _check_names(names, len(id_lists))
    parts: dict[str, list[float]] = {}
    for weight, ids in zip(w, id_lists, strict=True):
        for position, doc_id in enumerate(ids, 1):
            parts.setdefault(doc_id, []).append(weight / (k + position))
    totals = {doc_id: math.fsum(values) for doc_id, values in parts.items()}
    return _hits(totals, id_lists, score_lists, labels, documents, top_n)


_RESCALE_ABOVE = 1e150


def _normalise(scores: list[float], method: Normalization) -> tuple[list[float], float]:
    """Return the normalised scores of one ranking and the value an absent id gets from it.

    Both normalisations ignore the scale, so scores near the float limit (1e300, where ``hi - lo`` or a squared
    deviation overflows) are first divided by their largest magnitude.
    """
    magnitude = max(abs(s) for s in scores)
    if magnitude > _RESCALE_ABOVE:
        scores = [s / magnitude for s in scores]
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
    rankings: Sequence[Sequence[tuple[str, float] | SearchHit]],
    *,
    weights: Sequence[float] | None = None,
    normalization: Normalization = "minmax",
    top_n: int | None = None,
    names: Sequence[str] | None = None,
) -> list[SearchHit]:
    """Fuse scored rankings by a weighted sum of per-ranking normalised scores.

    Args:
        rankings: One ranking per retriever, best first: ``(id, score)`` pairs or hits.
        weights: One non-negative weight per ranking (default: all 1).
        normalization: ``"minmax"`` or ``"zscore"`` (see the module notes for equal scores and absent ids).
        top_n: Keep the best ``top_n`` (``None``: all).
        names: One name per ranking, the keys of each hit's ``scores`` (default ``"0"``, ``"1"``...).

    Returns:
        Fused hits sorted by descending score, ties by ascending id.

    Raises:
        ValueError: An id repeated in a ranking, a non-finite score, bad weights or names, an unknown
            normalisation or ``top_n <= 0``.
        TypeError: A ranking that is not a sequence of ``(str, number)`` pairs or hits.

    Example:
        >>> hits = weighted_score_fusion([[("a", 3.0), ("b", 1.0)], [("b", 0.9), ("c", 0.5)]])
        >>> [(h.id, h.score) for h in hits]
        [('a', 1.0), ('b', 1.0), ('c', 0.0)]
        >>> hits[1].scores
        {'0': 1.0, '1': 0.9}
    """
    if normalization not in ("minmax", "zscore"):
        raise ValueError(f"normalization must be 'minmax' or 'zscore', got {normalization!r}")
    if top_n is not None:
        check_positive_int(top_n, name="top_n")
    id_lists, score_lists, documents = _parse(rankings, scores_needed=True)
    w = check_weights(weights, len(id_lists))
    labels = _check_names(names, len(id_lists))
    per_ranking: list[tuple[dict[str, float], float]] = []
    for ids, scores in zip(id_lists, score_lists, strict=True):
        if not ids or scores is None:
            per_ranking.append(({}, 0.0))
            continue
        normed, absent = _normalise(scores, normalization)
        per_ranking.append((dict(zip(ids, normed, strict=True)), absent))
    every_id = dict.fromkeys(doc_id for ids in id_lists for doc_id in ids)
    totals = {
        doc_id: math.fsum(w[i] * table.get(doc_id, absent) for i, (table, absent) in enumerate(per_ranking))
        for doc_id in every_id
    }
    return _hits(totals, id_lists, score_lists, labels, documents, top_n)


RerankFusionMethod = Literal["none", "rrf", "zscore", "minmax"]
"""How a reranker's scores are combined with the first stage's: not at all (rerank only), by reciprocal rank, or by
a weighted sum of per-query z-scored or min-max-normalised scores."""


@dataclass(frozen=True)
class RerankFusion:
    """Combining the cross-encoder's score with the first-stage score of the same candidates, per query.

    A reranker weaker than the first stage on a domain (a very lexical one, say) makes the final ranking worse;
    combining both scores keeps the better of the two signals. ``method="none"`` (the default everywhere) is
    "rerank only". Otherwise each candidate's final score is

    * ``"zscore"``: ``weight * z(rerank) + (1 - weight) * z(first stage)``, each z-scored over the query's
      candidates (population std; all equal → 0);
    * ``"minmax"``: the same with min-max normalisation into [0, 1] (all equal → 1);
    * ``"rrf"``: ``weight / (rrf_k + rank_rerank) + (1 - weight) / (rrf_k + rank_first_stage)``.

    Missing and broken scores: a candidate without a first-stage score (``None``/NaN) gets that ranking's lowest
    normalised value (z-score), 0 (min-max) or no rank contribution (RRF); when no candidate has one, the final score
    is the reranker's own. A NaN reranker score makes the final score NaN (ranked last).

    Attributes:
        method: ``"none"``, ``"zscore"``, ``"minmax"`` or ``"rrf"``.
        weight: The reranker's share, in [0, 1] (``1`` is rerank only with normalised scores).
        rrf_k: The rank offset of ``"rrf"``.

    Example:
        >>> fusion = RerankFusion("zscore", weight=0.5)
        >>> [round(s, 3) for s in fusion.fuse(rerank=[0.9, 0.1, 0.5], first_stage=[1.0, 3.0, 2.0])]
        [0.0, 0.0, 0.0]
        >>> [round(s, 3) for s in RerankFusion("minmax", 0.75).fuse([0.9, 0.1, 0.5], [1.0, 3.0, 2.0])]
        [0.75, 0.25, 0.5]
    """

    method: RerankFusionMethod = "none"
    weight: float = 0.5
    rrf_k: float = 60
    active: bool = field(init=False, repr=False, compare=False)
    """Whether the first-stage score takes part (anything but ``"none"``)."""

    def __post_init__(self) -> None:
        if self.method not in ("none", "rrf", "zscore", "minmax"):
            raise ValueError(f"rerank fusion must be 'none', 'rrf', 'zscore' or 'minmax', got {self.method!r}")
        weight = self.weight
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not 0.0 <= float(weight) <= 1.0:
            raise ValueError(f"rerank fusion weight must be a number in [0, 1], got {weight!r}")
        k = self.rrf_k
        if isinstance(k, bool) or not isinstance(k, numbers.Real) or not math.isfinite(k) or k < 0:
            raise ValueError(f"rrf_k must be a finite number >= 0, got {k!r}")
        object.__setattr__(self, "active", self.method != "none")

    @classmethod
    def of(cls, value: RerankFusion | str | None, *, weight: float | None = None) -> RerankFusion:
        """Build from a setting: ``None`` / ``"none"``, a method name (with ``weight``), or an instance.

        Example:
            >>> RerankFusion.of("zscore", weight=0.3)
            RerankFusion(method='zscore', weight=0.3, rrf_k=60)
        """
        if isinstance(value, RerankFusion):
            return value if weight is None else cls(value.method, weight, value.rrf_k)
        if value is None:
            return cls("none")
        if not isinstance(value, str):
            raise TypeError(f"rerank fusion must be a method name or a RerankFusion, got {type(value).__name__}")
        return cls(value, 0.5 if weight is None else weight)  # type: ignore[arg-type]

    def fuse(self, rerank: Sequence[float] | np.ndarray, first_stage: Sequence[float | None]) -> list[float]:
        """Final scores of one query's candidates, in candidate order (see the class notes).

        Raises:
            ValueError: If the two lists differ in length.
        """
        if len(rerank) != len(first_stage):
            raise ValueError(f"got {len(rerank)} reranker scores but {len(first_stage)} first-stage scores")
        reranked = np.asarray(rerank, dtype=np.float64).reshape(-1)
        first = np.array([np.nan if s is None else float(s) for s in first_stage], dtype=np.float64)
        first[~np.isfinite(first)] = np.nan  # an infinite first-stage score counts as none
        if not self.active or np.isnan(first).all():
            return reranked.tolist()
        valid = np.isfinite(reranked)
        weight = float(self.weight)
        if self.method == "rrf":
            total = self._rrf_part(reranked, valid, weight) + self._rrf_part(first, ~np.isnan(first), 1.0 - weight)
        else:
            norm: Normalization = "zscore" if self.method == "zscore" else "minmax"
            total = weight * _normalised_part(reranked, valid, norm)
            total += (1.0 - weight) * _normalised_part(first, ~np.isnan(first), norm)
        total[~valid] = np.nan
        return total.tolist()

    def _rrf_part(self, scores: np.ndarray, valid: np.ndarray, weight: float) -> np.ndarray:
        """``weight / (rrf_k + rank)`` of each valid candidate (1-based ranks, ties in candidate order); 0 elsewhere."""
        positions = np.flatnonzero(valid)
        order = positions[np.argsort(-scores[positions], kind="stable")]
        part = np.zeros(scores.shape, dtype=np.float64)
        part[order] = weight / (self.rrf_k + np.arange(1, order.size + 1, dtype=np.float64))
        return part

    def rank(
        self,
        rerank: Sequence[float] | np.ndarray,
        first_stage: Sequence[float | None] | None = None,
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
    ) -> list[RerankResult]:
        """Rank one query's candidates by the combined score: what ``Reranker.rerank`` returns.

        With ``method="none"`` the candidates are ranked by the reranker's score alone (``first_stage`` is not read)
        and the results carry no ``rerank_score`` / ``first_stage_score``.

        Args:
            rerank: The reranker's score of each candidate, in the caller's order.
            first_stage: The score each candidate arrived with (``None`` items: it had none). ``None``, or no
                candidate with a score: the caller's order is taken as the first stage's ranking (a retriever
                returns its best first): candidate ``i`` of ``n`` gets first-stage score ``n - i``, so that RRF
                uses the positions as ranks and the score methods normalise the positions.
            top_n: Keep the best ``top_n`` (``None``: all).
            score_threshold: Keep results whose combined score is at least this.

        Returns:
            Results best first (ties: lower index first), each with its combined ``score``, ``rerank_score`` and
            ``first_stage_score`` (``None`` where the caller gave none, or when it gave no scores at all).

        Raises:
            ValueError: If the lists differ in length, ``top_n`` is not positive or the threshold is NaN.

        Example:
            >>> fusion = RerankFusion("rrf", weight=0.5, rrf_k=0)
            >>> [(r.index, round(r.score, 3)) for r in fusion.rank([0.2, 0.9, 0.5])]  # order 0, 1, 2 came in
            [(1, 0.75), (0, 0.667), (2, 0.417)]
        """
        if not self.active:
            return rank_scores(rerank, top_n=top_n, score_threshold=score_threshold)
        given = None if first_stage is None else [as_first_stage_score(s) for s in first_stage]
        if given is not None and all(s is None for s in given):
            given = None
        positional = [float(len(rerank) - i) for i in range(len(rerank))]
        final = self.fuse(rerank, given if given is not None else positional)
        return [
            RerankResult(
                index=r.index,
                score=r.score,
                rerank_score=float(rerank[r.index]),
                first_stage_score=None if given is None else given[r.index],
            )
            for r in rank_scores(final, top_n=top_n, score_threshold=score_threshold)
        ]


def _normalised_part(scores: np.ndarray, valid: np.ndarray, method: Normalization) -> np.ndarray:
    """The normalised score of each valid candidate; the others get what an absent id gets (see the module notes)."""
    if not valid.any():
        return np.zeros(scores.shape, dtype=np.float64)
    normed, absent = _normalise(scores[valid].tolist(), method)
    part = np.full(scores.shape, absent, dtype=np.float64)
    part[valid] = normed
    return part
