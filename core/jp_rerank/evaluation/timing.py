"""Timing methods fairly in one run: rotation, medians, same-run ratios, resident memory, ranking agreement.

Every method runs the same workload once per repetition; the methods take turns in a rotating order, so load
from other processes hits them alike. Speeds are medians over repetitions and each "ours is x faster" is the median
of the per-repetition ratios. Memory is the resident memory added by building a method plus one warm-up call,
and the peak above the pre-call level while it ran (Linux ``VmHWM``, reset before each call).

Example:
    >>> methods = [Method(MethodResult("a", "baseline"), lambda: len), Method(MethodResult(OURS, "ours"), lambda: len)]
    >>> for m in methods:
    ...     build_method(m, lambda f: f("x"))
    >>> time_methods(methods, lambda f: f("abc"), repeats=2)
    >>> [m.result.name for m in methods if m.result.items_per_s]
    ['a', 'ours (default)']
"""

from __future__ import annotations

import gc
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = [
    "OURS",
    "Agreement",
    "Kind",
    "Method",
    "MethodResult",
    "Pairs",
    "agreement",
    "build_method",
    "load_average",
    "ndcg10",
    "spearman",
    "time_methods",
]

logger = logging.getLogger(__name__)

OURS = "ours (default)"
"""Name of the method every ratio is measured against."""

Kind = Literal["baseline", "peer", "ours"]
Scorer = Callable[[str, list[str]], Any]


@dataclass
class MethodResult:
    """Speed of one method on one model.

    Attributes:
        name: Method name (``"tutorial"``, ``"st-predict"``, ``"ours (default)"``...).
        kind: ``"baseline"``, ``"peer"`` or ``"ours"``.
        note: What exactly ran (backend, precision, defaults).
        items_per_s: Median pairs (or texts) per second over the repetitions.
        seconds: Wall time of each repetition.
        ours_speedup: Median over repetitions of (ours default speed / this method's speed).
        load_s: Time to build the method (load the model, create sessions).
        load_mib: Resident memory added by building it and one warm-up call.
        peak_mib: Most resident memory above the pre-call level while it ran.
        gflops: Useful GFLOP per second it achieved (set by benchmarks that know the work per item).
        error: Why the method could not run (then the speed fields are empty).
    """

    name: str
    kind: Kind
    note: str = ""
    items_per_s: float | None = None
    seconds: list[float] = field(default_factory=list)
    ours_speedup: float | None = None
    load_s: float | None = None
    load_mib: float | None = None
    peak_mib: float | None = None
    gflops: float | None = None
    error: str | None = None


@dataclass
class Agreement:
    """How closely one of our backends ranks like torch fp32 on the benchmark pairs.

    Attributes:
        method: Our method compared with ``torch-fp32``.
        spearman_mean: Mean over questions of the Spearman correlation of scores.
        spearman_min: Smallest per-question Spearman correlation.
        ndcg10: nDCG@10 of this method's ranking against the dataset's judgements.
        ndcg10_fp32: nDCG@10 of torch fp32.
        max_abs_diff: Largest absolute score difference.
        score_std: Standard deviation of the fp32 scores (tiny for random-weight models: see the notes).
        top3_same: Share of questions whose top-3 set equals torch fp32's (what a user sees; Spearman can stay
            above 0.99 while the top three change).
    """

    method: str
    spearman_mean: float
    spearman_min: float
    ndcg10: float
    ndcg10_fp32: float
    max_abs_diff: float
    score_std: float
    top3_same: float = float("nan")


# ---------------------------------------------------------------------------------------------- memory


def _status_mib(key: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")  # resets VmHWM (peak resident memory) to the current level
    except OSError:
        return False
    return True


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (empty where the OS does not tell)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not Unix
        return []


# ---------------------------------------------------------------------------------------------- timing


@dataclass
class Method:
    """One method to time: its result record, how to build it, and (once built) the object to run."""

    result: MethodResult
    build: Callable[[], Any]
    run: Callable[[], Any] | None = None


def build_method(method: Method, warm: Callable[[Any], Any]) -> None:
    """Build a method and warm it up; record its build time and the resident memory it added.

    Some loaders memory-map weights, so memory is read after the warm-up call, once the pages are in.
    """
    gc.collect()
    rss = _status_mib("VmRSS")
    started = time.perf_counter()
    try:
        obj = method.build()
        method.result.load_s = round(time.perf_counter() - started, 2)
        warm(obj)
    except Exception as exc:  # a peer that cannot be installed or loaded is reported, not fatal
        method.result.error = f"{type(exc).__name__}: {exc}"[:300]
        logger.warning("%s could not run: %s", method.result.name, method.result.error)
        return
    after = _status_mib("VmRSS")
    if rss is not None and after is not None:
        method.result.load_mib = round(after - rss, 1)
    method.run = lambda: obj


def time_methods(methods: Sequence[Method], workload: Callable[[Any], int], repeats: int) -> None:
    """Run each method's workload ``repeats`` times, rotating the order; fill speeds, peaks and ratios."""
    live = [m for m in methods if m.run is not None]
    items: dict[str, int] = {}
    for rep in range(repeats):
        shift = rep % max(1, len(live))
        for method in live[shift:] + live[:shift]:
            assert method.run is not None
            obj = method.run()
            can_peak = _reset_peak()
            before = _status_mib("VmRSS")
            started = time.perf_counter()
            items[method.result.name] = workload(obj)
            method.result.seconds.append(max(time.perf_counter() - started, 1e-9))  # perf_counter ticks are finite
            peak = _status_mib("VmHWM") if can_peak else None
            if peak is not None and before is not None:
                used = round(peak - before, 1)
                method.result.peak_mib = max(method.result.peak_mib or 0.0, used)
    ours = next((m for m in live if m.result.name == OURS), None)
    for method in live:
        r = method.result
        r.items_per_s = round(items[r.name] / statistics.median(r.seconds), 2)
        if ours is not None:
            ratios = [b / a for a, b in zip(ours.result.seconds, r.seconds, strict=True)]
            r.ours_speedup = round(statistics.median(ratios), 3)


# ---------------------------------------------------------------------------------------------- agreement


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return np.asarray(sums[inverse] / counts[inverse])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties get average ranks); NaN when either side is constant.

    Example:
        >>> spearman(np.array([0.1, 0.5, 0.3]), np.array([1.0, 3.0, 2.0]))
        1.0
    """
    ra, rb = _average_ranks(np.asarray(a, np.float64)), _average_ranks(np.asarray(b, np.float64))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


@dataclass
class Pairs:
    """The reranking workload: per question, its candidate passages (ids and texts).

    Attributes:
        qids: Question ids (keys of the qrels).
        queries: Question texts.
        doc_ids: Candidate passage ids per question.
        docs: Candidate passage texts per question.
        note: How the candidates were chosen.
    """

    qids: list[str]
    queries: list[str]
    doc_ids: list[list[str]]
    docs: list[list[str]]
    note: str = ""

    @property
    def n_pairs(self) -> int:
        """Total (question, passage) pairs."""
        return sum(len(d) for d in self.docs)


def ndcg10(pairs: Pairs, scores: Sequence[np.ndarray], qrels: dict[str, dict[str, int]]) -> float:
    """nDCG@10 of ranking each question's candidates by ``scores`` (NaN when no question is judged).

    A NaN score ranks last, as the reranker ranks it.
    """
    from jp_rerank.evaluation.metrics import evaluate

    def finite(sc: np.ndarray) -> np.ndarray:
        values = np.asarray(sc, dtype=np.float64)
        ok = np.isfinite(values)
        floor = (values[ok].min() if ok.any() else 0.0) - 1.0
        return np.where(ok, values, floor)

    run = {
        qid: {doc: float(s) for doc, s in zip(docs, finite(sc), strict=True)}
        for qid, docs, sc in zip(pairs.qids, pairs.doc_ids, scores, strict=True)
    }
    judged = {q: qrels[q] for q in pairs.qids if q in qrels}
    return float(evaluate(run, judged, ["ndcg@10"])["ndcg@10"]) if judged else float("nan")


def agreement(
    pairs: Pairs, scorers: dict[str, Scorer], qrels: dict[str, dict[str, int]], *, reference: str
) -> list[Agreement]:
    """Compare every scorer's ranking with the ``reference`` scorer's on the same pairs.

    Returns:
        One :class:`Agreement` per scorer other than the reference (empty when the reference is missing).
    """
    if reference not in scorers:
        return []
    ref = [np.asarray(scorers[reference](q, d), np.float64) for q, d in zip(pairs.queries, pairs.docs, strict=True)]
    ref_ndcg = ndcg10(pairs, ref, qrels)
    out = []
    for name, scorer in scorers.items():
        if name == reference:
            continue
        got = [np.asarray(scorer(q, d), np.float64) for q, d in zip(pairs.queries, pairs.docs, strict=True)]
        rhos = [spearman(a, b) for a, b in zip(ref, got, strict=True)]
        out.append(
            Agreement(
                method=name,
                spearman_mean=round(float(np.nanmean(rhos)), 4),
                spearman_min=round(float(np.nanmin(rhos)), 4),
                ndcg10=round(ndcg10(pairs, got, qrels), 4),
                ndcg10_fp32=round(ref_ndcg, 4),
                max_abs_diff=float(max(np.abs(a - b).max() for a, b in zip(ref, got, strict=True))),
                score_std=round(float(np.concatenate(ref).std()), 6),
                top3_same=round(float(np.mean([_top(a, 3) == _top(b, 3) for a, b in zip(ref, got, strict=True)])), 4),
            )
        )
    return out


def _top(scores: np.ndarray, k: int) -> frozenset[int]:
    """Positions of the ``k`` best scores (NaN last, ties by position)."""
    keyed = np.where(np.isnan(scores), -np.inf, scores)
    return frozenset(int(i) for i in np.argsort(-keyed, kind="stable")[:k])
