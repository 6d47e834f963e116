"""Fine-tune a Japanese cross-encoder reranker on your own (question, passage) data: :func:`train`.

One call runs the steps of ``docs/training.md``: read the data and mine hard negatives
(:mod:`~jp_rerank.training.prepare`), hold out a split of questions and score it with the base model
(:mod:`~jp_rerank.training.heldout`), train with sentence-transformers' ``CrossEncoderTrainer``
(:mod:`~jp_rerank.training.fit`), save a standard ``CrossEncoder`` folder (loads with ``Reranker(path)``, the
LangChain / LlamaIndex adapters and ``jp-rerank eval``), score the split again and write a model card
(``README.md``) and ``training_result.json``.

While it runs, ``<output>/checkpoints/`` holds the prepared data, ``run.json`` and transformers checkpoints
(:mod:`~jp_rerank.training.checkpoints`); ``train(..., resume=True)`` continues an interrupted run from its last
checkpoint. The folder is removed when the run finishes (``keep_checkpoints=True`` keeps it, so a run stopped by its
time budget can be resumed for more steps).

A ``time_budget`` covers the whole call (:mod:`~jp_rerank.training.budget`): what the steps before training take is
measured, the held-out scoring is held to a share of the budget, and training gets what is left.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jp_rerank._version import __version__
from jp_rerank.training.budget import EVAL_SHARE, SAVE_SHARE, RunBudget
from jp_rerank.training.card import render_model_card
from jp_rerank.training.checkpoints import RUN_FILE, WORK_DIR, read_json, remove_run, run_lock, write_json
from jp_rerank.training.config import TrainConfig, TrainResult, resolve_config
from jp_rerank.training.heldout import HeldOut, HeldOutScore, first_stage_metrics, format_metrics, score_heldout
from jp_rerank.training.prepare import Prepared, prepare
from jp_rerank.training.trainingset import TrainingSet

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder
    from transformers import TrainerCallback

    from jp_rerank.training.model import BaseInfo

__all__ = ["RESULT_FILE", "train"]

logger = logging.getLogger(__name__)

RESULT_FILE = "training_result.json"
"""The run's :class:`TrainResult` as JSON, next to the saved model."""


@dataclass
class _Run:
    """One run: its settings, base, output folder, ``run.json`` state and prepared data."""

    cfg: TrainConfig
    base: str
    out: Path
    state: dict[str, Any]
    prepared: Prepared

    @property
    def work(self) -> Path:
        return self.out / WORK_DIR

    def record(self, **changes: Any) -> None:
        """Update ``run.json``."""
        self.state.update(changes)
        write_json(self.work / RUN_FILE, self.state)


def _resumed_run(
    out: Path,
    data: str | os.PathLike[str] | TrainingSet,
    base: str | os.PathLike[str] | None,
    config: TrainConfig | None,
    options: Mapping[str, Any],
    budget: RunBudget,
) -> _Run:
    work = out / WORK_DIR
    if not (work / RUN_FILE).is_file():
        hint = " (a run stopped while preparing its data: run again without resume)" if work.is_dir() else ""
        raise FileNotFoundError(f"nothing to resume in {out}: {work / RUN_FILE} not found{hint}")
    state = read_json(work / RUN_FILE)
    cfg = resolve_config(config, options, TrainConfig.from_dict(state["config"]))
    base_name = str(state["base"])
    if base is not None and str(base) != base_name:
        raise ValueError(f"cannot change the base when resuming (the run used {base_name!r}, now {str(base)!r})")
    if not isinstance(data, TrainingSet) and str(data) != state.get("data", {}).get("source"):
        logger.warning("resuming: using the data prepared from %s, not %s", state["data"].get("source"), data)
    logger.info("resuming the run in %s", out)
    _start_budget(budget, cfg)
    return _Run(cfg, base_name, out, state, Prepared.load(work, state))


def _new_run(
    out: Path,
    data: str | os.PathLike[str] | TrainingSet,
    base: str | os.PathLike[str] | None,
    config: TrainConfig | None,
    options: Mapping[str, Any],
    budget: RunBudget,
) -> _Run:
    work = out / WORK_DIR
    if work.is_dir() and not (work / RUN_FILE).exists() and [p.name for p in out.iterdir()] == [WORK_DIR]:
        logger.warning("removing %s, left by a run stopped while preparing its data", work)
        shutil.rmtree(work)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if (work / RUN_FILE).is_file():
            raise FileExistsError(
                f"{out} holds an unfinished training run; pass resume=True (--resume) to continue it, or choose "
                "another folder"
            )
        raise FileExistsError(f"output folder {out} exists and is not empty; choose a new or empty folder")
    cfg = resolve_config(config, options, None)
    from jp_rerank.presets import DEFAULT_RERANKER

    base_name = str(base) if base is not None else DEFAULT_RERANKER
    _start_budget(budget, cfg)
    work.mkdir(parents=True, exist_ok=True)
    try:
        prepared = prepare(data, cfg, work)
        budget.check("reading and mining the data")
    except BaseException:
        remove_run(out)
        raise
    state = {"jp_rerank": __version__, "base": base_name, "config": cfg.as_dict()}
    run = _Run(cfg, base_name, out, state, prepared)
    run.record(status="prepared", data=prepared.data, mining=prepared.mining, first_stage=prepared.first_stage)
    return run


def _start_budget(budget: RunBudget, cfg: TrainConfig) -> None:
    """Set the run's budget from its settings and say, before any work, what it covers."""
    budget.seconds, budget.clock = cfg.time_budget, cfg.budget_clock
    budget.announce()


def train(
    data: str | os.PathLike[str] | TrainingSet,
    output_dir: str | os.PathLike[str],
    *,
    base: str | os.PathLike[str] | None = None,
    config: TrainConfig | None = None,
    resume: bool = False,
    callbacks: Sequence[TrainerCallback] | None = None,
    **options: Any,
) -> TrainResult:
    """Fine-tune a cross-encoder reranker on your data and save it as a standard CrossEncoder folder.

    Args:
        data: JSONL, CSV or BEIR folder (see :mod:`jp_rerank.training.readers`), or a :class:`TrainingSet`.
        output_dir: Folder to write (must be new or empty, unless resuming).
        base: Base model: a reranker alias (``"xsmall"``...), hub id or local folder; a sentence-transformers
            embedder or a plain encoder gets a fresh head (and, when mean-pooled, the [CLS]-mean layer).
            Default: :data:`jp_rerank.presets.DEFAULT_RERANKER` (resuming: the run's base).
        config: Settings (:class:`TrainConfig`); ``options`` override single fields.
        resume: Continue the interrupted (or checkpoint-kept) run in ``output_dir`` from its last checkpoint,
            with its prepared data and settings; only run-length settings (``max_steps``, ``epochs``,
            ``time_budget``...) may change.
            A ``time_budget`` covers the whole call: reading, mining, held-out scoring, training and saving.
        callbacks: Extra ``transformers.TrainerCallback`` objects.
        **options: Any :class:`TrainConfig` field, e.g. ``max_steps=500``, ``time_budget=1800``,
            ``trainer_args={"gradient_accumulation_steps": 4}``.

    Returns:
        What was done, with held-out metrics of the first stage, the starting model and the trained model.

    Raises:
        TrainingDataError: Malformed training data (names file and line).
        FileExistsError: ``output_dir`` is not empty (or holds an unfinished run and ``resume`` is false), or
            another run is writing to it now.
        FileNotFoundError: Data not found, or nothing to resume.
        TimeBudgetError: The steps before training used up the ``time_budget`` (a ``ValueError``).
        ModelLoadError: The base (or teacher) cannot be loaded.
        ValueError / TypeError: Bad settings.

    Example:
        >>> from jp_rerank.training import train
        >>> result = train("faq_pairs.jsonl", "models/my-reranker", base="xsmall", time_budget=1800)  # doctest: +SKIP
        >>> result.metrics_before["ndcg@10"], result.metrics_after["ndcg@10"]  # doctest: +SKIP
        (0.71, 0.83)
    """
    budget = RunBudget()  # the budget counts from here, whatever it is set to once the settings are read
    out = Path(output_dir)
    with run_lock(out):
        open_run = _resumed_run if resume else _new_run
        run = open_run(out, data, base, config, options, budget)
        try:
            return _train_prepared(run, resume, callbacks, budget)
        except Exception:
            if not resume and run.state.get("status") == "prepared":
                # failed before the training loop (a base that does not load, an option it does not support): leave
                # nothing behind, so the same command with the mistake fixed runs (resuming cannot change the base)
                remove_run(out)
            raise


def _score(
    run: _Run, model: str | Path, heldout: HeldOut, device: str, desc: str, budget: RunBudget, cap: float | None
) -> HeldOutScore:
    cfg = run.cfg
    return score_heldout(
        model,
        heldout,
        cfg.eval_depth,
        precision=cfg.eval_precision,
        device=device,
        desc=desc,
        max_length=cfg.max_length,
        max_seconds=cap,
        clock=budget.now,
    )


def _score_before(run: _Run, ce: CrossEncoder, info: BaseInfo, device: str, budget: RunBudget) -> dict[str, float]:
    """Held-out metrics of the model as training starts (recorded in ``run.json``, so a resumed run keeps them).

    With a time budget, only the held-out questions that fit in its :data:`EVAL_SHARE` are scored; ``run.json``
    records how many (the scoring after training takes the same ones) and how long it took.
    """
    before: dict[str, float] = dict(run.state.get("before") or {})
    heldout = run.prepared.heldout
    if heldout is None or not len(heldout) or not run.cfg.evaluate_before or before:
        return before
    # A modified base (new head, kept layers, [CLS]-mean layer) is scored as it starts training: saved first.
    initial: str | Path = run.work / "initial" if info.modified else info.location  # a hub id stays a str
    if info.modified:
        ce.save_pretrained(str(initial))
    scored = _score(run, initial, heldout, device, "held-out (before)", budget, budget.share(EVAL_SHARE))
    if info.modified:
        shutil.rmtree(initial, ignore_errors=True)
    logger.info("held-out before training: %s", format_metrics(scored.metrics))
    run.record(before=scored.metrics, eval_questions=scored.questions, before_seconds=round(scored.seconds, 3))
    return scored.metrics


def _eval_questions(run: _Run) -> int | None:
    """How many held-out questions the scoring before training covered (``None``: it was not done)."""
    recorded = run.state.get("eval_questions")
    if recorded is not None:
        return int(recorded)
    heldout = run.prepared.heldout  # a run.json that predates eval_questions: "before" covered every question
    return len(heldout) if run.state.get("before") and heldout is not None else None


def _after_reserve(run: _Run, budget: RunBudget) -> float:
    """Budget seconds kept for what follows training: saving, and scoring the held-out questions again."""
    if budget.seconds is None:
        return 0.0
    scoring = 0.0
    if run.prepared.heldout is not None and len(run.prepared.heldout):
        recorded = run.state.get("before_seconds")
        scoring = float(recorded) if recorded is not None else EVAL_SHARE * budget.seconds
    return scoring + SAVE_SHARE * budget.seconds


def _score_after(run: _Run, device: str, budget: RunBudget) -> HeldOutScore | None:
    """Held-out metrics of the saved model, on the questions scored before training (or what fits in the budget)."""
    heldout = run.prepared.heldout
    if heldout is None or not len(heldout):
        return None
    n = _eval_questions(run)
    cap = None if n is not None or budget.seconds is None else budget.left()
    questions = heldout.head(n) if n is not None else heldout
    scored = _score(run, run.out, questions, device, "held-out (after)", budget, cap)
    logger.info("held-out after training: %s", format_metrics(scored.metrics))
    return scored


def _plan_budget(run: _Run, budget: RunBudget) -> float:
    """The budget seconds kept for after training; refuses (:class:`TimeBudgetError`) when too little is left to train.

    Training gets what is left of the budget less these seconds.
    """
    reserve = _after_reserve(run, budget)
    left = budget.check("reading and mining the data, loading the base and held-out scoring", reserve=reserve)
    if budget.seconds is not None:
        logger.info(
            "time budget: %.0f s spent before training, training gets %.0f s, %.0f s kept for saving and the "
            "held-out scoring after",
            budget.spent(),
            left,
            reserve,
        )
    return reserve


def _train_prepared(
    run: _Run, resume: bool, callbacks: Sequence[TrainerCallback] | None, budget: RunBudget
) -> TrainResult:
    from jp_rerank.extras import is_available, require

    for module in ("accelerate", "datasets"):
        if not is_available(module):
            require(module, "train")  # raises ImportError naming the extra
    from transformers import set_seed

    from jp_rerank.runtime import resolve_device
    from jp_rerank.training.fit import fit, probe_pairs
    from jp_rerank.training.model import load_base

    cfg, prepared = run.cfg, run.prepared
    device = resolve_device(cfg.device)
    set_seed(cfg.seed)
    ce, info = load_base(
        run.base,
        max_length=cfg.max_length,
        cls_mean_layer=cfg.cls_mean_layer,
        keep_layers=cfg.keep_layers,
        freeze_embeddings=cfg.freeze_embeddings,
        freeze_layers=cfg.freeze_layers,
        probe_pairs=probe_pairs(prepared.train, cfg),
        device=device,
    )
    budget.check("reading and mining the data and loading the base")
    before = _score_before(run, ce, info, device, budget)
    reserve = _plan_budget(run, budget)
    fitted = fit(
        ce,
        cfg,
        prepared.train,
        prepared.teacher,
        run.work,
        device=device,
        resume=resume,
        callbacks=callbacks,
        on_start=lambda: run.record(status="training"),
        time_left=None if budget.seconds is None else lambda: budget.left() - reserve,
    )
    logger.info("saving to %s", run.out)
    ce.save_pretrained(str(run.out))
    after = _score_after(run, device, budget)
    first = dict(prepared.first_stage)
    if after is not None and prepared.heldout is not None and after.questions < len(prepared.heldout):
        first = first_stage_metrics(prepared.heldout.head(after.questions), run.cfg.eval_depth)  # the same questions
    result = TrainResult(
        output_dir=run.out,
        base=info,
        global_step=fitted.global_step,
        stopped_by=fitted.stopped_by,
        resumed_from_step=fitted.resumed_from,
        train_queries=len(prepared.train.queries),
        train_pairs=int(fitted.settings["pairs"]),
        eval_queries=after.questions if after is not None else 0,
        metrics_first_stage=first,
        metrics_before=before,
        metrics_after=after.metrics if after is not None else {},
        losses=fitted.losses,
        train_seconds=round(fitted.seconds, 1),
        total_seconds=round(budget.elapsed(), 1),
        config=cfg,
        data={**prepared.data, **fitted.settings},
        mining=dict(prepared.mining),
    )
    _finish(run, result)
    return result


def _finish(run: _Run, result: TrainResult) -> None:
    """Write the model card and ``training_result.json``; remove the run folder (or mark it done, when kept)."""
    (run.out / "README.md").write_text(render_model_card(result), encoding="utf-8")
    write_json(run.out / RESULT_FILE, result.as_dict())
    if run.cfg.keep_checkpoints:
        run.record(status="done")
    else:
        shutil.rmtree(run.work, ignore_errors=True)
    logger.info("done: %s (%.0f s in all)", run.out, result.total_seconds)
