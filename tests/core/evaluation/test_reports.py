"""Reports: the text and Markdown tables and the quality-vs-speed plot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from jp_rerank.evaluation import EvalResult, format_markdown, format_table, plot_results, write_markdown
from jp_rerank.hardware import MachineInfo

pytest.importorskip("ranx")


def test_markdown_and_text_tables(make_result: Callable[..., EvalResult], hw: MachineInfo, tmp_path: Path) -> None:
    a, b = make_result("model-a"), make_result("model-b")
    md = format_markdown([a, b], baseline="model-a", title="Rerank")
    lines = md.splitlines()
    assert lines[0] == "# Rerank"
    header = next(line for line in lines if line.startswith("| run"))
    assert "| ndcg@10 | mrr@10 |" in header
    assert "speed vs base" in header
    row_a = next(line for line in lines if line.startswith("| model-a |"))
    assert f"| {a.metrics['mrr@10']:.4f} |" in row_a
    assert "| 1.00x |" in row_a
    assert any(line.startswith("- Hardware: ") and hw.cpu_model in line for line in lines)
    assert any("4.0 candidates per query" in line for line in lines)
    assert any("reranker=model-b" in line for line in lines)
    path = write_markdown([a, b], tmp_path / "report" / "results.md")
    assert path.read_text(encoding="utf-8").startswith("# Evaluation results")
    text = format_table([a, b], ["mrr@10"])
    text_lines = text.splitlines()
    assert len(text_lines) == 4
    assert text_lines[0].split()[:5] == ["run", "setting", "dataset", "queries", "mrr@10"]
    assert text_lines[2].startswith("model-a")
    assert f"{a.metrics['mrr@10']:.4f}" in text_lines[2]
    with pytest.raises(ValueError, match="baseline 'nope'"):
        format_table([a], baseline="nope")
    with pytest.raises(ValueError, match="no run has metric"):
        format_table([a], ["recall@1000"])
    with pytest.raises(ValueError, match="no results"):
        format_markdown([])


def test_plot_writes_a_png(make_result: Callable[..., EvalResult], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    results = [make_result("model-a"), make_result("model-b", scale=2.0)]
    path = plot_results(results, tmp_path / "plots" / "quality_speed.png", metric="mrr@10")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 2000
    with pytest.raises(ValueError, match="no run has metric 'recall@5'"):
        plot_results(results, tmp_path / "x.png", metric="recall@5")


def test_plot_tells_datasets_apart(make_result: Callable[..., EvalResult], tmp_path: Path) -> None:
    """Two runs of the same name on two datasets: own colour/marker (legend) and the dataset in each label."""
    from dataclasses import replace

    from jp_rerank.evaluation.reports import plot_labels

    pytest.importorskip("matplotlib")
    first = make_result("bm25-mecab")
    second = replace(first, dataset=replace(first.dataset, name="jqara"))
    names, labels = plot_labels([first, second])
    assert names == [first.dataset.name, "jqara"]
    assert labels == [f"bm25-mecab ({first.dataset.name})", "bm25-mecab (jqara)"]
    assert plot_labels([first])[1] == ["bm25-mecab"]
    assert plot_results([first, second], tmp_path / "two.png").read_bytes()[:4] == b"\x89PNG"
