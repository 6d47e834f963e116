"""The model card (``README.md``) written next to a reranker trained by :func:`jp_rerank.training.train`.

The card's text is the template ``model_card.md`` shipped in this package (``string.Template`` placeholders such
as ``${name}``); :func:`render_model_card` fills every placeholder from the run's :class:`TrainResult`.
"""

from __future__ import annotations

import platform
import string
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from jp_rerank._version import __version__
from jp_rerank.training.config import TrainResult

__all__ = ["render_model_card"]


def _versions() -> str:
    from importlib import metadata

    parts = [f"jp-rerank {__version__}"]
    for dist in ("sentence-transformers", "transformers", "torch"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(parts)


def _machine() -> str:
    from jp_rerank.hardware import machine_info

    info = machine_info(include_torch=False)
    return f"{info.cpu_model}, {info.usable_cores} usable cores, {platform.system()}"


def _metrics_table(rows: Sequence[tuple[str, Mapping[str, float]]]) -> list[str]:
    names: list[str] = []
    for _, metrics in rows:
        names.extend(m for m in metrics if m not in names)
    if not names:
        return ["_No held-out evaluation was run._"]
    lines = ["| model | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for label, metrics in rows:
        if metrics:
            lines.append(
                f"| {label} | " + " | ".join(f"{metrics[m]:.4f}" if m in metrics else "" for m in names) + " |"
            )
    return lines


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _model_values(result: TrainResult) -> dict[str, Any]:
    base = result.base
    adapt = []
    if base.kind != "cross-encoder":
        adapt.append(f"a new single-logit classification head (the base was a {base.kind.replace('-', ' ')})")
    if base.kept_layers:
        adapt.append(f"only the first {base.kept_layers} of {base.base_layers} encoder layers kept")
    if base.cls_mean_layer:
        ratio = (
            f"; measured [CLS] spread ratio {base.cls_spread_ratio:.3f}" if base.cls_spread_ratio is not None else ""
        )
        adapt.append(
            "one extra encoder layer initialised to hand [CLS] the mean of all tokens (uniform attention, identity "
            f"value/output, zero feed-forward), because the base was trained with {base.pooling or 'mean'} pooling"
            f"{ratio}"
        )
    if base.frozen:
        adapt.append("frozen during training: " + ", ".join(base.frozen))
    return {
        "base": base.name,
        "base_model_line": "" if base.name.startswith(("/", ".", "~")) else f"base_model: {base.name}\n",
        "kind": base.kind,
        "model_type": base.model_type,
        "base_layers": base.base_layers,
        "pooling": f", {base.pooling} pooling" if base.pooling else "",
        "adaptations": "".join(f"- {item}\n" for item in adapt),
        "total_parameters": f"{base.total_parameters / 1e6:.1f}",
        "trainable_parameters": f"{base.trainable_parameters / 1e6:.1f}",
        "max_length": base.max_length,
    }


def _eval_values(result: TrainResult) -> dict[str, Any]:
    cfg, base = result.config, result.base
    rows = [(f"first stage alone ({cfg.first_stage})", result.metrics_first_stage)]
    if result.metrics_before:
        adapted = " (as adapted, untrained head)" if base.modified else ""
        rows.append((f"before: {base.name}{adapted}", result.metrics_before))
    rows.append((f"after: {result.output_dir.name}", result.metrics_after))
    by_passage = ", split off the training data by passage (questions sharing a positive stay on one side)"
    return {
        "eval_queries": result.eval_queries,
        "eval_source": " (a separate file)" if cfg.eval_data else by_passage,
        "eval_depth": cfg.eval_depth,
        "first_stage": cfg.first_stage,
        "pool": result.data.get("pool", "?"),
        "eval_precision": cfg.eval_precision,
        "metrics_table": "\n".join(_metrics_table(rows)),
    }


def _mining_text(result: TrainResult) -> str:
    cfg, mining = result.config, result.mining
    if not mining.get("queries_mined"):
        return "negatives as given in the data (no mining)"
    settings = mining.get("settings", {})
    return (
        f"{mining.get('hard_negatives', 0)} hard negatives mined with {mining.get('method', cfg.first_stage)} "
        f"(depth {settings.get('depth', cfg.mining_depth)}, tokenizer {cfg.bm25}"
        + (f", embedder {cfg.embedder}" if cfg.first_stage != "bm25" else "")
        + f"; dropped {mining.get('dropped_duplicates', 0)} near-duplicates of positives (bigram containment >= "
        f"{cfg.max_overlap}) and {mining.get('dropped_margin', 0)} candidates scoring >= "
        f"{1 - (cfg.relative_margin or 0):.2f} x the positive), plus {mining.get('random_negatives', 0)} random "
        "negatives"
    )


def _data_values(result: TrainResult) -> dict[str, Any]:
    data = result.data
    return {
        "source": data.get("source", ""),
        "format": data.get("format", ""),
        "questions": data.get("questions", "?"),
        "skipped_rows": data.get("skipped_rows", 0),
        "train_queries": result.train_queries,
        "train_pairs": result.train_pairs,
        "positives": data.get("positives", "?"),
        "negatives": f", {data['negatives']} negatives" if "negatives" in data else "",
        "negatives_text": _mining_text(result),
    }


def _settings_values(result: TrainResult) -> dict[str, Any]:
    cfg, data = result.config, result.data
    loss_settings = data.get("loss_settings", {})
    loss = loss_settings.get("loss", cfg.loss)
    if "pos_weight" in loss_settings:
        loss += f", pos_weight {loss_settings['pos_weight']}"
    schedule = str(cfg.trainer_args.get("lr_scheduler_type", "linear"))
    extra = ", ".join(f"`{k}={v!r}`" for k, v in cfg.trainer_args.items())
    return {
        "loss": loss,
        "steps": result.global_step,
        "stopped_by": result.stopped_by.replace("_", " "),
        "resumed": f"; resumed from step {result.resumed_from_step}" if result.resumed_from_step else "",
        "batch": data.get("batch", cfg.batch_size),
        "learning_rate": f"{cfg.learning_rate:g}",
        "schedule": f"linear warm-up {cfg.warmup_ratio:g}, "
        + ("linear decay" if schedule == "linear" else f"{schedule} schedule"),
        "weight_decay": f"{cfg.weight_decay:g}",
        "precision": "bf16 autocast" if data.get("bf16") else "fp32",
        "grouped": ", length-grouped batches" if cfg.group_by_length else "",
        "seed": cfg.seed,
        "epochs": f"{cfg.epochs:g}",
        "max_steps": f", max_steps {cfg.max_steps}" if cfg.max_steps else "",
        "time_budget": f", time budget {_duration(cfg.time_budget)} ({cfg.budget_clock} clock)"
        if cfg.time_budget
        else "",
        "trainer_args": f"- other trainer arguments: {extra}\n" if extra else "",
        "first_loss": f"{result.losses[0][1]:.4f}" if result.losses else "n/a",
        "last_loss": f"{result.losses[-1][1]:.4f}" if result.losses else "n/a",
        "train_time": _duration(result.train_seconds),
        "total_time": _duration(result.total_seconds),
    }


def render_model_card(result: TrainResult) -> str:
    """Render the model card of a finished run: base, data, settings, and held-out metrics before and after.

    Example:
        >>> text = render_model_card(result)  # doctest: +SKIP
        >>> text.splitlines()[0]  # doctest: +SKIP
        '---'
    """
    template = resources.files("jp_rerank.training").joinpath("model_card.md").read_text(encoding="utf-8")
    values = {
        "name": result.output_dir.name,
        **_model_values(result),
        **_eval_values(result),
        **_data_values(result),
        **_settings_values(result),
        "machine": _machine(),
        "versions": _versions(),
    }
    return string.Template(template).substitute(values)
