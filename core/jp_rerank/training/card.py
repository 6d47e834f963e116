"""The model card (``README.md``) written next to a reranker trained by :func:`jp_rerank.training.train`."""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
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


def render_model_card(result: TrainResult) -> str:
    """Render the model card of a finished run: base, data, settings, and held-out metrics before and after.

    Example:
        >>> text = render_model_card(result)  # doctest: +SKIP
        >>> text.splitlines()[0]  # doctest: +SKIP
        '---'
    """
    cfg = result.config
    base = result.base
    data: dict[str, Any] = dict(result.data)
    mining = result.mining
    settings = mining.get("settings", {})
    name = result.output_dir.name
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
    rows = [(f"first stage alone ({cfg.first_stage})", result.metrics_first_stage)]
    if result.metrics_before:
        rows.append(
            (f"before: {base.name}" + (" (as adapted, untrained head)" if base.modified else ""), result.metrics_before)
        )
    rows.append((f"after: {name}", result.metrics_after))
    loss_settings = data.get("loss_settings", {})
    loss_text = loss_settings.get("loss", cfg.loss)
    if "pos_weight" in loss_settings:
        loss_text += f", pos_weight {loss_settings['pos_weight']}"
    first_loss = f"{result.losses[0][1]:.4f}" if result.losses else "n/a"
    last_loss = f"{result.losses[-1][1]:.4f}" if result.losses else "n/a"
    mined = (
        f"{mining.get('hard_negatives', 0)} hard negatives mined with {mining.get('method', cfg.first_stage)} "
        f"(depth {settings.get('depth', cfg.mining_depth)}, tokenizer {cfg.bm25}"
        + (f", embedder {cfg.embedder}" if cfg.first_stage != "bm25" else "")
        + f"; dropped {mining.get('dropped_duplicates', 0)} near-duplicates of positives (bigram containment >= "
        f"{cfg.max_overlap}) and {mining.get('dropped_margin', 0)} candidates scoring >= "
        f"{1 - (cfg.relative_margin or 0):.2f} x the positive), plus {mining.get('random_negatives', 0)} random "
        "negatives"
        if mining.get("queries_mined")
        else "negatives as given in the data (no mining)"
    )
    lines = [
        "---",
        "language:",
        "- ja",
        "library_name: sentence-transformers",
        "pipeline_tag: text-ranking",
        "tags:",
        "- cross-encoder",
        "- reranker",
        "- jp-rerank",
        *([f"base_model: {base.name}"] if not base.name.startswith(("/", ".", "~")) else []),
        "---",
        "",
        f"# {name}",
        "",
        f"A Japanese cross-encoder reranker fine-tuned from `{base.name}` with `jp-rerank train`.",
        "",
        "```python",
        "from jp_rerank import Reranker",
        "",
        f'reranker = Reranker("{name}")  # the path of this folder',
        'reranker.rerank("質問", ["文書1", "文書2"], top_n=1)',
        "```",
        "",
        "It is a standard sentence-transformers `CrossEncoder` folder (one logit; sigmoid scores), so "
        "`sentence_transformers.CrossEncoder(path)`, the jp-rerank LangChain / LlamaIndex adapters and "
        "`jp-rerank eval --reranker PATH` load it as well.",
        "",
        "## Held-out evaluation",
        "",
        f"{result.eval_queries} held-out questions"
        + (
            " (a separate file)"
            if cfg.eval_data
            else ", split off the training data by passage (questions sharing a positive stay on one side)"
        )
        + f"; each reranks its top {cfg.eval_depth} {cfg.first_stage} candidates over a pool of "
        f"{data.get('pool', '?')} passages (questions whose positive is not among them count as zero). "
        f'Scored with `Reranker(..., precision="{cfg.eval_precision}")`.',
        "",
        *_metrics_table(rows),
        "",
        "## Training data",
        "",
        f"- source: `{data.get('source', '')}` ({data.get('format', '')}); {data.get('questions', '?')} questions "
        "read, "
        f"{data.get('skipped_rows', 0)} bad rows skipped",
        f"- trained on {result.train_queries} questions, {result.train_pairs} pairs "
        f"({data.get('positives', '?')} positives"
        + (f", {data['negatives']} negatives)" if "negatives" in data else ")"),
        f"- negatives: {mined}",
        "- licence of the training data: state it here (the data's licence may apply to this model)",
        "",
        "## Model",
        "",
        f"- base: `{base.name}` ({base.kind}, {base.model_type}, {base.base_layers} layers"
        + (f", {base.pooling} pooling" if base.pooling else "")
        + ")",
        *(f"- {item}" for item in adapt),
        f"- parameters: {base.total_parameters / 1e6:.1f}M ({base.trainable_parameters / 1e6:.1f}M trained)",
        f"- max_length: {base.max_length} tokens per (question, passage) pair",
        "",
        "## Training settings",
        "",
        f"- loss: {loss_text}",
        f"- steps: {result.global_step} (stopped by {result.stopped_by.replace('_', ' ')}"
        + (f"; resumed from step {result.resumed_from_step}" if result.resumed_from_step else "")
        + f"), batch {data.get('batch', cfg.batch_size)}, learning rate {cfg.learning_rate:g} (linear warm-up "
        f"{cfg.warmup_ratio:g}, linear decay), weight decay {cfg.weight_decay:g}, "
        + ("bf16 autocast" if data.get("bf16") else "fp32")
        + (", length-grouped batches" if cfg.group_by_length else "")
        + f", seed {cfg.seed}",
        f"- epochs {cfg.epochs:g}"
        + (f", max_steps {cfg.max_steps}" if cfg.max_steps else "")
        + (f", time budget {_duration(cfg.time_budget)} ({cfg.budget_clock} clock)" if cfg.time_budget else ""),
        f"- training loss: {first_loss} (first log) → {last_loss} (last log)",
        f"- training time: {_duration(result.train_seconds)} (whole run {_duration(result.total_seconds)}) on "
        f"{_machine()}",
        f"- software: {_versions()}",
        "",
    ]
    return "\n".join(lines)
