"""The time budget of a training run: one clock for the whole command, shared out between its steps.

``time_budget`` covers everything :func:`~jp_rerank.training.train` does: reading and mining the data, loading
the base, scoring the held-out split before and after training, training and saving. :class:`RunBudget` starts
when the call starts; the held-out scoring gets at most :data:`EVAL_SHARE` of the budget each time (as many
held-out questions as fit), and training gets what is left once the time to save and score afterwards is put
aside. A run whose steps before training leave too little of the budget to train is refused at once
(:class:`~jp_rerank.errors.TimeBudgetError`) rather than run over.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Literal

from jp_rerank.errors import TimeBudgetError

__all__ = ["EVAL_SHARE", "MIN_TRAIN_SHARE", "SAVE_SHARE", "RunBudget"]

logger = logging.getLogger(__name__)

EVAL_SHARE = 0.1
"""Most of the budget one held-out scoring (before, or after training) may take."""

SAVE_SHARE = 0.03
"""Share of the budget kept for saving the model, the card and the result."""

MIN_TRAIN_SHARE = 0.1
"""A run that would leave less than this share of its budget to training is refused before it trains."""


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


@dataclass
class RunBudget:
    """The budget of one :func:`~jp_rerank.training.train` call, counted from the call's start.

    Attributes:
        seconds: The budget (``None``: no budget; every method then says there is time).
        clock: ``"wall"`` (elapsed time) or ``"cpu"`` (this process's CPU time, all threads).

    Example:
        >>> budget = RunBudget(120.0)
        >>> budget.left() <= 120.0, budget.share(0.1) <= 12.0, RunBudget().left()
        (True, True, inf)
    """

    seconds: float | None = None
    clock: Literal["wall", "cpu"] = "wall"
    wall_start: float = field(default_factory=time.monotonic)
    cpu_start: float = field(default_factory=time.process_time)

    def now(self) -> float:
        """The budget's clock (seconds; only differences mean anything)."""
        return time.process_time() if self.clock == "cpu" else time.monotonic()

    def elapsed(self) -> float:
        """Wall-clock seconds since the call started (whatever the budget's clock)."""
        return time.monotonic() - self.wall_start

    def spent(self) -> float:
        """Budget seconds used since the call started."""
        if self.clock == "cpu":
            return time.process_time() - self.cpu_start
        return time.monotonic() - self.wall_start

    def left(self) -> float:
        """Budget seconds left (``inf`` without a budget, ``0`` once spent)."""
        if self.seconds is None:
            return math.inf
        return max(0.0, self.seconds - self.spent())

    def share(self, fraction: float) -> float | None:
        """``fraction`` of the budget, at most what is left (``None`` without a budget)."""
        if self.seconds is None:
            return None
        return min(fraction * self.seconds, self.left())

    def announce(self) -> None:
        """Say, before any work, what the budget covers."""
        if self.seconds is None:
            return
        logger.info(
            "time budget %s (%s clock) covers the whole run: reading and mining the data, held-out scoring (at "
            "most %d%% of it before and after training), training and saving; training gets what is left",
            _seconds(self.seconds),
            self.clock,
            round(100 * EVAL_SHARE),
        )

    def check(self, done: str, *, reserve: float = 0.0) -> float:
        """Seconds left for training once ``reserve`` is put aside; refuse when under :data:`MIN_TRAIN_SHARE`.

        Args:
            done: What the time went to so far, for the message (``"reading and mining the data"``).
            reserve: Seconds kept for the steps after training.

        Raises:
            TimeBudgetError: Too little of the budget is left to train.
        """
        if self.seconds is None:
            return math.inf
        spent, left = self.spent(), self.left() - reserve
        if left >= MIN_TRAIN_SHARE * self.seconds:
            return left
        kept = f"; {_seconds(reserve)} are kept for saving and scoring after training" if reserve else ""
        raise TimeBudgetError(
            f"time budget of {_seconds(self.seconds)} ({self.clock} clock) used up before training: "
            f"{_seconds(spent)} went to {done}{kept}; {_seconds(max(0.0, left))} would be left to train (under "
            f"{round(100 * MIN_TRAIN_SHARE)}% of the budget), so nothing was trained. The budget covers the whole "
            f"run: give a larger one (well over {_seconds(spent + reserve)}), or fewer held-out questions "
            "(eval_queries, --eval-queries) or a smaller mining depth"
        )
