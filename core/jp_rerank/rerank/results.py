"""Result types of the reranking engine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["RerankResult", "rank_scores"]


@dataclass(frozen=True, order=False)
class RerankResult:
    """One reranked document: its position in the caller's list and its relevance score.

    Attributes:
        index: Position of the document in the list passed to ``rerank``.
        score: Relevance score (a plain Python float; higher is more relevant).

    Example:
        >>> RerankResult(index=2, score=0.93)
        RerankResult(index=2, score=0.93)
    """

    index: int
    score: float


def _check_top_n(top_n: int | None) -> None:
    if top_n is None:
        return
    if isinstance(top_n, bool) or not isinstance(top_n, int | np.integer):
        raise TypeError(f"top_n must be an int or None, got {type(top_n).__name__}")
    if top_n <= 0:
        raise ValueError(f"top_n must be a positive integer or None, got {top_n}")


def rank_scores(
    scores: Sequence[float] | np.ndarray,
    *,
    top_n: int | None = None,
    score_threshold: float | None = None,
) -> list[RerankResult]:
    """Sort scores descending (ties keep input order), drop those under the threshold, keep the first ``top_n``.

    NaN scores sort last and never pass a threshold.

    Args:
        scores: One score per document, in input order.
        top_n: Keep at most this many (``None`` keeps all).
        score_threshold: Keep only scores ``>= score_threshold``.

    Returns:
        Results sorted by descending score.

    Raises:
        ValueError: If ``top_n`` is not positive or the threshold is NaN.

    Example:
        >>> rank_scores([0.1, 0.9, 0.5], top_n=2)
        [RerankResult(index=1, score=0.9), RerankResult(index=2, score=0.5)]
    """
    _check_top_n(top_n)
    if score_threshold is not None and np.isnan(score_threshold):
        raise ValueError("score_threshold must not be NaN")
    values = np.asarray(scores, dtype=np.float64)
    keys = np.where(np.isnan(values), -np.inf, values)
    order = np.lexsort((np.arange(len(values)), -keys))  # by score desc, then index asc
    out: list[RerankResult] = []
    for i in order:
        score = float(values[i])
        if score_threshold is not None and not score >= score_threshold:
            continue
        out.append(RerankResult(index=int(i), score=score))
        if top_n is not None and len(out) >= top_n:
            break
    return out
