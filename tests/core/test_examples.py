"""The engine example runs end to end (tiny stand-in models: the hub is unreachable in tests)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_two_stage_example_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["two_stage_retrieval.py", "--question", "信濃川の長さは？", "--top-n", "2", "--reranker", "small"]
    monkeypatch.setattr(sys, "argv", argv)  # "small" is not in the test cache: the example falls back
    runpy.run_path(str(EXAMPLES / "two_stage_retrieval.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "using tiny random-weight models instead" in out
    assert "Q: 信濃川の長さは？" in out
    assert out.count("rerank=") == 2
    assert "timings (s):" in out
