"""CPU threads (engines' ``num_threads``, ``jp-rerank --threads``) and ``python -m jp_rerank``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from jp_rerank import Embedder, Reranker, SparseEmbedder, __version__
from jp_rerank.cli import EXIT_OK, main
from jp_rerank.runtime import resolve_device, set_torch_threads


@pytest.fixture
def torch_threads() -> Iterator[int]:
    """torch's thread count before the test, restored after it."""
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_set_torch_threads_sets_the_process_setting(torch_threads: int) -> None:
    assert set_torch_threads(1) == torch_threads
    assert torch.get_num_threads() == 1
    assert set_torch_threads(2) == 1
    assert torch.get_num_threads() == 2
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(ValueError, match="num_threads must be a positive int"):
            set_torch_threads(bad)  # type: ignore[arg-type]


def test_engines_set_num_threads_when_they_load(
    torch_threads: int, xlmr_ce_path: Path, dense_path: Path, splade_path: Path
) -> None:
    reranker = Reranker(xlmr_ce_path, device="cpu", num_threads=1)
    torch.set_num_threads(2)
    assert torch.get_num_threads() == 2  # nothing happens before the model loads
    assert reranker.score("富士山の高さは？", ["富士山は3776m。"]).shape == (1,)
    assert torch.get_num_threads() == 1
    Embedder(dense_path, device="cpu", num_threads=2).load()
    assert torch.get_num_threads() == 2
    SparseEmbedder(splade_path, device="cpu", num_threads=1).load()
    assert torch.get_num_threads() == 1
    for engine in (Reranker, Embedder, SparseEmbedder):
        with pytest.raises(ValueError, match="num_threads must be a positive int or None, got 0"):
            engine(xlmr_ce_path, num_threads=0)


def test_cli_threads_option(torch_threads: int, capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(2)
    assert main(["--threads", "1", "models", "--kind", "cross-encoder"]) == EXIT_OK
    assert torch.get_num_threads() == 1
    assert "xsmall" in capsys.readouterr().out
    for bad in ("0", "two"):
        with pytest.raises(SystemExit) as exit_info:
            main(["--threads", bad, "models"])
        assert exit_info.value.code == 2
        assert "--threads: expected a positive integer" in capsys.readouterr().err


def test_python_dash_m_runs_the_cli() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    version = subprocess.run(
        [sys.executable, "-m", "jp_rerank", "--version"], capture_output=True, text=True, env=env, check=False
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"jp-rerank {__version__}"
    models = subprocess.run(
        [sys.executable, "-m", "jp_rerank", "--threads", "1", "models", "--kind", "sparse"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert models.returncode == 0, models.stderr
    assert "splade-ja" in models.stdout
    usage = subprocess.run([sys.executable, "-m", "jp_rerank"], capture_output=True, text=True, env=env, check=False)
    assert usage.returncode == 2
    assert "usage: jp-rerank" in usage.stderr


@pytest.mark.parametrize("bad", ["bogus", "", "  ", "gpu", "cuda:x", "cuda:", 0])
def test_engines_refuse_a_device_that_is_not_a_torch_device_name(bad: object) -> None:
    for engine in (Reranker, Embedder, SparseEmbedder):
        with pytest.raises(ValueError, match="device must name a torch device"):
            engine("org/model", device=bad)  # type: ignore[arg-type]


def test_device_names_are_kept_without_surrounding_space() -> None:
    assert resolve_device(" cuda:1 ") == "cuda:1"
    assert Reranker("org/model", device="mps").device == "mps"
