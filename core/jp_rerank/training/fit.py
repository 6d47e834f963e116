"""Step 4 of a run: train with sentence-transformers' ``CrossEncoderTrainer``, and what jp-rerank adds to it.

jp-rerank builds the dataset (pairs, or lists for the listwise loss, texts normalised as at inference), the loss,
the ``CrossEncoderTrainingArguments`` (its own settings plus the user's ``trainer_args``) and the callbacks of
:mod:`jp_rerank.training._hf`: the time budget, the learning-rate plan shortened to fit it, the progress lines and
length-grouped batches. Nothing here imports torch at module level.
"""

from __future__ import annotations

import gc
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jp_rerank.text import normalize_text
from jp_rerank.training.checkpoints import last_complete_checkpoint
from jp_rerank.training.config import TrainConfig
from jp_rerank.training.trainingset import TrainingSet

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder
    from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments
    from transformers import TrainerCallback

__all__ = ["Fitted", "build_dataset", "fit", "probe_pairs", "resolve_bf16", "trainer_arguments"]

logger = logging.getLogger(__name__)

_TRAINER_ARG_DEFAULTS: dict[str, Any] = {
    "logging_first_step": True,
    "report_to": "none",
    "dataloader_pin_memory": False,
}
"""``CrossEncoderTrainingArguments`` jp-rerank chooses and ``trainer_args`` may override."""


@dataclass(frozen=True)
class Fitted:
    """What the training loop did.

    Attributes:
        global_step: Optimizer steps done (over all resumed runs).
        stopped_by: ``"epochs"``, ``"max_steps"`` or ``"time_budget"``.
        resumed_from: The checkpoint step this run resumed from (``None``: not resumed).
        losses: ``(step, training loss)`` as logged.
        seconds: Seconds in the training loop.
        settings: Dataset counts, loss settings, ``bf16`` and rows per step (``batch``), for the result's ``data``.
    """

    global_step: int
    stopped_by: str
    resumed_from: int | None
    losses: tuple[tuple[int, float], ...]
    seconds: float
    settings: dict[str, Any]


def _norm(text: str, cfg: TrainConfig) -> str:
    return normalize_text(text) if cfg.normalize_text else text


def probe_pairs(train_set: TrainingSet, cfg: TrainConfig, n: int = 16) -> list[tuple[str, str]]:
    """A few (question, positive) pairs, as training sees them, to measure the base's [CLS] spread on."""
    return [(_norm(q.query, cfg), _norm(q.positives[0], cfg)) for q in train_set.queries[:n]]


def _listwise_rows(cfg: TrainConfig, ts: TrainingSet) -> dict[str, list[Any]]:
    rows: dict[str, list[Any]] = {"query": [], "docs": [], "labels": []}
    for q in ts.queries:
        items = [(p, 1.0) for p in q.positives] + [(n, 0.0) for n in q.negatives]
        if len(items) < 2:
            continue
        random.Random(f"{cfg.seed}:{q.qid}").shuffle(items)
        rows["query"].append(_norm(q.query, cfg))
        rows["docs"].append([_norm(t, cfg) for t, _ in items])
        rows["labels"].append([y for _, y in items])
    return rows


def _pair_rows(cfg: TrainConfig, ts: TrainingSet, teacher: list[list[float]] | None) -> dict[str, list[Any]]:
    rows: dict[str, list[Any]] = {"query": [], "passage": [], "label": []}
    for i, q in enumerate(ts.queries):
        texts = [*q.positives, *q.negatives]
        values = teacher[i] if teacher is not None else [1.0] * len(q.positives) + [0.0] * len(q.negatives)
        if len(values) != len(texts):
            raise ValueError(f"teacher scores do not match question {q.qid!r}; start the run again")
        for text, value in zip(texts, values, strict=True):
            rows["query"].append(_norm(q.query, cfg))
            rows["passage"].append(_norm(text, cfg))
            rows["label"].append(float(value))
    return rows


def build_dataset(cfg: TrainConfig, ts: TrainingSet, teacher: list[list[float]] | None) -> tuple[Any, dict[str, Any]]:
    """The ``datasets.Dataset`` to train on (a list per question for ``"listwise"``, else a row per pair) and counts.

    Returns:
        The dataset and ``{"rows", "pairs", "positives"}`` (plus ``"negatives"`` for pairs).
    """
    from datasets import Dataset

    if cfg.loss == "listwise":
        rows = _listwise_rows(cfg, ts)
        counts = {
            "rows": len(rows["query"]),
            "pairs": sum(len(d) for d in rows["docs"]),
            "positives": sum(int(sum(x)) for x in rows["labels"]),
        }
        return Dataset.from_dict(rows), counts
    rows = _pair_rows(cfg, ts, teacher)
    counts = {
        "rows": len(rows["query"]),
        "pairs": len(rows["query"]),
        "positives": sum(len(q.positives) for q in ts.queries),
        "negatives": sum(len(q.negatives) for q in ts.queries),
    }
    return Dataset.from_dict(rows), counts


def _build_loss(cfg: TrainConfig, model: Any, counts: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    import torch
    from sentence_transformers.cross_encoder import losses

    if cfg.loss == "listwise":
        return losses.LambdaLoss(model, mini_batch_size=cfg.batch_size), {"loss": "LambdaLoss (NDCGLoss2++)"}
    if cfg.loss == "distill":
        return losses.MSELoss(model), {"loss": f"MSELoss to the logits of {cfg.teacher}"}
    weight = cfg.pos_weight
    if weight is None:
        weight = max(1.0, counts.get("negatives", 0) / max(1, counts.get("positives", 1)))
    return losses.BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(weight))), {
        "loss": "BinaryCrossEntropyLoss",
        "pos_weight": round(float(weight), 3),
    }


def resolve_bf16(precision: str, device: str) -> bool:
    """Whether to train with bf16 autocast: ``"auto"`` means where the hardware has native bf16."""
    if precision != "auto":
        return precision == "bf16"
    if device.startswith("cuda"):
        import torch

        return bool(torch.cuda.is_bf16_supported())
    if device == "cpu":
        from jp_rerank.runtime import cpu_supports_bf16

        return cpu_supports_bf16()
    return False


def trainer_arguments(
    cfg: TrainConfig, work: Path, *, per_step: int, bf16: bool, device: str
) -> CrossEncoderTrainingArguments:
    """``CrossEncoderTrainingArguments``: jp-rerank's defaults, then ``cfg.trainer_args``, then its own settings.

    :class:`TrainConfig` has refused ``trainer_args`` keys that the settings below decide.

    Example:
        >>> cfg = TrainConfig(trainer_args={"max_grad_norm": 0.5})  # doctest: +SKIP
        >>> trainer_arguments(cfg, Path("out"), per_step=16, bf16=False, device="cpu").max_grad_norm  # doctest: +SKIP
        0.5
    """
    from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments

    from jp_rerank.training import _hf

    owned = {
        "output_dir": str(work),
        "num_train_epochs": float(cfg.epochs),
        "max_steps": cfg.max_steps if cfg.max_steps is not None else -1,
        "per_device_train_batch_size": per_step,
        "learning_rate": cfg.learning_rate,
        "weight_decay": cfg.weight_decay,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "bf16": bf16,
        "use_cpu": device == "cpu",
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
        "logging_strategy": "steps",
        "logging_steps": cfg.logging_steps,
        "eval_strategy": "no",
        "disable_tqdm": not cfg.progress,
        "batch_sampler": _hf.LengthGroupedBatchSampler if cfg.group_by_length else "batch_sampler",
    }
    return CrossEncoderTrainingArguments(**{**_TRAINER_ARG_DEFAULTS, **cfg.trainer_args, **owned})


def _rows_per_step(cfg: TrainConfig, counts: dict[str, Any]) -> int:
    """``batch_size`` pairs per step: for ``"listwise"``, as many whole lists as hold about that many pairs."""
    if cfg.loss != "listwise":
        return cfg.batch_size
    return max(1, cfg.batch_size // max(1, round(counts["pairs"] / max(1, counts["rows"]))))


def _make_trainer(
    cfg: TrainConfig,
    ce: CrossEncoder,
    args: CrossEncoderTrainingArguments,
    dataset: Any,
    loss: Any,
    *,
    pairs_per_row: float,
    extra: Sequence[TrainerCallback],
    time_left: Callable[[], float] | None = None,
) -> tuple[Any, Any]:
    """The trainer with jp-rerank's schedule and callbacks, and its budget callback (which knows why it stopped).

    The budget of the loop is ``time_left()`` asked now (default: ``cfg.time_budget``); its clock starts now.
    """
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from jp_rerank.training import _hf

    plan = _hf.StepPlan(cfg.warmup_ratio)
    budget_s = max(0.0, time_left()) if time_left is not None else cfg.time_budget
    budget = _hf.BudgetCallback(budget_s, plan, cfg.budget_clock)
    pairs_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * pairs_per_row
    log_cb = _hf.LogCallback(plan, budget, pairs_per_step=pairs_per_step)
    trainer = _hf.Trainer(
        model=ce, args=args, train_dataset=dataset, loss=loss, callbacks=[budget, log_cb, *extra], plan=plan
    )
    # our LogCallback logs each step's loss: drop transformers' printed log dicts, keep a progress bar
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    if cfg.progress:
        trainer.add_callback(_hf.QuietProgressCallback)
    schedule = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
    if schedule != "linear" and budget_s is not None:
        logger.warning("the %s learning-rate schedule runs over the planned steps, not to the time budget", schedule)
    return trainer, budget


def _train(trainer: Any, checkpoint: str | None, work: Path) -> float:
    """Run the loop; returns its seconds. Ctrl-C logs which checkpoint to resume from."""
    start = time.monotonic()
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    except KeyboardInterrupt:
        last = last_complete_checkpoint(work)
        logger.warning(
            "training interrupted at step %d; %s",
            trainer.state.global_step,
            f"continue from {last} with resume=True (--resume)" if last else "no checkpoint was written yet",
        )
        raise
    return time.monotonic() - start


def fit(
    ce: CrossEncoder,
    cfg: TrainConfig,
    train_set: TrainingSet,
    teacher: list[list[float]] | None,
    work: Path,
    *,
    device: str,
    resume: bool,
    callbacks: Sequence[TrainerCallback] | None = None,
    on_start: Callable[[], None] = lambda: None,
    time_left: Callable[[], float] | None = None,
) -> Fitted:
    """Train ``ce`` in place on ``train_set``, checkpointing into ``work`` (from its last checkpoint if ``resume``).

    ``on_start`` runs once everything is built, just before the first step (the run records that it is training).
    ``time_left`` gives the seconds the loop may take, asked as the trainer is built (default: ``cfg.time_budget``
    seconds; :func:`~jp_rerank.training.train` passes what is left of the run's budget).
    """
    dataset, counts = build_dataset(cfg, train_set, teacher)
    loss, loss_info = _build_loss(cfg, ce, counts)
    bf16 = resolve_bf16(cfg.precision, device)
    per_step = _rows_per_step(cfg, counts)
    args = trainer_arguments(cfg, work, per_step=per_step, bf16=bf16, device=device)
    pairs_per_row = counts["pairs"] / max(1, counts["rows"])
    trainer, budget = _make_trainer(
        cfg, ce, args, dataset, loss, pairs_per_row=pairs_per_row, extra=callbacks or (), time_left=time_left
    )
    checkpoint = last_complete_checkpoint(work) if resume and work.is_dir() else None
    if resume and checkpoint is None:
        logger.warning("no checkpoint in %s yet: training from the start with the prepared data", work)
    logger.info(
        "training on %d pairs (%d questions), %s, batch %d, lr %g, %s%s%s",
        counts["pairs"],
        len(train_set.queries),
        loss_info["loss"],
        per_step,
        cfg.learning_rate,
        "bf16 autocast" if bf16 else "fp32",
        f", max {cfg.max_steps} steps" if cfg.max_steps else f", {cfg.epochs:g} epochs",
        f", {budget.budget_s:.0f} s of the time budget ({cfg.budget_clock})" if budget.budget_s is not None else "",
    )
    on_start()
    seconds = _train(trainer, checkpoint, work)
    step = int(trainer.state.global_step)
    if budget.stopped:
        stopped_by = "time_budget"
    elif cfg.max_steps is not None and step >= cfg.max_steps:
        stopped_by = "max_steps"
    else:
        stopped_by = "epochs"
    logger.info("training stopped by %s at step %d after %.0f s", stopped_by, step, seconds)
    losses = tuple((int(e["step"]), float(e["loss"])) for e in trainer.state.log_history if "loss" in e)
    del trainer
    gc.collect()
    return Fitted(
        global_step=step,
        stopped_by=stopped_by,
        resumed_from=int(checkpoint.rsplit("-", 1)[-1]) if checkpoint else None,
        losses=losses,
        seconds=seconds,
        settings={**counts, "loss_settings": loss_info, "bf16": bf16, "batch": per_step},
    )
