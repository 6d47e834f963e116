"""The settings of a training run (:class:`TrainConfig`) and its record (:class:`TrainResult`).

Both are plain frozen dataclasses shared by :mod:`jp_rerank.training.trainer` (which fills them) and
:mod:`jp_rerank.training.card` (which renders a model card from them); this module imports neither.
:func:`resolve_config` applies the keyword options of :func:`~jp_rerank.training.train` and the rules of resuming.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jp_rerank.defaults import MINING_BM25_TOKENIZER
from jp_rerank.training.mining import FirstStageName
from jp_rerank.training.model import BaseInfo, ClsMeanOption
from jp_rerank.training.readers import DataFormat

__all__ = [
    "OWNED_TRAINER_ARGS",
    "RESUMABLE",
    "LossName",
    "TrainConfig",
    "TrainPrecision",
    "TrainResult",
    "resolve_config",
]

LossName = Literal["bce", "listwise", "distill"]
"""``"bce"`` (binary cross-entropy, ``pos_weight``), ``"listwise"`` (LambdaLoss) or ``"distill"`` (MSE to a
teacher reranker's logits)."""

TrainPrecision = Literal["auto", "fp32", "bf16"]


RESUMABLE = frozenset(
    {
        "epochs",
        "max_steps",
        "time_budget",
        "budget_clock",
        "save_steps",
        "save_total_limit",
        "keep_checkpoints",
        "logging_steps",
        "progress",
        "device",
        "eval_precision",
    }
)
"""Settings that may change when a run is resumed (how long it runs, how it reports, where it runs)."""

OWNED_TRAINER_ARGS: Mapping[str, str] = {
    "output_dir": "the output folder (training writes to its checkpoints/ sub-folder)",
    "num_train_epochs": "epochs (--epochs)",
    "max_steps": "max_steps (--max-steps)",
    "per_device_train_batch_size": "batch_size (--batch-size)",
    "learning_rate": "learning_rate (--lr)",
    "weight_decay": "weight_decay (--weight-decay)",
    "warmup_ratio": "warmup_ratio (--warmup-ratio)",
    "warmup_steps": "warmup_ratio (--warmup-ratio)",
    "seed": "seed (--seed)",
    "data_seed": "seed (--seed)",
    "bf16": "precision (--precision)",
    "fp16": "precision (--precision)",
    "use_cpu": "device (--device)",
    "save_strategy": "save_steps (--save-steps; resuming needs step checkpoints)",
    "save_steps": "save_steps (--save-steps)",
    "save_total_limit": "save_total_limit (--save-total-limit)",
    "logging_strategy": "logging_steps (--logging-steps)",
    "logging_steps": "logging_steps (--logging-steps)",
    "eval_strategy": "eval_queries / eval_data (jp-rerank scores the held-out split itself)",
    "disable_tqdm": "progress (-q/--quiet)",
    "batch_sampler": "group_by_length (--no-group-by-length)",
    "resume_from_checkpoint": "resume (--resume)",
}
"""``CrossEncoderTrainingArguments`` fields that come from a :class:`TrainConfig` setting (named here), so
``trainer_args`` may not hold them."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of :func:`jp_rerank.training.train` (every field can also be passed to it as a keyword).

    Attributes:
        data_format: ``"auto"``, ``"jsonl"``, ``"beir"`` or ``"csv"`` (see :mod:`jp_rerank.training.readers`).
        split: qrels split of a BEIR folder.
        corpus: Extra passage pool (BEIR folder or JSONL) to mine negatives and held-out candidates from.
        with_title: Prefix BEIR passages with their title.
        skip_bad_rows: Leave malformed rows out (counted and reported) instead of stopping.
        normalize_text: NFKC-normalise training texts as :class:`jp_rerank.Reranker` does at inference.
        eval_data: A separate held-out file or BEIR folder; default: split ``eval_queries`` off the data.
        eval_queries: Held-out questions (at most a fifth of the data; 0: no evaluation).
        eval_depth: First-stage candidates reranked per held-out question.
        eval_precision: Precision of the held-out scoring (``"fp32"``: exact; ``"auto"``: the engine's default).
        evaluate_before: Score the held-out split with the starting model too.
        first_stage: ``"bm25"``, ``"dense"`` or ``"hybrid"``: mines negatives and finds held-out candidates.
        bm25: BM25 tokenizer spec (``"char1-2"``, ``"mecab"``...).
        embedder: Dense embedder for ``"dense"`` / ``"hybrid"`` (its query/document prompts are applied).
        num_negatives: Hard negatives per question (questions that already have enough are not mined).
        random_negatives: Random negatives per question, added after the hard ones.
        mining_depth: First-stage candidates considered per question when mining.
        relative_margin: Drop candidates scoring at least ``(1 - margin)`` x the positive's score (``None``: off).
        max_overlap: Drop candidates whose character-bigram containment with a positive reaches this.
        save_mined: Also write the mined set here (JSONL; train on it again later without mining).
        max_length: Token limit of a (query, passage) pair in training; saved with the model.
        cls_mean_layer: ``"auto"``, ``"on"`` or ``"off"``: the [CLS]-gets-the-mean layer for mean-pooled bases
            (see :mod:`jp_rerank.training.model`).
        keep_layers: Keep only the first N encoder layers of the base (a smaller, faster reranker).
        freeze_embeddings: Do not train the embedding matrices (much faster on CPU).
        freeze_layers: Do not train the lowest N encoder layers.
        loss: ``"bce"``, ``"listwise"`` or ``"distill"``.
        pos_weight: Weight of positives in BCE (default: negatives per positive).
        teacher: Teacher reranker for ``"distill"`` (alias, hub id or folder); its raw logits are the targets.
        epochs: Passes over the training pairs.
        max_steps: Stop after this many optimizer steps (overrides ``epochs``).
        time_budget: Seconds the whole run (this call) may take: reading and mining the data, held-out scoring
            (at most a tenth of the budget before and after training: as many questions as fit), training and
            saving. Training gets what is left and stops cleanly, saves and evaluates; its learning-rate schedule
            is shortened to end at the budget. A run whose steps before training leave under a tenth of the
            budget to train is refused before it trains (:class:`~jp_rerank.errors.TimeBudgetError`).
        budget_clock: ``"wall"`` (elapsed time) or ``"cpu"`` (this process's CPU time over all threads, so that
            other jobs on a shared machine do not use up the budget).
        batch_size: Pairs per step (for ``"listwise"``: pairs per step, divided into whole lists).
        learning_rate: Peak learning rate (linear warm-up, linear decay).
        warmup_ratio: Fraction of the steps spent warming up.
        weight_decay: AdamW weight decay.
        precision: ``"auto"`` (bf16 autocast where the hardware has native bf16: AVX-512 BF16 / AMX CPUs, recent
            GPUs), ``"fp32"`` or ``"bf16"``.
        group_by_length: Batch pairs of similar length (less padding).
        seed: Seed of everything random (split, mining, initialisation, batch order).
        save_steps: Checkpoint every N steps.
        save_total_limit: Checkpoints kept.
        keep_checkpoints: Keep ``<output>/checkpoints`` after the run (to resume it for more steps).
        logging_steps: Log loss and speed every N steps.
        progress: Show progress bars.
        device: ``"cpu"``, ``"cuda"``... (default: CUDA when available).
        trainer_args: More fields of sentence-transformers' ``CrossEncoderTrainingArguments``, passed as they are
            (``{"gradient_accumulation_steps": 4, "max_grad_norm": 0.5}``). Fields that a setting above decides
            (:data:`OWNED_TRAINER_ARGS`) are refused. An ``lr_scheduler_type`` other than ``"linear"``
            replaces the linear schedule, which is then not shortened to the time budget.

    Example:
        >>> cfg = TrainConfig(time_budget=1800, loss="listwise")
        >>> cfg.batch_size, cfg.first_stage, cfg.num_negatives
        (16, 'bm25', 3)
        >>> TrainConfig(trainer_args={"learning_rate": 1e-4})
        Traceback (most recent call last):
        ...
        ValueError: trainer_args: 'learning_rate' is set by jp-rerank; use learning_rate (--lr) instead
    """

    data_format: DataFormat = "auto"
    split: str = "train"
    corpus: str | None = None
    with_title: bool = True
    skip_bad_rows: bool = False
    normalize_text: bool = True
    eval_data: str | None = None
    eval_queries: int = 200
    eval_depth: int = 20
    eval_precision: Literal["fp32", "auto"] = "fp32"
    evaluate_before: bool = True
    first_stage: FirstStageName = "bm25"
    bm25: str = MINING_BM25_TOKENIZER
    embedder: str | None = None
    num_negatives: int = 3
    random_negatives: int = 1
    mining_depth: int = 30
    relative_margin: float | None = 0.05
    max_overlap: float = 0.9
    save_mined: str | None = None
    max_length: int = 256
    cls_mean_layer: ClsMeanOption = "auto"
    keep_layers: int | None = None
    freeze_embeddings: bool = True
    freeze_layers: int = 0
    loss: LossName = "bce"
    pos_weight: float | None = None
    teacher: str | None = None
    epochs: float = 1.0
    max_steps: int | None = None
    time_budget: float | None = None
    budget_clock: Literal["wall", "cpu"] = "wall"
    batch_size: int = 16
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    precision: TrainPrecision = "auto"
    group_by_length: bool = True
    seed: int = 42
    save_steps: int = 200
    save_total_limit: int = 2
    keep_checkpoints: bool = False
    logging_steps: int = 20
    progress: bool = True
    device: str | None = None
    trainer_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        choices: dict[str, tuple[Any, ...]] = {
            "data_format": ("auto", "jsonl", "beir", "csv"),
            "eval_precision": ("fp32", "auto"),
            "first_stage": ("bm25", "dense", "hybrid"),
            "cls_mean_layer": ("auto", "on", "off"),
            "loss": ("bce", "listwise", "distill"),
            "precision": ("auto", "fp32", "bf16"),
            "budget_clock": ("wall", "cpu"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}; got {getattr(self, name)!r}")
        positive = (
            "eval_depth",
            "mining_depth",
            "max_length",
            "batch_size",
            "save_steps",
            "save_total_limit",
            "logging_steps",
        )
        for name in positive:
            _check_int(getattr(self, name), name, low=1)
        for name in ("eval_queries", "num_negatives", "random_negatives", "freeze_layers", "seed"):
            _check_int(getattr(self, name), name, low=0)
        for name in ("max_steps", "keep_layers"):
            if getattr(self, name) is not None:
                _check_int(getattr(self, name), name, low=1)
        for name, low in (("epochs", 0.0), ("learning_rate", 0.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > low or value == math.inf:
                raise ValueError(f"{name} must be a finite number > {low}, got {value!r}")
        if self.time_budget is not None and not (
            isinstance(self.time_budget, int | float) and 0 < self.time_budget < math.inf
        ):
            raise ValueError(f"time_budget must be a positive number of seconds, got {self.time_budget!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.pos_weight is not None and not self.pos_weight > 0:
            raise ValueError(f"pos_weight must be > 0, got {self.pos_weight!r}")
        if self.loss == "distill" and not self.teacher:
            raise ValueError("loss='distill' needs a teacher reranker (teacher=...)")
        if self.first_stage != "bm25" and not self.embedder:
            raise ValueError(f"first_stage={self.first_stage!r} needs an embedder (embedder=...)")
        _check_trainer_args(self.trainer_args)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`as_dict` output (unknown keys ignored, so older run files still load)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def _check_int(value: object, name: str, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def _check_trainer_args(values: object) -> None:
    """Refuse ``trainer_args`` that are not fields of ``CrossEncoderTrainingArguments`` or that jp-rerank sets."""
    if not isinstance(values, dict):
        raise TypeError(f"trainer_args must be a dict, got {type(values).__name__}")
    for key, value in values.items():
        hint = OWNED_TRAINER_ARGS.get(key)
        if hint is not None:
            raise ValueError(f"trainer_args: {key!r} is set by jp-rerank; use {hint} instead")
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"trainer_args: the value of {key!r} must be JSON (it is recorded with the run), got {value!r}"
            ) from None
    if not values:
        return
    from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments

    fields = {f.name for f in dataclasses.fields(CrossEncoderTrainingArguments)}
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            raise ValueError(
                f"trainer_args: unknown key {key!r}: not a field of sentence-transformers' "
                f"CrossEncoderTrainingArguments" + (f" (did you mean {close[0]!r}?)" if close else "")
            )


def resolve_config(config: TrainConfig | None, options: Mapping[str, Any], saved: TrainConfig | None) -> TrainConfig:
    """The settings of a run: ``config`` with ``options`` applied, or, resuming, the ``saved`` ones with changes.

    Raises:
        TypeError: An option is not a :class:`TrainConfig` field.
        ValueError: Resuming would change a setting outside :data:`RESUMABLE`.

    Example:
        >>> resolve_config(None, {"max_steps": 5}, TrainConfig(loss="listwise")).loss
        'listwise'
    """
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(f"unknown training option(s) {', '.join(unknown)}; see jp_rerank.training.TrainConfig")
    if saved is None:
        return dataclasses.replace(config or TrainConfig(), **options)
    changes = dict(options)
    if config is not None:
        changes = {**{k: v for k, v in config.as_dict().items() if v != getattr(TrainConfig(), k)}, **changes}
    for name, value in changes.items():
        old = getattr(saved, name)
        if value != old and name not in RESUMABLE:
            raise ValueError(
                f"cannot change {name} when resuming (the run used {old!r}, now {value!r}); only "
                f"{', '.join(sorted(RESUMABLE))} may change"
            )
    return dataclasses.replace(saved, **changes)


@dataclass(frozen=True)
class TrainResult:
    """What :func:`jp_rerank.training.train` did.

    Attributes:
        output_dir: The saved model folder.
        base: The base model and what was done to it.
        global_step: Optimizer steps done (over all resumed runs).
        stopped_by: ``"epochs"``, ``"max_steps"`` or ``"time_budget"``.
        resumed_from_step: The checkpoint step this run resumed from (``None``: not resumed).
        train_queries: Training questions.
        train_pairs: Training pairs (positives + negatives).
        eval_queries: Held-out questions.
        metrics_first_stage: Held-out metrics of the first stage alone.
        metrics_before: Held-out metrics of the starting model (empty when not measured).
        metrics_after: Held-out metrics of the trained model, loaded from ``output_dir`` with ``Reranker``.
        losses: ``(step, training loss)`` as logged.
        train_seconds: Seconds in the training loop (this run).
        total_seconds: Seconds of the whole call.
        config: The settings used.
        data: Data statistics (source, format, counts, skipped rows).
        mining: What mining did.

    Example:
        >>> result = train("pairs.jsonl", "my-reranker", base="xsmall", max_steps=100)  # doctest: +SKIP
        >>> result.stopped_by, result.metrics_after["ndcg@10"] > result.metrics_before["ndcg@10"]  # doctest: +SKIP
        ('max_steps', True)
    """

    output_dir: Path
    base: BaseInfo
    global_step: int
    stopped_by: str
    resumed_from_step: int | None
    train_queries: int
    train_pairs: int
    eval_queries: int
    metrics_first_stage: dict[str, float]
    metrics_before: dict[str, float]
    metrics_after: dict[str, float]
    losses: tuple[tuple[int, float], ...]
    train_seconds: float
    total_seconds: float
    config: TrainConfig
    data: dict[str, Any] = field(default_factory=dict)
    mining: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (what ``training_result.json`` holds)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["output_dir"] = str(self.output_dir)
        out["base"] = self.base.as_dict()
        out["config"] = self.config.as_dict()
        out["losses"] = [list(x) for x in self.losses]
        return out
