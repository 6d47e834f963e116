"""What the training tests share: fast settings for tiny models and one small pairs file."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from jp_rerank.data import load_demo_corpus


@pytest.fixture(scope="session")
def fast() -> dict[str, Any]:
    """``train`` settings that make tiny models learn in a few dozen steps on a CPU (copy before changing)."""
    return {
        "batch_size": 8,
        "learning_rate": 3e-3,
        "freeze_embeddings": False,
        "eval_queries": 9,
        "eval_depth": 10,
        "logging_steps": 2,
        "save_steps": 1000,
        "device": "cpu",
        "progress": False,
        "precision": "fp32",
    }


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random models learn what is learnable in a few dozen steps: passage style. Positives are the Japanese
    demo passages, given negatives are ASCII noise (seeded), so a little mining adds real (hard, Japanese) ones."""
    rng = random.Random(0)

    def noise() -> str:
        return " ".join("".join(rng.choice("abcdefghij") for _ in range(5)) for _ in range(10))

    rows = [
        {"query": f"{d['title']}について教えて", "positive": d["text"], "negatives": [noise(), noise()]}
        for d in load_demo_corpus()
    ]
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path
