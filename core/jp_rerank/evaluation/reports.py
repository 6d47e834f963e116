"""Comparing evaluation runs: a plain-text table, a Markdown report and a quality-vs-speed plot."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from jp_rerank.evaluation.results import EvalResult
from jp_rerank.extras import require

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["TABLE_METRICS", "format_markdown", "format_table", "plot_labels", "plot_results", "write_markdown"]

TABLE_METRICS: tuple[str, ...] = ("ndcg@10", "mrr@10", "map@10", "hit@10", "recall@100")
"""Metrics shown by default, in this order, when the runs have them."""


def _pick_metrics(results: Sequence[EvalResult], metrics: Sequence[str] | None) -> list[str]:
    if metrics is not None:
        unknown = [m for m in metrics if not any(m in r.metrics for r in results)]
        if unknown:
            raise ValueError(f"no run has metric(s) {unknown}")
        return list(metrics)
    chosen = [m for m in TABLE_METRICS if any(m in r.metrics for r in results)]
    return chosen or list(dict.fromkeys(m for r in results for m in r.metrics))


def _check(results: Sequence[EvalResult]) -> list[EvalResult]:
    items = list(results)
    if not items:
        raise ValueError("no results to compare")
    for item in items:
        if not isinstance(item, EvalResult):
            raise TypeError(f"expected EvalResult objects, got {type(item).__name__}")
    return items


def _num(value: float | None, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.{digits}f}"


def _rows(
    results: Sequence[EvalResult], metrics: Sequence[str], baseline: str | None
) -> tuple[list[str], list[list[str]]]:
    base: EvalResult | None = None
    if baseline is not None:
        base = next((r for r in results if r.name == baseline), None)
        if base is None:
            raise ValueError(f"baseline {baseline!r} is not one of the runs {[r.name for r in results]}")
    header = ["run", "setting", "dataset", "queries", *metrics, "seconds", "queries/s", "pairs/s"]
    if base is not None:
        header.append("speed vs base")
    rows = []
    for r in results:
        row = [r.name, r.setting, r.dataset.name, str(r.dataset.n_queries)]
        row += [_num(r.metrics.get(m), 4) for m in metrics]
        row += [_num(r.timing.seconds, 1), _num(r.timing.queries_per_second, 1)]
        row.append(_num(r.timing.pairs_per_second, 0))
        if base is not None:
            ratio = _speed_ratio(r, base)
            row.append(f"{ratio:.2f}x" if ratio is not None and math.isfinite(ratio) else "-")
        rows.append(row)
    return header, rows


def _speed_ratio(result: EvalResult, base: EvalResult) -> float | None:
    """Throughput of ``result`` over ``base``: pairs/s when both count pairs, else queries/s."""
    mine, theirs = result.timing.pairs_per_second, base.timing.pairs_per_second
    if mine is None or theirs is None:
        mine, theirs = result.timing.queries_per_second, base.timing.queries_per_second
    return mine / theirs if theirs else None


def format_table(
    results: Sequence[EvalResult], metrics: Sequence[str] | None = None, *, baseline: str | None = None
) -> str:
    """Format runs as an aligned plain-text table (for terminals and logs).

    Args:
        results: The runs to compare, in display order.
        metrics: Metric columns (default: those of :data:`TABLE_METRICS` the runs have).
        baseline: Name of a run; adds a column with each run's throughput relative to it (pairs/s when both
            runs count pairs, else queries/s).

    Returns:
        The table, one line per run after a header and a rule; missing values show as ``-``.

    Raises:
        ValueError: If ``results`` is empty, a requested metric is in no run, or ``baseline`` is unknown.

    Example:
        >>> print(format_table(load_results("results/")))  # doctest: +SKIP
    """
    items = _check(results)
    header, rows = _rows(items, _pick_metrics(items, metrics), baseline)
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]

    def fmt(line: list[str]) -> str:
        cells = [c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(row) for row in rows)])


def _md_escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def format_markdown(
    results: Sequence[EvalResult],
    metrics: Sequence[str] | None = None,
    *,
    baseline: str | None = None,
    title: str = "Evaluation results",
) -> str:
    """Format runs as a Markdown report: the comparison table, then hardware, data and version notes.

    Args:
        results: The runs to compare, in display order.
        metrics: Metric columns (default: those of :data:`TABLE_METRICS` the runs have).
        baseline: Name of a run to compare throughput against (see :func:`format_table`).
        title: Heading of the report.

    Returns:
        Markdown text ending with a newline.

    Example:
        >>> text = format_markdown(load_results("results/"), baseline="bm25")  # doctest: +SKIP
    """
    items = _check(results)
    header, rows = _rows(items, _pick_metrics(items, metrics), baseline)
    lines = [f"# {title}", ""]
    lines.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
    lines.append("|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|")
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    lines += ["", "Time is spent inside the model calls only (data loading and metrics excluded).", ""]
    machines = list(dict.fromkeys(r.hardware.summary() for r in items))
    if len(machines) == 1:
        lines.append(f"- Hardware: {machines[0]}")
    else:
        lines += [f"- Hardware of {r.name}: {r.hardware.summary()}" for r in items]
    seen: set[str] = set()
    for r in items:
        d = r.dataset
        key = f"{d.name}/{r.setting}"
        if key in seen:
            continue
        seen.add(key)
        cands = f", {d.mean_candidates:.1f} candidates per query" if d.mean_candidates is not None else ""
        lines.append(
            f"- Data {d.name} ({r.setting}): {d.n_queries} queries, {d.n_passages} passages, "
            f"mean passage {d.mean_passage_chars:.0f} chars, mean query {d.mean_query_chars:.0f} chars{cands}"
        )
    for r in items:
        models = ", ".join(f"{role}={mid}" for role, mid in r.models.items()) or "-"
        settings = ", ".join(f"{k}={v}" for k, v in r.settings.items()) or "-"
        lines.append(f"- {r.name}: models {models}; settings {settings}; jp-rerank {r.version}; {r.timestamp}")
    return "\n".join(lines) + "\n"


def write_markdown(
    results: Sequence[EvalResult],
    path: str | os.PathLike[str],
    metrics: Sequence[str] | None = None,
    *,
    baseline: str | None = None,
    title: str = "Evaluation results",
) -> Path:
    """Write :func:`format_markdown` output to ``path`` (parent folders are created) and return the path."""
    text = format_markdown(results, metrics, baseline=baseline, title=title)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def plot_labels(results: Sequence[EvalResult]) -> tuple[list[str], list[str]]:
    """The datasets of a plot (one colour and marker each, in order) and each point's label.

    With one dataset a label is the run name; with several it names the dataset too, so two runs called
    ``bm25-mecab`` on two datasets stay apart.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> runs = [NS(name="bm25", dataset=NS(name="jqara")), NS(name="bm25", dataset=NS(name="jsquad"))]
        >>> plot_labels(runs)  # type: ignore[arg-type]
        (['jqara', 'jsquad'], ['bm25 (jqara)', 'bm25 (jsquad)'])
    """
    names = list(dict.fromkeys(r.dataset.name for r in results))
    several = len(names) > 1
    return names, [f"{r.name} ({r.dataset.name})" if several else r.name for r in results]


def plot_results(
    results: Sequence[EvalResult],
    path: str | os.PathLike[str],
    *,
    metric: str = "ndcg@10",
    title: str | None = None,
) -> Path:
    """Plot quality against throughput, one labelled point per run, and save it as a PNG.

    The x axis is pairs/s when every run has it (reranking), else queries/s; it is logarithmic when the
    throughputs span more than a factor of 10. Runs without ``metric`` are left out. With several datasets each
    gets its own colour and marker, a legend entry, and its name in the point labels, so two runs of the same name on
    different datasets can be told apart. Uses matplotlib's Agg renderer without touching pyplot's global state.

    Args:
        results: The runs to plot.
        path: Target ``.png`` file (parent folders are created).
        metric: Metric on the y axis.
        title: Plot title (default: the metric and dataset names).

    Returns:
        The file path.

    Raises:
        ValueError: If ``results`` is empty or no run has ``metric``.
        ImportError: If matplotlib is not installed (``pip install "jp-rerank[eval]"``).

    Example:
        >>> plot_results(load_results("results/"), "results/quality_speed.png")  # doctest: +SKIP
    """
    items = _check(results)
    points = [r for r in items if metric in r.metrics]
    if not points:
        raise ValueError(f"no run has metric {metric!r}")
    use_pairs = all(r.timing.pairs_per_second is not None for r in points)
    xs = [(r.timing.pairs_per_second if use_pairs else r.timing.queries_per_second) or 0.0 for r in points]
    ys = [r.metrics[metric] for r in points]
    require("matplotlib", "eval")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    names, labels = plot_labels(points)
    _scatter_by_dataset(ax, points, xs, ys, names)
    log_x = _throughput_axis(ax, xs)
    ax.margins(x=0.15, y=0.15)
    _label_points(ax, xs, ys, labels, log_x=log_x)
    ax.set_xlabel("pairs / second" if use_pairs else "queries / second")
    ax.set_ylabel(metric)
    datasets = ", ".join(names)
    ax.set_title(title or f"{metric} vs throughput ({datasets})")
    ax.grid(True, alpha=0.3)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format="png", bbox_inches="tight")
    return target


def _scatter_by_dataset(
    ax: Axes, points: Sequence[EvalResult], xs: Sequence[float], ys: Sequence[float], names: Sequence[str]
) -> None:
    """One colour and marker per dataset; a legend when there are several."""
    markers = "os^Dv<>Pp*"
    for n, dataset in enumerate(names):
        chosen = [i for i, r in enumerate(points) if r.dataset.name == dataset]
        ax.scatter(
            [xs[i] for i in chosen],
            [ys[i] for i in chosen],
            zorder=3,
            marker=markers[n % len(markers)],
            color=f"C{n % 10}",
            label=dataset,
        )
    if len(names) > 1:
        ax.legend(title="dataset", fontsize=8, title_fontsize=8, loc="best")


def _throughput_axis(ax: Axes, xs: Sequence[float]) -> bool:
    """A logarithmic x axis when the throughputs span more than a factor of 10 (returned), else plain numbers."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    finite = [x for x in xs if x > 0 and math.isfinite(x)]
    log_x = len(finite) == len(xs) and max(finite) > 10 * min(finite)
    if log_x:
        ax.set_xscale("log")
    else:
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    return log_x


def _label_points(ax: Axes, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str], *, log_x: bool) -> None:
    """Label each point on the side facing the plot's centre, so the labels stay inside."""

    def pos(x: float) -> float:
        return math.log(x) if log_x else x

    centre = (pos(min(xs)) + pos(max(xs))) / 2
    for x, y, label in zip(xs, ys, labels, strict=True):
        right = pos(x) <= centre
        ax.annotate(
            label,
            (x, y),
            textcoords="offset points",
            xytext=(6, 6) if right else (-6, 6),
            ha="left" if right else "right",
            fontsize=8,
        )
