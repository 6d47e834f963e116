"""The parts of training that subclass torch / transformers / sentence-transformers classes.

Imported only inside :func:`jp_rerank.training.train`, so ``import jp_rerank.training`` stays free of torch.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import torch
from sentence_transformers.base.sampler import DefaultBatchSampler
from sentence_transformers.cross_encoder import CrossEncoderTrainer
from transformers import TrainerCallback, get_scheduler
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_utils import SchedulerType

__all__ = [
    "BudgetCallback",
    "LengthGroupedBatchSampler",
    "LogCallback",
    "QuietProgressCallback",
    "StepPlan",
    "Trainer",
]

logger = logging.getLogger("jp_rerank.training")

_MEGABATCH = 32  # batches sorted together: enough to group lengths, small enough to stay random


class LengthGroupedBatchSampler(DefaultBatchSampler):
    """Batches of similar length (little compute goes to padding) that keep the label mix of the data.

    Each epoch, indices are shuffled (seeded by ``seed + epoch``, so a resumed run sees the same order) and cut
    into chunks of 32 batches. Within a chunk, positives and negatives are each sorted by length and dealt out so
    that batch ``k`` gets the ``k``-th length slice of both: every batch has about the data's share of positives
    (sorting a chunk by length alone would put long positives and short negatives in separate batches, and a
    binary loss then learns nothing). The batch order is shuffled. Length is the number of characters of every
    text column of a row. Batches hold ``batch_size`` rows give or take one; ``drop_last`` is not supported.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            drop_last=False,
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
        )
        label_columns = [c for c in (valid_label_columns or []) if c in dataset.column_names]
        columns = [c for c in dataset.column_names if c not in label_columns and c != "dataset_name"]
        lengths = [0] * len(dataset)
        for column in columns:
            for i, value in enumerate(dataset[column]):
                if isinstance(value, str):
                    lengths[i] += len(value)
                elif isinstance(value, list):
                    lengths[i] += sum(len(v) for v in value if isinstance(v, str))
        self.lengths = lengths
        keys = [0] * len(dataset)
        if label_columns and batch_size > 1:
            values = dataset[label_columns[0]]
            if values and all(isinstance(v, int | float) for v in values):
                binary = all(v in (0, 1) for v in values)
                keys = [int(v >= 0.5) if binary else int(v > 0) for v in values]
        self.keys = keys

    def __len__(self) -> int:
        n, chunk = len(self.lengths), self.batch_size * _MEGABATCH
        full, rest = divmod(n, chunk)
        return full * _MEGABATCH + math.ceil(rest / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator()
        gen.manual_seed(int(self.seed) + int(self.epoch))
        order = torch.randperm(len(self.lengths), generator=gen).tolist()
        chunk = self.batch_size * _MEGABATCH
        batches: list[list[int]] = []
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            n_batches = math.ceil(len(part) / self.batch_size)
            slices: list[list[int]] = [[] for _ in range(n_batches)]
            groups: dict[int, list[int]] = {}
            for i in part:
                groups.setdefault(self.keys[i], []).append(i)
            for key in sorted(groups):
                members = sorted(groups[key], key=lambda i: -self.lengths[i])
                for b in range(n_batches):
                    lo = round(b * len(members) / n_batches)
                    hi = round((b + 1) * len(members) / n_batches)
                    slices[b].extend(members[lo:hi])
            batches.extend(s for s in slices if s)
        for j in torch.randperm(len(batches), generator=gen).tolist():
            yield batches[j]


class StepPlan:
    """The planned number of optimizer steps, which a time budget may lower while training runs.

    The learning rate warms up linearly over ``warmup_ratio`` of the plan, then decays linearly to zero at the
    planned end, so a run stopped by its budget still ends with a small learning rate.
    """

    def __init__(self, warmup_ratio: float) -> None:
        self.warmup_ratio = warmup_ratio
        self.nominal = 1
        self.total = 1

    def set_nominal(self, steps: int) -> None:
        self.nominal = max(1, int(steps))
        self.total = self.nominal

    def factor(self, step: int) -> float:
        warmup = math.ceil(self.warmup_ratio * self.total)
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (self.total - step) / max(1, self.total - warmup))


class Trainer(CrossEncoderTrainer):
    """``CrossEncoderTrainer`` with the budget-aware linear schedule of :class:`StepPlan`.

    Another ``lr_scheduler_type`` (passed in ``trainer_args``) gets transformers' schedule of that name, with the
    same warm-up, over the planned steps.
    """

    def __init__(self, *args: Any, plan: StepPlan, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plan = plan

    def create_scheduler(
        self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None
    ) -> torch.optim.lr_scheduler.LRScheduler:
        if self.lr_scheduler is None:
            self.plan.set_nominal(num_training_steps)
            opt = optimizer if optimizer is not None else self.optimizer
            assert opt is not None
            if self.args.lr_scheduler_type == SchedulerType.LINEAR:
                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(opt, self.plan.factor)
            else:
                kwargs = self.args.lr_scheduler_kwargs  # a dict once TrainingArguments has parsed it
                self.lr_scheduler = get_scheduler(
                    self.args.lr_scheduler_type,
                    opt,
                    num_warmup_steps=math.ceil(self.plan.warmup_ratio * num_training_steps),
                    num_training_steps=num_training_steps,
                    scheduler_specific_kwargs=kwargs if isinstance(kwargs, dict) else None,
                )
            self._created_lr_scheduler = True
        return self.lr_scheduler


class BudgetCallback(TrainerCallback):
    """Stop (and save a checkpoint) when the loop's share of the time budget is spent; shrink the plan to fit it.

    ``budget_s`` counts from when the callback is made (the trainer is built), so setting up counts too.
    ``clock="wall"`` counts elapsed time; ``clock="cpu"`` counts this process's CPU time (all threads), so that
    other jobs on a shared machine do not use up the budget.
    """

    def __init__(self, budget_s: float | None, plan: StepPlan, clock: str = "wall") -> None:
        self.budget_s = budget_s
        self.plan = plan
        self.clock = clock
        self.start = time.monotonic()
        self.start_clock = self._now()
        self.loop_clock = self.start_clock
        self.first_step: int | None = None
        self.stopped = False

    def _now(self) -> float:
        return time.process_time() if self.clock == "cpu" else time.monotonic()

    def spent(self) -> float:
        """Budget seconds used since the trainer was built."""
        return self._now() - self.start_clock

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.start = time.monotonic()  # for the speed; the budget's clock runs on from when the trainer was built
        self.loop_clock = self._now()
        self.first_step = state.global_step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.budget_s is None:
            return control
        spent = self.spent()
        done = state.global_step - (self.first_step or 0)
        if done >= 5:
            per_step = max(1e-9, (self._now() - self.loop_clock) / done)
            fit = state.global_step + int(max(0.0, self.budget_s - spent) / per_step)
            self.plan.total = max(state.global_step + 1, min(self.plan.nominal, fit))
        if spent >= self.budget_s and state.global_step < state.max_steps:
            logger.info(
                "time budget of %.0f s (%s) reached at step %d: stopping", self.budget_s, self.clock, state.global_step
            )
            self.stopped = True
            control.should_training_stop = True
            control.should_save = True
        return control


class LogCallback(TrainerCallback):
    """Log loss, learning rate, speed (s/step, pairs/s), time left and budget left every ``logging_steps``."""

    def __init__(self, plan: StepPlan, budget: BudgetCallback, *, pairs_per_step: float = 0.0) -> None:
        self.plan = plan
        self.budget = budget
        self.pairs_per_step = pairs_per_step
        self.losses: list[tuple[int, float]] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not logs or "loss" not in logs:
            return
        step = state.global_step
        self.losses.append((step, float(logs["loss"])))
        elapsed = time.monotonic() - self.budget.start
        done = max(1, step - (self.budget.first_step or 0))
        per_step = elapsed / done
        total = min(self.plan.total, state.max_steps)
        eta = max(0, total - step) * per_step
        budget = ""
        if self.budget.budget_s is not None:
            left = max(0.0, self.budget.budget_s - self.budget.spent())
            eta = min(eta, left)  # the budget stops it first (the plan only shrinks to fit after a few steps)
            budget = f"  budget left {left:.0f} s ({self.budget.clock})"
        logger.info(
            "step %d/%d  loss %.4f  lr %.2e  %.2f s/step  %.1f pairs/s  elapsed %.0f s  left ~%.0f s%s",
            step,
            total,
            float(logs["loss"]),
            float(logs.get("learning_rate", 0.0)),
            per_step,
            self.pairs_per_step / per_step if per_step > 0 else 0.0,
            elapsed,
            eta,
            budget,
        )


class QuietProgressCallback(ProgressCallback):
    """transformers' progress bar, with the loss shown on the bar instead of a printed dict per log."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        bar = getattr(self, "training_bar", None)
        if bar is not None and logs and "loss" in logs:
            bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)
