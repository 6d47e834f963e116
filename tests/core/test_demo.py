"""The demo (the README's main job) runs end to end: with tiny local models, and offline without any model."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jp_rerank.cli import main
from jp_rerank.data import load_demo_queries
from jp_rerank.demo import run_demo


def test_demo_full_pipeline_with_tiny_models(
    xlmr_ce_path: Path, static_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--reranker", str(xlmr_ce_path), "--embedder", str(static_path), "--top-n", "2"]) == 0
    out = capsys.readouterr().out
    assert "stages: bm25 -> dense -> rerank" in out
    assert "skipped" not in out
    questions = [str(q["text"]) for q in load_demo_queries()]
    for q in questions:
        assert f"Q: {q}" in out
    assert out.count("rerank 0.") >= 2 * len(questions)  # every shown passage has a rerank score
    assert "timings:" in out


@pytest.mark.usefixtures("tiny_hub")
def test_demo_with_the_default_aliases_runs_every_stage() -> None:
    """The defaults resolve through the HF cache (tiny stand-ins installed under the presets' hub ids)."""
    buf = io.StringIO()
    report = run_demo(out=buf, questions=["富士山の高さは？"])
    assert report.stages == ("bm25", "dense", "rerank")
    assert report.skipped == {}
    assert "reranker: Reranker(model='xsmall-v2'" in buf.getvalue()  # the default reranker (issue 14)


def test_demo_without_models_skips_stages_with_a_banner() -> None:
    buf = io.StringIO()
    report = run_demo(reranker="small", embedder="ruri-v3-30m", out=buf)  # not cached, the hub is unreachable
    text = buf.getvalue()
    assert report.stages == ("bm25",)
    assert set(report.skipped) == {"rerank", "dense"}
    assert "!! reranker skipped: 'small' could not be loaded" in text
    assert "!! embedder skipped: 'ruri-v3-30m' could not be loaded" in text
    assert "pass --reranker with a local model folder" in text
    assert report.questions == len(load_demo_queries())
    assert report.hits_at_1 >= report.questions // 2  # BM25 alone finds most answers on the bundled corpus


def test_demo_custom_question_and_console_script(tmp_path: Path) -> None:
    buf = io.StringIO()
    report = run_demo(reranker="none", embedder="none", questions=["信濃川の長さは？"], out=buf, top_n=1)
    assert report.questions == 1
    assert "Q: 信濃川の長さは？" in buf.getvalue()
    assert "[doc-047]" in buf.getvalue()
    script = shutil.which("jp-rerank", path=os.path.dirname(sys.executable))
    assert script is not None, "the jp-rerank console script is not installed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    proc = subprocess.run(
        [script, "demo", "--question", "北海道の道庁所在地は？"], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "reranker skipped" in proc.stdout
    assert "Q: 北海道の道庁所在地は？" in proc.stdout


def _demo_arguments(models: Path) -> str:
    """The arguments ``make demo`` hands to ``jp-rerank demo`` with ``JP_RERANK_OFFLINE_MODELS=models``."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "JP_RERANK_OFFLINE_MODELS": str(models)}
    dry_run = subprocess.run(
        [make, "-s", "-n", "-C", str(root), "demo", "STAMP=/dev/null", "SHARED_TOOLS=/nonexistent"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    command = next(line for line in dry_run.splitlines() if "jp-rerank demo" in line)
    args = command.split("jp-rerank demo", 1)[1]
    return subprocess.run(["bash", "-c", f"echo {args}"], capture_output=True, text=True, check=True).stdout


def test_make_demo_passes_the_offline_models_when_they_are_built(tmp_path: Path) -> None:
    """The runtime never knows the offline folders' names; the Makefile hands them to the demo."""
    assert "--reranker" not in _demo_arguments(tmp_path)  # nothing built: the demo's own defaults
    for folder in ("ja-ce-mini", "multilingual-e5-small-q4dq"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "config.json").write_text("{}", encoding="utf-8")
    args = _demo_arguments(tmp_path)
    assert f"--reranker {tmp_path / 'ja-ce-mini'}" in args
    assert f"--embedder {tmp_path / 'multilingual-e5-small-q4dq'}" in args
