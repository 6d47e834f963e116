"""Running a retriever or a reranker over a dataset and recording quality and speed.

Both settings take plain callables, so they work with any model code:

* **retrieval** (:func:`evaluate_retrieval`): ``search_fn(queries, k)`` searches the whole corpus and returns,
  per query, up to ``k`` ``(doc_id, score)`` pairs;
* **rerank** (:func:`evaluate_rerank`, the JQaRA setting): ``score_fn(query, passages)`` scores a fixed list of
  candidates per query, e.g. :meth:`jp_rerank.rerank.Reranker.score`.

Timings cover only the time spent inside the callable. The first query is run once untimed first (``warmup``),
so lazy model loading and first-call compilation do not count. Metrics follow
:func:`jp_rerank.evaluation.metrics.evaluate`: judged queries that get no result count as zero, and score ties
keep the order the callable (or the candidate list) gives.
"""

from __future__ import annotations

import logging
import math
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from jp_rerank._version import __version__
from jp_rerank.checks import check_positive_int
from jp_rerank.evaluation.metrics import DEFAULT_METRICS, evaluate_per_query
from jp_rerank.evaluation.results import DatasetStats, EvalResult, Setting, Timing, utc_timestamp
from jp_rerank.fusion import RerankFusion
from jp_rerank.hardware import MachineInfo, machine_info

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from jp_rerank.evaluation.datasets import BeirDataset

__all__ = [
    "ScoreFn",
    "SearchFn",
    "build_candidates",
    "evaluate_rerank",
    "evaluate_retrieval",
    "sample_queries",
]

logger = logging.getLogger(__name__)

SearchFn = Callable[[list[str], int], Sequence[Sequence[tuple[str, float]]]]
"""``search_fn(queries, k)`` → for each query, up to ``k`` ``(doc_id, score)`` pairs, best first."""

ScoreFn = Callable[[str, list[str]], "Sequence[float] | NDArray[np.floating[Any]]"]
"""``score_fn(query, passages)`` → one score per passage (higher is more relevant)."""

T = TypeVar("T")


def sample_queries(queries: Mapping[str, str], n: int, *, seed: int | None = None) -> dict[str, str]:
    """Pick ``n`` queries: the first ``n``, or a seeded random sample kept in the original order.

    Useful to evaluate a slow model on part of a set. Returns a new dict; ``queries`` is not changed.

    Example:
        >>> sample_queries({"a": "x", "b": "y", "c": "z"}, 2)
        {'a': 'x', 'b': 'y'}
    """
    check_positive_int(n, name="n")
    if seed is None:
        return dict(list(queries.items())[:n])
    keep = set(random.Random(seed).sample(list(queries), min(n, len(queries))))
    return {qid: text for qid, text in queries.items() if qid in keep}


def _mean(values: Sequence[float]) -> float:
    return float(statistics.fmean(values)) if values else 0.0


class _Stopwatch:
    """Time spent inside the model callables: the total, and each call's time split evenly over its queries."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.per_query_ms: list[float] = []

    def call(self, fn: Callable[..., T], *args: Any, queries: int = 1) -> T:
        t0 = time.perf_counter()
        out = fn(*args)
        elapsed = time.perf_counter() - t0
        self.seconds += elapsed
        self.per_query_ms.extend([elapsed * 1000 / queries] * queries)
        return out

    def timing(self, *, pairs: int | None = None) -> Timing:
        median = statistics.median(self.per_query_ms) if self.per_query_ms else None
        return Timing(seconds=self.seconds, queries=len(self.per_query_ms), pairs=pairs, median_query_ms=median)


def _stats(
    dataset: BeirDataset, queries: Mapping[str, str], passages: Sequence[str], mean_candidates: float | None = None
) -> DatasetStats:
    return DatasetStats(
        name=dataset.name,
        n_queries=len(queries),
        n_passages=len(passages),
        mean_passage_chars=_mean([len(p) for p in passages]),
        mean_query_chars=_mean([len(t) for t in queries.values()]),
        mean_candidates=mean_candidates,
    )


def _finish(
    *,
    setting: Setting,
    run: dict[str, dict[str, float]],
    qrels: dict[str, dict[str, int]],
    metrics: Sequence[str],
    stats: DatasetStats,
    timing: Timing,
    models: Mapping[str, str] | None,
    name: str | None,
    settings: dict[str, Any],
    hardware: MachineInfo | None,
) -> EvalResult:
    per_query = evaluate_per_query(run, qrels, metrics)
    means = {m: _mean([scores[m] for scores in per_query.values()]) for m in metrics}
    model_ids = {str(k): str(v) for k, v in (models or {}).items()}
    label = name or "+".join(model_ids.values()) or setting
    return EvalResult(
        name=label,
        setting=setting,
        models=model_ids,
        settings=settings,
        dataset=stats,
        metrics=means,
        timing=timing,
        hardware=hardware if hardware is not None else machine_info(),
        version=__version__,
        timestamp=utc_timestamp(),
        run=run,
        per_query=per_query,
    )


def _judged(dataset: BeirDataset, queries: Mapping[str, str]) -> dict[str, dict[str, int]]:
    qrels = {qid: dict(dataset.qrels[qid]) for qid in queries if qid in dataset.qrels}
    if not qrels:
        raise ValueError(f"none of the {len(queries)} queries has judgements in dataset {dataset.name!r}")
    return qrels


def _check_queries(queries: Mapping[str, str]) -> None:
    if not queries:
        raise ValueError("no queries to evaluate")
    for qid, text in queries.items():
        if not isinstance(text, str):
            raise TypeError(f"query {qid!r} must be a str, got {type(text).__name__}")


def evaluate_retrieval(
    dataset: BeirDataset,
    search_fn: SearchFn,
    k: int = 100,
    *,
    queries: Mapping[str, str] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    batch_size: int | None = None,
    warmup: bool = True,
    models: Mapping[str, str] | None = None,
    name: str | None = None,
    settings: Mapping[str, Any] | None = None,
    hardware: MachineInfo | None = None,
) -> EvalResult:
    """Evaluate full-corpus retrieval: every query is searched against the whole corpus.

    Args:
        dataset: The corpus, queries and judgements.
        search_fn: ``search_fn(queries, k)`` → per query, up to ``k`` ``(doc_id, score)`` pairs; doc ids must be
            ``dataset`` corpus ids (map row indices through ``dataset.doc_ids``).
        k: How many results to ask for per query (the metric cutoffs should not exceed it).
        queries: Queries to run (default: all judged queries of ``dataset``).
        metrics: Metric names (see :func:`jp_rerank.evaluation.metrics.evaluate`).
        batch_size: Queries per ``search_fn`` call (default: all at once).
        warmup: Run the first query once, untimed, before timing.
        models: Role → model id recorded in the result, e.g. ``{"retriever": "bm25-mecab"}``.
        name: Label for tables and plots (default: the model ids joined by ``+``).
        settings: Extra run parameters to record (JSON values).
        hardware: Machine facts (default: :func:`jp_rerank.hardware.machine_info`).

    Returns:
        The result, with ``run`` and ``per_query`` attached in memory.

    Raises:
        ValueError: If ``search_fn`` returns the wrong number of rankings, more than ``k`` hits, unknown or
            duplicate doc ids, or no query has judgements.
        TypeError: If a hit is not a ``(doc_id, score)`` pair with a ``str`` id.

    Example:
        >>> result = evaluate_retrieval(ds, bm25.search_many, k=100, models={"retriever": "bm25"})  # doctest: +SKIP
        >>> result.metrics["ndcg@10"]  # doctest: +SKIP
        0.936
    """
    check_positive_int(k, name="k")
    if batch_size is not None:
        check_positive_int(batch_size, name="batch_size")
    chosen = dict(dataset.queries if queries is None else queries)
    _check_queries(chosen)
    qrels = _judged(dataset, chosen)
    qids, texts = list(chosen), list(chosen.values())
    step = batch_size or len(qids)
    if warmup:
        search_fn(texts[:1], k)
    run: dict[str, dict[str, float]] = {}
    stopwatch = _Stopwatch()
    for start in range(0, len(qids), step):
        batch = texts[start : start + step]
        rankings = stopwatch.call(search_fn, batch, k, queries=len(batch))
        if len(rankings) != len(batch):
            raise ValueError(f"search_fn returned {len(rankings)} rankings for {len(batch)} queries")
        for qid, hits in zip(qids[start : start + step], rankings, strict=True):
            run[qid] = _ranking(qid, hits, k, dataset)
    return _finish(
        setting="retrieval",
        run=run,
        qrels=qrels,
        metrics=metrics,
        stats=_stats(dataset, chosen, dataset.passages()),
        timing=stopwatch.timing(),
        models=models,
        name=name,
        settings={"k": k, "batch_size": batch_size, **dict(settings or {})},
        hardware=hardware,
    )


def _ranking(qid: str, hits: Sequence[tuple[str, float]], k: int, dataset: BeirDataset) -> dict[str, float]:
    if len(hits) > k:
        raise ValueError(f"search_fn returned {len(hits)} hits for query {qid!r}, more than k={k}")
    ranking: dict[str, float] = {}
    for hit in hits:
        if not isinstance(hit, tuple | list) or len(hit) != 2:
            raise TypeError(f"search_fn hits must be (doc_id, score) pairs; query {qid!r} got {hit!r}")
        doc_id, score = hit
        if not isinstance(doc_id, str):
            raise TypeError(
                f"search_fn returned doc id {doc_id!r} ({type(doc_id).__name__}) for query {qid!r}; "
                "return corpus ids (map row indices through dataset.doc_ids)"
            )
        if doc_id not in dataset.corpus:
            raise ValueError(f"search_fn returned {doc_id!r} for query {qid!r}, which is not in the corpus")
        if doc_id in ranking:
            raise ValueError(f"search_fn returned {doc_id!r} twice for query {qid!r}")
        ranking[doc_id] = float(score)
    return ranking


def evaluate_rerank(
    queries: Mapping[str, str],
    candidates: Mapping[str, Sequence[str]],
    dataset: BeirDataset,
    score_fn: ScoreFn,
    *,
    with_title: bool = True,
    metrics: Sequence[str] = DEFAULT_METRICS,
    warmup: bool = True,
    models: Mapping[str, str] | None = None,
    name: str | None = None,
    settings: Mapping[str, Any] | None = None,
    hardware: MachineInfo | None = None,
    first_stage: Mapping[str, Mapping[str, float]] | None = None,
    rerank_fusion: RerankFusion | str | None = None,
) -> EvalResult:
    """Evaluate reranking of given candidates (the JQaRA setting).

    Each query's candidates are scored with one ``score_fn`` call and sorted by score, descending; ties keep the
    candidate order. Candidates of queries not in ``queries`` are ignored; a judged query without candidates gets
    an empty ranking and counts as zero.

    Args:
        queries: Query id → text (e.g. ``dataset.queries`` or a :func:`sample_queries` subset).
        candidates: Query id → candidate passage ids (e.g. ``dataset.candidates`` or :func:`build_candidates`).
        dataset: Passages and judgements.
        score_fn: ``score_fn(query, passages)`` → one score per passage, e.g. ``Reranker.score``.
        with_title: Feed passages as ``title + " " + text`` (the JQaRA setting) instead of the text alone.
        metrics: Metric names (see :func:`jp_rerank.evaluation.metrics.evaluate`).
        warmup: Score the first query once, untimed, before timing.
        models: Role → model id recorded in the result, e.g. ``{"reranker": "ruri-reranker-small"}``.
        name: Label for tables and plots (default: the model ids joined by ``+``).
        settings: Extra run parameters to record (JSON values).
        hardware: Machine facts (default: :func:`jp_rerank.hardware.machine_info`).
        first_stage: Query id → {passage id → first-stage score} (e.g. the run the candidates came from), for
            ``rerank_fusion``; candidates without one are handled as :class:`jp_rerank.fusion.RerankFusion` says.
        rerank_fusion: Combine the reranker's scores with the first-stage scores per query (the pipeline's
            setting, see :class:`jp_rerank.fusion.RerankFusion`); default: rerank only. Recorded in the settings.

    Returns:
        The result, with ``run`` and ``per_query`` attached in memory.

    Raises:
        ValueError: If a candidate is not in the corpus or repeated, ``score_fn`` returns the wrong number of
            scores or a non-finite one, or no query has judgements.

    Example:
        >>> ds = load_jqara("test", path="data/jqara")  # doctest: +SKIP
        >>> result = evaluate_rerank(ds.queries, ds.candidates, ds, reranker.score)  # doctest: +SKIP
    """
    chosen = dict(queries)
    _check_queries(chosen)
    fusion = RerankFusion.of(rerank_fusion)
    if fusion.active and not first_stage:
        logger.warning("rerank_fusion=%r without first-stage scores: the reranker's scores are used", fusion.method)
    qrels = _judged(dataset, chosen)
    lists = _candidate_lists(chosen, candidates, dataset)
    texts = {did: dataset.passage(did, with_title=with_title) for dids in lists.values() for did in dids}
    run, stopwatch = _rerank_all(chosen, lists, texts, score_fn, fusion, first_stage or {}, warmup=warmup)
    n_cands = [len(dids) for dids in lists.values()]
    return _finish(
        setting="rerank",
        run=run,
        qrels=qrels,
        metrics=metrics,
        stats=_stats(dataset, chosen, list(texts.values()), _mean(n_cands)),
        timing=stopwatch.timing(pairs=sum(n_cands)),
        models=models,
        name=name,
        settings={
            "with_title": with_title,
            "max_candidates": max(n_cands),
            **({"rerank_fusion": fusion.method, "fusion_weight": fusion.weight} if fusion.active else {}),
            **dict(settings or {}),
        },
        hardware=hardware,
    )


def _candidate_lists(
    queries: Mapping[str, str], candidates: Mapping[str, Sequence[str]], dataset: BeirDataset
) -> dict[str, list[str]]:
    """Each query's candidate ids, checked to be unique corpus ids; a query without candidates gets none."""
    lists: dict[str, list[str]] = {}
    for qid in queries:
        dids = list(candidates.get(qid, ()))
        if len(set(dids)) != len(dids):
            raise ValueError(f"candidates for query {qid!r} repeat a passage id")
        for did in dids:
            if did not in dataset.corpus:
                raise ValueError(f"candidate {did!r} of query {qid!r} is not in the corpus of {dataset.name!r}")
        lists[qid] = dids
    empty = [qid for qid, dids in lists.items() if not dids]
    if empty:
        logger.warning("%d of %d queries have no candidates and count as zero", len(empty), len(lists))
    return lists


def _rerank_all(
    queries: Mapping[str, str],
    lists: Mapping[str, list[str]],
    texts: Mapping[str, str],
    score_fn: ScoreFn,
    fusion: RerankFusion,
    first_stage: Mapping[str, Mapping[str, float]],
    *,
    warmup: bool,
) -> tuple[dict[str, dict[str, float]], _Stopwatch]:
    """Rank every query's candidates (after one untimed warm-up call when ``warmup``); return the run and its timer."""
    if warmup:
        first = next((qid for qid in lists if lists[qid]), None)
        if first is not None:
            score_fn(queries[first], [texts[did] for did in lists[first]])
    run: dict[str, dict[str, float]] = {}
    stopwatch = _Stopwatch()
    for qid, dids in lists.items():
        given = first_stage.get(qid, {})
        run[qid] = _rerank_query(qid, queries[qid], dids, texts, score_fn, stopwatch, fusion, given) if dids else {}
    return run, stopwatch


def _rerank_query(
    qid: str,
    query: str,
    dids: list[str],
    texts: Mapping[str, str],
    score_fn: ScoreFn,
    stopwatch: _Stopwatch,
    fusion: RerankFusion,
    first_stage: Mapping[str, float],
) -> dict[str, float]:
    """Score one query's candidates (timed), check the scores, fuse them if asked, and rank them."""
    raw = stopwatch.call(score_fn, query, [texts[did] for did in dids])
    scores = [float(s) for s in raw]
    if len(scores) != len(dids):
        raise ValueError(f"score_fn returned {len(scores)} scores for {len(dids)} passages (query {qid!r})")
    if not all(math.isfinite(s) for s in scores):
        raise ValueError(f"score_fn returned a non-finite score for query {qid!r}")
    if fusion.active:
        scores = fusion.fuse(scores, [first_stage.get(did) for did in dids])
    order = sorted(range(len(dids)), key=lambda i: -scores[i])  # stable: ties keep candidate order
    return {dids[i]: scores[i] for i in order}


def build_candidates(
    run: Mapping[str, Mapping[str, float]],
    depth: int = 100,
    *,
    qrels: Mapping[str, Mapping[str, int]] | None = None,
    ensure_gold: bool = False,
) -> dict[str, list[str]]:
    """Turn a first-stage run into candidate lists for :func:`evaluate_rerank`.

    Each query keeps its top ``depth`` passages by score (ties keep the run's order), best first. This is the
    realistic setting: a relevant passage the first stage missed cannot be recovered by the reranker, so the
    reranked Recall@``depth`` equals the first stage's.

    With ``ensure_gold=True`` (analysis only), the relevant passages (grade > 0 in ``qrels``) the first stage
    missed are appended at the bottom after dropping as many of the lowest-ranked non-relevant candidates, so
    lists never grow past ``depth`` and the inserted passages gain nothing from tie-breaking. Only queries in
    ``run`` get candidates. Scores then measure the reranker alone, as an upper bound: do not compare them with
    pipeline results. Record the choice in the result's ``settings``.

    Args:
        run: Query id → {passage id → first-stage score}.
        depth: Candidates per query.
        qrels: Judgements (needed for ``ensure_gold``).
        ensure_gold: Insert missed relevant passages (see above).

    Returns:
        Query id → candidate passage ids, in first-stage order.

    Raises:
        ValueError: If ``ensure_gold`` is set without ``qrels``.

    Example:
        >>> build_candidates({"q1": {"a": 0.2, "b": 0.9, "c": 0.5}}, depth=2)
        {'q1': ['b', 'c']}
        >>> build_candidates({"q1": {"a": 0.2, "b": 0.9, "c": 0.5}}, depth=2, qrels={"q1": {"a": 1}}, ensure_gold=True)
        {'q1': ['b', 'a']}
    """
    check_positive_int(depth, name="depth")
    if ensure_gold and qrels is None:
        raise ValueError("ensure_gold=True needs qrels to know which passages are relevant")
    out: dict[str, list[str]] = {}
    for qid, scores in run.items():
        ranked = sorted(scores, key=lambda did: -float(scores[did]))  # stable sort keeps run order on ties
        out[str(qid)] = [str(did) for did in ranked[:depth]]
    if not ensure_gold or qrels is None:
        return out
    inserted = 0
    for qid, cands in out.items():
        judged = {str(d): g for d, g in qrels.get(qid, {}).items()}
        gold = sorted((d for d, g in judged.items() if g > 0), key=lambda d: -judged[d])[:depth]
        missing = [d for d in gold if d not in cands]
        if not missing:
            continue
        inserted += 1
        gold_set = set(gold)
        excess = len(cands) + len(missing) - depth
        if excess > 0:  # drop the lowest-ranked non-relevant candidates to make room
            drop: set[int] = set()
            for i in range(len(cands) - 1, -1, -1):
                if len(drop) == excess:
                    break
                if cands[i] not in gold_set:
                    drop.add(i)
            cands[:] = [did for i, did in enumerate(cands) if i not in drop]
        cands.extend(missing)
    logger.info("ensure_gold: inserted relevant passages for %d of %d queries", inserted, len(out))
    return out
