"""The held-out questions: split them off the training data, find their candidates, score rerankers on them.

:func:`split_heldout` keeps questions that share a positive on one side; :func:`build_heldout` searches each
held-out question's first-stage candidates once; :func:`score_heldout` reranks them with a saved model, and
:func:`first_stage_metrics` scores the first stage's own ranking, so the "first stage", "before" and "after" rows
of a run are measured on exactly the same candidates.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jp_rerank.training.mining import CorpusSearcher
from jp_rerank.training.trainingset import TrainingSet

__all__ = [
    "EVAL_METRICS",
    "HeldOut",
    "HeldOutScore",
    "build_heldout",
    "first_stage_metrics",
    "format_metrics",
    "score_heldout",
    "split_heldout",
]

logger = logging.getLogger(__name__)

EVAL_METRICS: tuple[str, ...] = ("ndcg@10", "mrr@10", "recall@1", "recall@10")
"""Metrics of the held-out split (plus ``recall@<eval_depth>``, the first stage's ceiling)."""

_SCORE_BLOCK = 16  # held-out questions reranked per call


def _stable_key(seed: int, text: str) -> str:
    return hashlib.blake2b(f"{seed}\x00{text}".encode(), digest_size=8).hexdigest()


def _positive_groups(training_set: TrainingSet) -> list[list[int]]:
    """Question positions grouped so that questions sharing a positive passage are in one group (union-find)."""
    parent = list(range(len(training_set.queries)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, q in enumerate(training_set.queries):
        for text in q.positives:
            j = owner.setdefault(text, i)
            if j != i:
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(parent)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def split_heldout(training_set: TrainingSet, n: int, *, seed: int = 42) -> tuple[TrainingSet, TrainingSet]:
    """Hold out about ``n`` questions for evaluation, keeping questions that share a positive on one side.

    Questions whose positives overlap (e.g. several questions about one paragraph) form one group, and whole
    groups go to the held-out side, so held-out passages were never training positives. The choice depends only
    on ``seed`` and the question texts, not on file order. At most a fifth of the questions is held out.

    Returns:
        ``(train, heldout)``; ``heldout`` is empty when ``n <= 0`` or there are fewer than 10 questions.

    Example:
        >>> ts = TrainingSet.from_pairs([(f"質問{i}", f"文書{i}") for i in range(20)])
        >>> train, held = split_heldout(ts, 3)
        >>> len(train.queries), len(held.queries)
        (17, 3)
    """
    queries = training_set.queries
    limit = min(n, len(queries) // 5)
    if limit <= 0 or len(queries) < 10:
        return training_set, training_set.with_queries(())
    groups = _positive_groups(training_set)
    ordered = sorted(groups, key=lambda g: _stable_key(seed, min(queries[i].query for i in g)))
    held: set[int] = set()
    for group in ordered:
        if len(held) >= limit:
            break
        if len(held) + len(group) <= limit:
            held.update(group)
    train = [q for i, q in enumerate(queries) if i not in held]
    heldout = [q for i, q in enumerate(queries) if i in held]
    return training_set.with_queries(train), training_set.with_queries(heldout)


@dataclass(frozen=True)
class HeldOut:
    """The held-out questions and the first-stage candidates their rerankers are scored on.

    Attributes:
        queries: Question id → text.
        qrels: Question id → {relevant passage id → 1}.
        candidates: Question id → ``[(passage id, first-stage score), ...]``, best first.
        passages: Passage id → text, for every candidate.

    Example:
        >>> cands = {"q1": [("d2", 3.0), ("d1", 2.0)]}
        >>> held = HeldOut({"q1": "質問"}, {"q1": {"d1": 1}}, cands, {"d1": "a", "d2": "b"})
        >>> len(held), held.num_pairs, first_stage_metrics(held, 2)["mrr@10"]
        (1, 2, 0.5)
    """

    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    candidates: dict[str, list[tuple[str, float]]]
    passages: dict[str, str]

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def num_pairs(self) -> int:
        """Number of (question, candidate) pairs scored per evaluation."""
        return sum(len(c) for c in self.candidates.values())

    def head(self, n: int) -> HeldOut:
        """The first ``n`` questions (in file order) with their candidates and passages."""
        keep = list(self.queries)[: max(0, n)]
        candidates = {q: self.candidates[q] for q in keep}
        wanted = {d for hits in candidates.values() for d, _ in hits}
        return HeldOut(
            queries={q: self.queries[q] for q in keep},
            qrels={q: self.qrels[q] for q in keep},
            candidates=candidates,
            passages={d: text for d, text in self.passages.items() if d in wanted},
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "queries": self.queries,
            "qrels": self.qrels,
            "candidates": {q: [[d, s] for d, s in c] for q, c in self.candidates.items()},
            "passages": self.passages,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> HeldOut:
        """Rebuild from :meth:`as_dict` output."""
        return cls(
            queries=dict(values["queries"]),
            qrels={q: dict(r) for q, r in values["qrels"].items()},
            candidates={q: [(str(d), float(s)) for d, s in c] for q, c in values["candidates"].items()},
            passages=dict(values["passages"]),
        )


def build_heldout(heldout: TrainingSet, searcher: CorpusSearcher, depth: int) -> HeldOut:
    """Search the first-stage candidates of the held-out questions."""
    text_id = {text: did for did, text in zip(searcher.ids, searcher.texts, strict=True)}
    queries = {q.qid: q.query for q in heldout.queries}
    qrels = {q.qid: {text_id[p]: 1 for p in q.positives if p in text_id} for q in heldout.queries}
    logger.info("searching %d first-stage candidates for %d held-out questions", depth, len(queries))
    results = searcher.search(list(queries.values()), depth)
    candidates = dict(zip(queries, results, strict=True))
    wanted = {d for hits in candidates.values() for d, _ in hits}
    passages = {d: text for d, text in zip(searcher.ids, searcher.texts, strict=True) if d in wanted}
    return HeldOut(queries=queries, qrels=qrels, candidates=candidates, passages=passages)


def _metrics(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]], depth: int) -> dict[str, float]:
    from jp_rerank.evaluation.metrics import evaluate

    extra = f"recall@{depth}"
    names = EVAL_METRICS if extra in EVAL_METRICS else (*EVAL_METRICS, extra)
    judged = {q: r for q, r in qrels.items() if r}
    return {k: round(float(v), 4) for k, v in evaluate(run, judged, names).items()}


def first_stage_metrics(heldout: HeldOut, depth: int) -> dict[str, float]:
    """Held-out metrics of the first stage's own ranking."""
    run = {q: dict(hits) for q, hits in heldout.candidates.items()}
    return _metrics(run, heldout.qrels, depth)


@dataclass(frozen=True)
class HeldOutScore:
    """Held-out metrics of one model, and how much of the split they cover.

    Attributes:
        metrics: The metrics over the questions scored (empty when none could be).
        questions: Questions covered: the first ``questions`` of the split, in file order.
        total: Questions in the split.
        seconds: Seconds taken, loading the model included (on the clock scoring was timed with).
    """

    metrics: dict[str, float]
    questions: int
    total: int
    seconds: float


def _block_size(heldout: HeldOut, order: list[str], done: int, room: float | None, per_pair: float | None) -> int:
    """How many of the next questions to score: a block, or (with a time limit) what fits in ``room`` seconds."""
    if room is None:
        return min(_SCORE_BLOCK, len(order) - done)
    if per_pair is None:
        return 1  # the first question alone, to measure the speed
    n, cost = 0, 0.0
    for q in order[done : done + _SCORE_BLOCK]:
        cost += len(heldout.candidates[q]) * per_pair
        if cost > room:
            break
        n += 1
    return n


def _rank(values: Any, hits: list[tuple[str, float]]) -> dict[str, float]:
    import numpy as np

    values = np.where(np.isfinite(values), values, -1e9)
    ids = [d for d, _ in hits]
    order = sorted(range(len(ids)), key=lambda i: -float(values[i]))
    return {ids[i]: float(values[i]) for i in order}


def score_heldout(
    model: str | os.PathLike[str],
    heldout: HeldOut,
    depth: int,
    *,
    precision: str,
    device: str | None,
    desc: str,
    max_length: int | None = None,
    max_seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> HeldOutScore:
    """Rerank the held-out candidates with ``Reranker(model)`` and return the metrics.

    With ``max_seconds``, scoring (loading the model included, timed with ``clock``) stops before questions that
    would not fit: the first question is scored alone to measure the speed, then as many as fit. The metrics then
    cover the first :attr:`HeldOutScore.questions` questions, and a log line says so.
    """
    from tqdm.auto import tqdm

    from jp_rerank.rerank import Reranker

    started = clock()
    reranker = Reranker(model, precision=precision, device=device, max_length=max_length)  # type: ignore[arg-type]
    run: dict[str, dict[str, float]] = {}
    order, done, pairs, scoring = list(heldout.queries), 0, 0, 0.0
    with tqdm(total=heldout.num_pairs, desc=desc, unit="pair") as bar:
        while done < len(order):
            room = None if max_seconds is None else max_seconds - (clock() - started)
            n = _block_size(heldout, order, done, room, scoring / pairs if pairs else None)
            if n == 0:
                break
            chunk = [q for q in order[done : done + n] if heldout.candidates[q]]
            t0 = clock()
            docs = [[heldout.passages[d] for d, _ in heldout.candidates[q]] for q in chunk]
            for q, values in zip(chunk, reranker.score_many([heldout.queries[q] for q in chunk], docs), strict=True):
                run[q] = _rank(values, heldout.candidates[q])
                bar.update(len(heldout.candidates[q]))
                pairs += len(heldout.candidates[q])
            scoring += clock() - t0
            done += n
    del reranker
    gc.collect()
    seconds = clock() - started
    if done < len(order):
        logger.info(
            "%s: scored %d of %d held-out questions, what fits in %.1f s of the time budget (%.1f pairs/s)",
            desc,
            done,
            len(order),
            max_seconds or 0.0,
            pairs / scoring if scoring > 0 else 0.0,
        )
    metrics = _metrics(run, heldout.head(done).qrels, depth) if run else {}
    return HeldOutScore(metrics=metrics, questions=done, total=len(order), seconds=seconds)


def format_metrics(metrics: Mapping[str, float]) -> str:
    """``"ndcg@10 0.8123, mrr@10 0.7500"``, for log lines.

    Example:
        >>> format_metrics({"ndcg@10": 0.5, "mrr@10": 0.25})
        'ndcg@10 0.5000, mrr@10 0.2500'
    """
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
