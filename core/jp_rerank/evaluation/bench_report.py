"""What ``jp-rerank bench`` measured, as records, Markdown tables and files.

:class:`BenchReport` holds one run of :func:`jp_rerank.evaluation.bench.run_bench`: per model shape a
:class:`RerankShapeResult`, per embedder an :class:`EmbedResult`, and the machine, data and settings they ran on.

Example:
    >>> print(BenchReport(settings={"repeats": 3}).to_markdown().splitlines()[0])
    # jp-rerank bench
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jp_rerank.evaluation.timing import Agreement, MethodResult

__all__ = ["BenchReport", "EmbedResult", "RerankShapeResult", "write_report"]


@dataclass
class RerankShapeResult:
    """Reranking speed of every method on one model shape."""

    shape: str
    model: str
    model_note: str
    questions: int
    pairs: int
    pair_tokens: dict[str, float]
    methods: list[MethodResult]
    agreement: list[Agreement] = field(default_factory=list)
    agreement_note: str = ""
    export_note: str = ""
    gflop_per_pair: float | None = None
    """Useful work of one pair, from the model config and the real (unpadded) token counts."""


@dataclass
class EmbedResult:
    """Embedding speed of one model kind."""

    kind: str
    model: str
    model_note: str
    texts: int
    methods: list[MethodResult]


@dataclass
class BenchReport:
    """Everything one ``jp-rerank bench`` run measured.

    Example:
        >>> BenchReport(settings={"quick": True}).to_dict()["settings"]
        {'quick': True}
    """

    settings: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    rerank: list[RerankShapeResult] = field(default_factory=list)
    embed: list[EmbedResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    agreement_trained: list[Agreement] = field(default_factory=list)
    agreement_trained_note: str = ""
    peak_gflops: dict[str, float] = field(default_factory=dict)
    """This machine's measured best matrix-product rates (GFLOP/s; GOP/s for int8), per precision."""
    load_average: dict[str, list[float]] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)

    def to_markdown(self) -> str:
        """Render the report as Markdown tables (what ``jp-rerank bench`` prints)."""
        lines = ["# jp-rerank bench", "", *_context_lines(self)]
        for shape in self.rerank:
            lines += _rerank_lines(shape, self.peak_gflops)
        if self.agreement_trained:
            lines += ["", "## Ranking agreement on a trained model", "", self.agreement_trained_note, ""]
            lines += _agreement_table(self.agreement_trained)
        for emb in self.embed:
            lines += ["", f"## Embedding: {emb.kind}", "", f"Model: {emb.model_note}; {emb.texts} passages.", ""]
            lines += _method_table(emb.methods, "texts")
        if self.notes:
            lines += ["", "## Goals", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def write_report(report: BenchReport, out_dir: str | os.PathLike[str], stem: str = "bench") -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` into ``out_dir``; returns their paths."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    json_path.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(report.to_markdown(), encoding="utf-8")
    return json_path, md_path


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _of_peak(m: MethodResult, peaks: dict[str, float]) -> str:
    """``"42.0 (23% of int8)"``: achieved GFLOP/s against the peak of the precision the method runs."""
    if m.gflops is None:
        return "-"
    precision = next((p for p in ("int8", "bf16", "fp16") if p in m.note or p in m.name), "fp32")
    peak = peaks.get(precision) or peaks.get("fp32")
    return f"{m.gflops:.1f}" + (f" ({100 * m.gflops / peak:.0f}% of {precision})" if peak else "")


def _method_table(methods: list[MethodResult], unit: str, peaks: dict[str, float] | None = None) -> list[str]:
    lines = [
        f"| method | {unit}/s | ours (default) is x faster | GFLOP/s (of peak) | load s | MiB after load | "
        "peak MiB scoring | what ran |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for m in methods:
        if m.error:
            lines.append(f"| {m.name} | - | - | - | - | - | - | could not run: {m.error} |")
            continue
        lines.append(
            f"| {m.name} | {_fmt(m.items_per_s)} | {_fmt(m.ours_speedup, '.2f')} | {_of_peak(m, peaks or {})} | "
            f"{_fmt(m.load_s)} | {_fmt(m.load_mib, '.0f')} | {_fmt(m.peak_mib, '.0f')} | {m.note} |"
        )
    return lines


def _agreement_table(rows: list[Agreement]) -> list[str]:
    lines = [
        "| method | Spearman mean | Spearman min | top-3 set same | nDCG@10 | nDCG@10 fp32 | max abs score diff |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for a in rows:
        lines.append(
            f"| {a.method} | {_fmt(a.spearman_mean, '.4f')} | {_fmt(a.spearman_min, '.4f')} | "
            f"{_fmt(a.top3_same, '.2f')} | {_fmt(a.ndcg10, '.4f')} | {_fmt(a.ndcg10_fp32, '.4f')} | "
            f"{a.max_abs_diff:.2e} |"
        )
    return lines


def _context_lines(report: BenchReport) -> list[str]:
    """The machine, its load, its peak rates, the data and the settings, one bullet each."""
    m = report.machine
    feats = " ".join(k for k, v in (m.get("cpu_features") or {}).items() if v)
    lines = [
        f"- Machine: {m.get('cpu_model')}, {m.get('usable_cores')} usable cores, {m.get('ram_gb')} GiB, "
        f"torch {m.get('torch')} ({m.get('torch_threads')} threads); CPU features: {feats or 'unknown'}",
        f"- Load average (1/5/15 min) at start {report.load_average.get('start')}, "
        f"end {report.load_average.get('end')}; elapsed {report.elapsed_s} s",
    ]
    if report.peak_gflops:
        peaks = ", ".join(f"{k} {v:.0f}" for k, v in report.peak_gflops.items())
        lines.append(f"- Measured peak of 2048x2048 matrix products (GFLOP/s; GOP/s for int8): {peaks}")
    d = report.data
    if d:
        lines.append(
            f"- Data: {d.get('name')} ({d.get('corpus_passages')} passages, {d.get('questions_used')} of "
            f"{d.get('questions_available')} questions, {d.get('pairs_per_repetition')} pairs per repetition, "
            f"mean passage {d.get('mean_passage_chars')} characters); candidates: {d.get('candidates')}. "
            f"{d.get('attribution')}"
        )
    s = report.settings
    lines.append(
        f"- Settings: {s.get('repeats')} repetitions per method (medians; ratios are medians of per-repetition "
        f"ratios, methods take turns within each repetition), quick={s.get('quick')}"
    )
    return lines


def _rerank_lines(shape: RerankShapeResult, peaks: dict[str, float]) -> list[str]:
    """One model shape's section: the model, its pair lengths and work, the speed and agreement tables."""
    t = shape.pair_tokens
    lines = [
        "",
        f"## Reranking: {shape.shape}",
        "",
        f"Model: {shape.model_note}.",
        f"Pair length in tokens: mean {t.get('mean')}, median {t.get('median')}, p95 {t.get('p95')}, "
        f"max {t.get('max')}; padding all of a question's pairs together costs "
        f"{t.get('tutorial_padding_waste')}x the tokens.",
    ]
    if shape.export_note:
        lines.append(shape.export_note + ".")
    if shape.gflop_per_pair is not None:
        lines.append(f"Useful work: {shape.gflop_per_pair:.3f} GFLOP per pair (model config, real token counts).")
    lines.append("")
    lines += _method_table(shape.methods, "pairs", peaks)
    if shape.agreement:
        lines += ["", "Agreement with torch fp32 on the same pairs:", ""]
        lines += _agreement_table(shape.agreement)
        if shape.agreement_note:
            lines.append("")
            lines.append(f"Note: {shape.agreement_note} (fp32 score std {shape.agreement[0].score_std:g}).")
    return lines
