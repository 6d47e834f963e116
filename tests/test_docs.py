"""Every Python snippet of the README and docs/ runs as written (issue 25, item 16), on the tiny stand-ins.

The test session installs tiny random-weight models under the presets' hub ids (see ../conftest.py), so
``Reranker("xsmall")`` in a snippet loads through the real hub-id → cache → offline path. A file's snippets run in
order in one namespace (later ones use what earlier ones defined, as a reader would), in a temporary working
directory; the training guide gets the ``pairs.jsonl`` its text describes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _snippets(path: Path) -> list[str]:
    return _BLOCK.findall(path.read_text(encoding="utf-8"))


def _run(path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"snippets_of_{path.stem}"}
    snippets = _snippets(path)
    assert snippets, f"{path} has no Python snippet"
    for i, code in enumerate(snippets, 1):
        try:
            exec(compile(code, f"{path.name} snippet {i}", "exec"), namespace)  # our own docs
        except Exception as exc:  # name the snippet, not this test's frame
            raise AssertionError(f"{path.name} snippet {i} fails as written: {exc!r}\n{code}") from exc


@pytest.mark.usefixtures("tiny_hub")
def test_readme_snippets_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _run(ROOT / "README.md", monkeypatch, tmp_path)


@pytest.mark.train
@pytest.mark.usefixtures("tiny_hub")
def test_training_guide_snippets_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rows = [
        {"query": f"質問{i}について教えて", "positive": f"質問{i}の答えはこの文書に書いてあります。"} for i in range(24)
    ]
    (tmp_path / "pairs.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    _run(ROOT / "docs" / "training.md", monkeypatch, tmp_path)
