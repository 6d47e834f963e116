"""The LlamaIndex example runs offline end to end (tiny local models, mock LLM)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llamaindex_query_engine.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llamaindex_query_engine", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("retriever", ["vector", "hybrid"])
def test_example_runs_offline(
    retriever: str, xlmr_ce_path: Path, dense_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _load().main(
        ["--reranker", str(xlmr_ce_path), "--embedder", str(dense_path), "--retriever", retriever, "--top-n", "2"]
    )
    out = capsys.readouterr().out
    assert "Q: 富士山の高さは？" in out
    assert "(mock LLM" in out
    assert out.count("rerank=") == 2


def test_unknown_llm_is_rejected() -> None:
    with pytest.raises(SystemExit, match="unknown --llm"):
        _load().make_llm("gpt")
