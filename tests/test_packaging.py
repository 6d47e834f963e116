"""The distribution's package configuration: every package of the checkout, its data files, nothing else."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_ROOTS = {"jp_rerank": ROOT / "core" / "jp_rerank", "langchain_jp_rerank": ROOT / "langchain_jp_rerank"}
PACKAGE_ROOTS["llamaindex_jp_rerank"] = ROOT / "llamaindex_jp_rerank"


def _packages_on_disk() -> set[str]:
    found = set()
    for name, folder in PACKAGE_ROOTS.items():
        for init in folder.rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                found.add(".".join([name, *init.parent.relative_to(folder).parts]))
    return found


def test_setuptools_finds_every_package_and_only_ours() -> None:
    pyprojecttoml = pytest.importorskip("setuptools.config.pyprojecttoml")
    from setuptools.dist import Distribution

    cwd = Path.cwd()
    os.chdir(ROOT)  # setuptools reads the configuration relative to the project folder
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the build warnings `make setup` printed are errors here
            dist = pyprojecttoml.apply_configuration(Distribution(), ROOT / "pyproject.toml")
    finally:
        os.chdir(cwd)
    packages = set(dist.packages)
    assert packages == _packages_on_disk()
    assert {"jp_rerank.embed", "jp_rerank.rerank", "jp_rerank.data", "jp_rerank.testing"} <= packages
    assert not {p for p in packages if p.split(".")[0] in {"tests", "examples", "benchmarks", "core"}}
    data = dist.package_data["jp_rerank"]
    assert "py.typed" in data
    assert sorted(p.name for p in (ROOT / "core" / "jp_rerank" / "data").glob("*.jsonl")) == [
        "demo_corpus.jsonl",
        "demo_queries.jsonl",
    ]
    assert any(pattern.startswith("data/") and pattern.endswith(".jsonl") for pattern in data)
