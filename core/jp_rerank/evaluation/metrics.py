"""Ranking metrics (nDCG, MRR, MAP, Recall, Hit at a cutoff) computed with ``ranx``.

Conventions, all checked by the tests:

* A query that has judgements in ``qrels`` but is missing from ``run`` (or has an empty ranking) counts as
  **zero** for every metric and stays in the mean. Queries in ``run`` without judgements are ignored.
* A passage is relevant when its grade is ``> 0``. nDCG uses the grade itself as gain (``ranx``'s default,
  the trec_eval convention) and ``log2(rank + 1)`` discounts. A query whose judgements are all ``<= 0`` can
  never score and counts as zero (a warning is logged).
* Ties keep the order of the ranking as given (a stable sort by descending score), so pass each query's
  ranking in rank order when scores tie.
* Ids are compared as strings; scores must be finite numbers.
"""

from __future__ import annotations

import logging
import math
import numbers
import re
import statistics
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from jp_rerank.extras import require

__all__ = ["DEFAULT_METRICS", "METRIC_NAMES", "evaluate", "evaluate_per_query"]

logger = logging.getLogger(__name__)

DEFAULT_METRICS: tuple[str, ...] = tuple(
    f"{name}@{k}" for k in (10, 100) for name in ("ndcg", "mrr", "map", "recall", "hit")
)
"""Metrics reported when none are asked for: nDCG, MRR, MAP, Recall and Hit at 10 and 100."""

METRIC_NAMES: dict[str, str] = {
    "ndcg": "ndcg",
    "mrr": "mrr",
    "map": "map",
    "recall": "recall",
    "hit": "hit_rate",
    "precision": "precision",
}
"""Our metric names → ``ranx`` names. ``hit@k`` is 1 when any relevant passage is in the top ``k``."""

_METRIC_RE = re.compile(r"^([a-z_]+)@([1-9][0-9]*)$")

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


def _ranx_metric(metric: str) -> str:
    match = _METRIC_RE.match(metric) if isinstance(metric, str) else None
    if match is None or match.group(1) not in METRIC_NAMES:
        raise ValueError(
            f"unknown metric {metric!r}; use NAME@K with NAME in {sorted(METRIC_NAMES)} and K a positive int"
        )
    return f"{METRIC_NAMES[match.group(1)]}@{match.group(2)}"


def _check_metrics(metrics: Sequence[str]) -> dict[str, str]:
    if isinstance(metrics, str):
        raise TypeError("metrics must be a sequence of metric names, not a single str")
    mapping = {metric: _ranx_metric(metric) for metric in metrics}
    if not mapping:
        raise ValueError("metrics is empty; ask for at least one metric such as 'ndcg@10'")
    return mapping


def _copy_qrels(qrels: Qrels) -> dict[str, dict[str, int]]:
    if not isinstance(qrels, Mapping):
        raise TypeError(f"qrels must be a mapping of query id to {{doc id: grade}}, got {type(qrels).__name__}")
    out: dict[str, dict[str, int]] = {}
    for qid, judged in qrels.items():
        if not isinstance(judged, Mapping):
            raise TypeError(f"qrels[{qid!r}] must be a mapping of doc id to grade, got {type(judged).__name__}")
        grades: dict[str, int] = {}
        for did, grade in judged.items():
            if isinstance(grade, bool) or not isinstance(grade, int | float) or grade != int(grade):
                raise ValueError(f"qrels[{qid!r}][{did!r}] must be an integer grade, got {grade!r}")
            grades[str(did)] = int(grade)
        if grades:
            out[str(qid)] = grades
    if not out:
        raise ValueError("qrels is empty: no query has any judged passage")
    return out


def _copy_run(run: Run) -> dict[str, dict[str, float]]:
    if not isinstance(run, Mapping):
        raise TypeError(f"run must be a mapping of query id to {{doc id: score}}, got {type(run).__name__}")
    out: dict[str, dict[str, float]] = {}
    for qid, ranked in run.items():
        if not isinstance(ranked, Mapping):
            raise TypeError(f"run[{qid!r}] must be a mapping of doc id to score, got {type(ranked).__name__}")
        scores: dict[str, float] = {}
        for did, score in ranked.items():
            if isinstance(score, bool) or not isinstance(score, numbers.Real):
                raise TypeError(f"run[{qid!r}][{did!r}] must be a number, got {type(score).__name__}")
            value = float(score)
            if not math.isfinite(value):
                raise ValueError(f"run[{qid!r}][{did!r}] has a non-finite score {score!r}")
            scores[str(did)] = value
        out[str(qid)] = scores
    if not any(out.values()):
        raise ValueError("run is empty: no query has any ranked passage")
    return out


def _prepare(run: Run, qrels: Qrels) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    qrels_c, run_c = _copy_qrels(qrels), _copy_run(run)
    if not any(run_c.get(qid) for qid in qrels_c):
        raise ValueError(
            "run and qrels share no query ids with ranked passages; check that both use the same ids "
            f"(e.g. run has {next(iter(run_c))!r}, qrels has {next(iter(qrels_c))!r})"
        )
    hopeless = [qid for qid, judged in qrels_c.items() if max(judged.values()) <= 0]
    if hopeless:
        logger.warning("%d queries have no relevant passage (all grades <= 0) and count as zero", len(hopeless))
    missing = sum(1 for qid in qrels_c if not run_c.get(qid))
    if missing:
        logger.info("%d of %d judged queries have no ranking in the run and count as zero", missing, len(qrels_c))
    # Queries without judgements are dropped; a judged query the run lacks gets an empty ranking.
    run_c = {qid: run_c.get(qid, {}) for qid in qrels_c}
    return run_c, qrels_c


def _encode(
    run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]
) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, int]]]:
    """Recode run and qrels for ranx, in the same query order.

    * Passages get small integer codes: ranx keys passages by ``hash(doc_id)`` stored as float64, which is exact
      for small ints (no collisions).
    * Scores become strictly decreasing ranks after a stable sort, so ties keep the given order (ranx's own sort
      of plain dicts is not stable); metrics depend on the order only.
    * An empty ranking becomes one never-relevant placeholder passage, which scores zero on every metric (ranx
      fails on empty rankings, and its ``make_comparable`` recompiles numba code in every new process).
    """
    codes: dict[str, int] = {}
    qrels_e = {qid: {codes.setdefault(d, len(codes)): g for d, g in judged.items()} for qid, judged in qrels.items()}
    placeholder = len(codes)  # reserved: passages first seen in the run are coded from len(codes) + 1 on
    run_e: dict[str, dict[int, float]] = {}
    for qid in qrels:
        ranked = sorted(run[qid].items(), key=lambda item: -item[1])  # stable
        run_e[qid] = (
            {codes.setdefault(d, len(codes) + 1): float(len(ranked) - i) for i, (d, _) in enumerate(ranked)}
            if ranked
            else {placeholder: 1.0}
        )
    return run_e, qrels_e


def _ranx_scores(
    run: Run, qrels: Qrels, metrics: Sequence[str], *, per_query: bool
) -> tuple[list[str], dict[str, Any]]:
    mapping = _check_metrics(metrics)
    run_e, qrels_e = _encode(*_prepare(run, qrels))
    ranx = require("ranx", "eval")
    names = sorted(set(mapping.values()))
    if len(names) == 1:  # ranx 0.3 fails on a single metric with return_mean=False: ask for a second one
        names.append("precision@1" if names[0] != "precision@1" else "recall@1")
    with warnings.catch_warnings():
        # numba warns about an internal uint64 → int64 cast inside ranx's nDCG; harmless for our sizes.
        warnings.simplefilter("ignore")
        # Plain dicts, not ranx.Qrels/Run: those compile extra numba code (seconds) in every new process.
        scores = ranx.evaluate(qrels_e, run_e, names, return_mean=False)
    per_metric = {metric: [float(v) for v in scores[name]] for metric, name in mapping.items()}
    if not per_query:
        per_metric = {metric: [statistics.fmean(values)] for metric, values in per_metric.items()}
    return list(qrels_e), per_metric


def evaluate(
    run: dict[str, dict[str, float]],
    qrels: dict[str, dict[str, int]],
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> dict[str, float]:
    """Score a run against relevance judgements, averaged over the judged queries.

    Args:
        run: Query id → {passage id → score}; higher scores rank first (see the module notes on ties).
        qrels: Query id → {passage id → relevance grade}; grades ``> 0`` are relevant.
        metrics: Names ``NAME@K`` with NAME in ``ndcg``, ``mrr``, ``map``, ``recall``, ``hit``, ``precision``.

    Returns:
        Metric name (as given) → mean over every judged query, as plain floats. Judged queries missing from
        ``run`` count as zero.

    Raises:
        ValueError: If ``run`` or ``qrels`` is empty, they share no query id, a metric name is unknown,
            a score is not finite or a grade is not an integer.
        TypeError: If ``run``/``qrels`` are not nested mappings.
        ImportError: If ``ranx`` is not installed (``pip install "jp-rerank[eval]"``).

    Example:
        >>> evaluate({"q1": {"d2": 0.9, "d1": 0.5}}, {"q1": {"d1": 1}}, ["mrr@10", "hit@1"])
        {'mrr@10': 0.5, 'hit@1': 0.0}
    """
    _, scores = _ranx_scores(run, qrels, metrics, per_query=False)
    return {metric: values[0] for metric, values in scores.items()}


def evaluate_per_query(
    run: dict[str, dict[str, float]],
    qrels: dict[str, dict[str, int]],
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> dict[str, dict[str, float]]:
    """Score a run query by query (same conventions as :func:`evaluate`).

    Returns:
        Query id → {metric → score} for every judged query, as plain floats.

    Example:
        >>> evaluate_per_query({"q1": {"d1": 1.0}}, {"q1": {"d1": 1}, "q2": {"d3": 1}}, ["hit@10"])
        {'q1': {'hit@10': 1.0}, 'q2': {'hit@10': 0.0}}
    """
    qids, scores = _ranx_scores(run, qrels, metrics, per_query=True)
    return {qid: {metric: values[i] for metric, values in scores.items()} for i, qid in enumerate(qids)}
