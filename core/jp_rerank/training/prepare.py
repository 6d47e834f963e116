"""Steps 1 to 3 of a run, before any model is trained: read the data, mine hard negatives, hold questions out.

:func:`prepare` does them once and keeps the result (:class:`Prepared`) in the run folder: ``train.jsonl`` (the
mined training questions), ``heldout.json`` (the held-out questions and their first-stage candidates) and, for
distillation, ``teacher.json`` (the teacher's logits). A resumed run reads them back with :meth:`Prepared.load`
instead of mining again.
"""

from __future__ import annotations

import gc
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jp_rerank.training.checkpoints import read_json, write_json
from jp_rerank.training.config import TrainConfig
from jp_rerank.training.heldout import HeldOut, build_heldout, first_stage_metrics, format_metrics, split_heldout
from jp_rerank.training.mining import CorpusSearcher, mine_hard_negatives
from jp_rerank.training.readers import load_training_data
from jp_rerank.training.trainingset import TrainingSet, save_jsonl

__all__ = ["Prepared", "prepare"]

logger = logging.getLogger(__name__)

_TEACHER_BLOCK = 16  # questions scored by the teacher per call


@dataclass(frozen=True)
class Prepared:
    """What training needs, ready before the model is loaded.

    Attributes:
        train: The training questions with their negatives.
        heldout: The held-out questions and candidates (``None``: no evaluation).
        data: Data statistics (source, format, counts, skipped rows).
        mining: What mining did (:meth:`~jp_rerank.training.MiningStats.as_dict`).
        first_stage: Held-out metrics of the first stage alone.
        teacher: The teacher's logits per training question, positives then negatives (distillation only).
    """

    train: TrainingSet
    heldout: HeldOut | None
    data: dict[str, Any]
    mining: dict[str, Any]
    first_stage: dict[str, float]
    teacher: list[list[float]] | None = None

    def save(self, work: Path) -> None:
        """Write the training questions, held-out set and teacher scores into the run folder ``work``."""
        save_jsonl(self.train, work / "train.jsonl")
        if self.heldout is not None:
            write_json(work / "heldout.json", self.heldout.as_dict())
        if self.teacher is not None:
            write_json(work / "teacher.json", self.teacher)

    @classmethod
    def load(cls, work: Path, run: dict[str, Any]) -> Prepared:
        """Read back what :meth:`save` wrote, with the statistics recorded in ``run`` (``run.json``)."""
        heldout_file, teacher_file = work / "heldout.json", work / "teacher.json"
        return cls(
            train=load_training_data(work / "train.jsonl", data_format="jsonl"),
            heldout=HeldOut.from_dict(read_json(heldout_file)) if heldout_file.is_file() else None,
            data=run.get("data", {}),
            mining=run.get("mining", {}),
            first_stage=run.get("first_stage", {}),
            teacher=read_json(teacher_file) if teacher_file.is_file() else None,
        )


def _data_stats(ts: TrainingSet) -> dict[str, Any]:
    return {
        "source": ts.source,
        "format": ts.format,
        "questions": len(ts.queries),
        "pairs": ts.num_pairs,
        "positives": sum(len(q.positives) for q in ts.queries),
        "negatives_given": sum(len(q.negatives) for q in ts.queries),
        "pool": len(ts.corpus),
        "skipped_rows": ts.skipped,
    }


def _searcher(ts: TrainingSet, cfg: TrainConfig) -> CorpusSearcher:
    ids = list(ts.corpus)
    texts = [ts.corpus[i] for i in ids]
    return CorpusSearcher(ids, texts, method=cfg.first_stage, bm25=cfg.bm25, embedder=cfg.embedder)


def _read(data: str | os.PathLike[str] | TrainingSet, cfg: TrainConfig) -> TrainingSet:
    if isinstance(data, TrainingSet):
        return data
    return load_training_data(
        data,
        data_format=cfg.data_format,
        split=cfg.split,
        corpus=cfg.corpus,
        with_title=cfg.with_title,
        skip_bad_rows=cfg.skip_bad_rows,
    )


def _mine(ts: TrainingSet, searcher: CorpusSearcher | None, cfg: TrainConfig) -> tuple[TrainingSet, dict[str, Any]]:
    mined, stats = mine_hard_negatives(
        ts,
        searcher=searcher,
        first_stage=cfg.first_stage,
        bm25=cfg.bm25,
        embedder=cfg.embedder,
        num_negatives=cfg.num_negatives,
        random_negatives=cfg.random_negatives,
        depth=cfg.mining_depth,
        relative_margin=cfg.relative_margin,
        max_overlap=cfg.max_overlap,
        seed=cfg.seed,
    )
    if cfg.save_mined:
        logger.info("saved the mined set to %s", save_jsonl(mined, cfg.save_mined))
    return mined, stats.as_dict()


def _hold_out(
    mined: TrainingSet, searcher: CorpusSearcher | None, cfg: TrainConfig
) -> tuple[TrainingSet, HeldOut | None]:
    """The training questions and the held-out set: ``eval_data``, or questions split off ``mined``."""
    if cfg.eval_data:
        eval_set = load_training_data(
            cfg.eval_data, split="test", with_title=cfg.with_title, skip_bad_rows=cfg.skip_bad_rows
        )
        return mined, build_heldout(eval_set, _searcher(eval_set, cfg), cfg.eval_depth)
    train_set, held = split_heldout(mined, cfg.eval_queries, seed=cfg.seed)
    if cfg.eval_queries and not held.queries:
        logger.warning("too few questions (%d) to hold any out: no evaluation", len(mined.queries))
    heldout = build_heldout(held, searcher, cfg.eval_depth) if held.queries and searcher else None
    return train_set, heldout


def _trainable(train_set: TrainingSet, cfg: TrainConfig) -> TrainingSet:
    """The questions that can be trained on; raises when nothing the loss can learn from is left."""
    train_set = train_set.with_queries([q for q in train_set.queries if q.positives])
    if not any(q.negatives for q in train_set.queries):
        raise ValueError(
            "no negatives to train with: set num_negatives / random_negatives > 0 or give negatives in the data"
        )
    if cfg.loss == "listwise" and not any(len(q.positives) + len(q.negatives) > 1 for q in train_set.queries):
        raise ValueError("the listwise loss needs questions with at least two passages")
    return train_set


def prepare(data: str | os.PathLike[str] | TrainingSet, cfg: TrainConfig, work: Path) -> Prepared:
    """Read, mine, split and search; score the first stage; write everything training needs into ``work``.

    Raises:
        TrainingDataError: Malformed data (names file and line).
        ValueError: Nothing to train with (no negatives, or no lists for the listwise loss).
    """
    ts = _read(data, cfg)
    needs_search = cfg.num_negatives > 0 or (cfg.eval_queries > 0 and cfg.eval_data is None)
    searcher = _searcher(ts, cfg) if needs_search else None
    mined, mining = _mine(ts, searcher, cfg)
    train_set, heldout = _hold_out(mined, searcher, cfg)
    train_set = _trainable(train_set, cfg)
    first = first_stage_metrics(heldout, cfg.eval_depth) if heldout is not None and len(heldout) else {}
    if first:
        logger.info("held-out first stage (%s): %s", cfg.first_stage, format_metrics(first))
    teacher = teacher_scores(cfg.teacher, train_set, cfg.device) if cfg.loss == "distill" and cfg.teacher else None
    prepared = Prepared(train_set, heldout, _data_stats(ts), mining, first, teacher)
    prepared.save(work)
    return prepared


def teacher_scores(teacher: str, ts: TrainingSet, device: str | None) -> list[list[float]]:
    """Raw logits of the ``teacher`` reranker for each question's positives then negatives."""
    from tqdm.auto import tqdm

    from jp_rerank.rerank import Reranker

    reranker = Reranker(teacher, activation="none", device=device)
    out: list[list[float]] = []
    logger.info("scoring %d training pairs with the teacher %s", ts.num_pairs, teacher)
    with tqdm(total=ts.num_pairs, desc="teacher scores", unit="pair") as bar:
        for start in range(0, len(ts.queries), _TEACHER_BLOCK):
            chunk = ts.queries[start : start + _TEACHER_BLOCK]
            scores = reranker.score_many([q.query for q in chunk], [[*q.positives, *q.negatives] for q in chunk])
            for values in scores:
                out.append([float(v) if math.isfinite(float(v)) else 0.0 for v in values])
                bar.update(len(values))
    del reranker
    gc.collect()
    return out
