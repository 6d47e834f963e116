"""Where the benchmark scripts find data and the real offline models (the checkout's layout, never the package's).

Data: ``--data``, else ``$JP_RERANK_DATA/<set>``, else ``../shared/data/<set>`` beside the checkout.
Real offline models: ``$JP_RERANK_OFFLINE_MODELS``, else ``~/.cache/jp-rerank-offline`` (what
``python ../shared/tools/build_offline_models.py`` writes; see ``../shared/models/README.md``).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
E5_SMALL = "multilingual-e5-small-q4dq"
"""Folder of the real mE5-small weights (4-bit dequantized)."""
JA_CE_MINI = "ja-ce-mini"
"""Folder of the real, CPU-trained Japanese cross-encoder."""


def data_dir(name: str = "jsquad-valid") -> Path | None:
    """The BEIR folder ``name`` from ``$JP_RERANK_DATA`` or ``../shared/data``, if there is one."""
    for base in (os.environ.get("JP_RERANK_DATA"), ROOT.parent / "shared" / "data"):
        if base and (Path(base) / name / "corpus.jsonl").is_file():
            return Path(base) / name
    return None


def offline_model(name: str) -> Path | None:
    """The real offline model folder ``name`` (``E5_SMALL``, ``JA_CE_MINI``), if it has been built."""
    for base in (os.environ.get("JP_RERANK_OFFLINE_MODELS"), Path.home() / ".cache" / "jp-rerank-offline"):
        if base and (Path(base) / name / "config.json").is_file():
            return Path(base) / name
    return None
