"""Session set-up shared by the tests and the doctests (the ``>>>`` lines of every module run as tests).

Environment safety comes first, before anything imports huggingface_hub / transformers: the Hub is never
reached, the developer's cache is never touched (a temporary ``HF_HOME``), and the tokenizers library does not
fork thread pools under pytest. Tiny random-weight stand-ins for the default presets (``xsmall``, ``me5-small``
saved without prompts as on the hub, ``static-ja``, ``splade-ja``) are installed into that cache under the presets'
hub ids (:func:`jp_rerank.testing.install_tiny_hub`) by the ``tiny_hub`` fixture, on first request: for every
doctest and for the tests that load presets by alias. So ``Reranker("xsmall")`` in a docstring runs through the real
hub-id → cache → offline loading path, and a test that needs none starts without building them. Their outputs mean
nothing: examples that print real-model values mark those lines ``# doctest: +SKIP``. Presets that are not
installed (``small``, ``base``...) still fail to load, as they do offline.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

_HF_HOME = tempfile.mkdtemp(prefix="jp-rerank-test-hf-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ["JP_RERANK_CACHE"] = str(Path(_HF_HOME) / "jp-rerank-cache")  # exports of hub models go here
# Whatever the CI machine's CPU, "auto" stays on torch in the suite (no OpenVINO export made on first use by every
# test that loads a tiny model); the tests of the auto choice and of the exports clear or replace it.
os.environ["JP_RERANK_BACKEND"] = "torch"
os.environ.pop("JP_RERANK_DATA", None)  # tests and doctests must not depend on a developer's data folder
# The examples import their shared helper (examples/_offline.py) as `python examples/x.py` would.
sys.path.insert(0, str(Path(__file__).resolve().parent / "examples"))

import pytest  # noqa: E402

TINY_HUB_CACHE = Path(_HF_HOME) / "hub"


@pytest.fixture(scope="session")
def tiny_hub() -> Path:
    """The tiny stand-ins installed under the presets' hub ids, built on first request (once per test process).

    Tests that load a preset alias (``Reranker("xsmall")``, an adapter's default model, the demo) ask for it, with
    ``pytestmark = pytest.mark.usefixtures("tiny_hub")`` in their module; every doctest gets it.
    """
    from jp_rerank.testing import install_tiny_hub

    install_tiny_hub(TINY_HUB_CACHE, work_dir=Path(_HF_HOME) / "tiny-models")
    return TINY_HUB_CACHE


@pytest.fixture(autouse=True)
def _doctest_globals(request: pytest.FixtureRequest, doctest_namespace: dict[str, object], tmp_path: Path) -> None:
    """Doctests run in a fresh temporary working directory, with the tiny stand-ins installed.

    Files they write never land in the checkout; their examples load presets by alias.
    """
    doctest_namespace["tmp_path"] = tmp_path
    if isinstance(request.node, pytest.DoctestItem):
        request.getfixturevalue("tiny_hub")
