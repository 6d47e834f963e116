"""The model card: rendered from the template shipped as package data, every placeholder filled."""

from __future__ import annotations

import fnmatch
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from jp_rerank.training import BaseInfo, TrainConfig, TrainResult
from jp_rerank.training.card import render_model_card

ROOT = Path(__file__).resolve().parents[2]


def _result(config: TrainConfig, **changes: Any) -> TrainResult:
    base = BaseInfo(
        name="org/base",
        location="org/base",
        kind="sentence-transformer",
        model_type="bert",
        pooling="mean",
        base_layers=12,
        kept_layers=6,
        cls_mean_layer=True,
        cls_spread_ratio=0.01,
        frozen=("embeddings",),
        trainable_parameters=1_200_000,
        total_parameters=7_700_000,
        max_length=256,
    )
    values: dict[str, Any] = {
        "output_dir": Path("models/faq-reranker"),
        "base": base,
        "global_step": 80,
        "stopped_by": "time_budget",
        "resumed_from_step": None,
        "train_queries": 40,
        "train_pairs": 160,
        "eval_queries": 9,
        "metrics_first_stage": {"ndcg@10": 0.5},
        "metrics_before": {"ndcg@10": 0.3},
        "metrics_after": {"ndcg@10": 0.7},
        "losses": ((1, 0.9), (80, 0.3)),
        "train_seconds": 100.0,
        "total_seconds": 130.0,
        "config": config,
        "data": {"source": "pairs.jsonl", "format": "jsonl", "questions": 48, "pool": 99, "bf16": False},
        "mining": {"queries_mined": 48, "hard_negatives": 144, "method": "bm25", "settings": {"depth": 30}},
    }
    return TrainResult(**{**values, **changes})


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(time_budget=600),
        TrainConfig(eval_data="heldout", trainer_args={"lr_scheduler_type": "cosine", "max_grad_norm": 0.5}),
    ],
)
def test_every_placeholder_is_filled(config: TrainConfig) -> None:
    card = render_model_card(_result(config))
    assert card.startswith("---\n")
    assert not re.search(r"\$\{?\w", card), card  # no string.Template placeholder left
    assert "# faq-reranker" in card
    assert "base_model: org/base\n---" in card
    assert "| after: faq-reranker | 0.7000 |" in card
    assert "steps: 80 (stopped by time budget), batch 16, learning rate 5e-05" in card
    if config.trainer_args:
        assert "(linear warm-up 0.1, cosine schedule)" in card
        assert "- other trainer arguments: `lr_scheduler_type='cosine'`, `max_grad_norm=0.5`\n" in card
    else:
        assert "(linear warm-up 0.1, linear decay)" in card
        assert "other trainer arguments" not in card


def test_the_template_is_package_data() -> None:
    tomllib = pytest.importorskip("tomllib")
    template = resources.files("jp_rerank.training").joinpath("model_card.md")
    assert template.is_file()
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert any(fnmatch.fnmatch("training/model_card.md", p) for p in patterns["package-data"]["jp_rerank"])
