"""Shared by the evaluation tests: a tiny BEIR folder, this machine's facts, and a rerank run to report on."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from jp_rerank.evaluation import EvalResult, evaluate_rerank
from jp_rerank.evaluation.datasets import BeirDataset, load_beir
from jp_rerank.hardware import MachineInfo, machine_info

CORPUS = {
    "d1": ("富士山", "富士山は日本一高い山で、標高は3776メートルです。"),
    "d2": ("琵琶湖", "琵琶湖は日本最大の湖で、滋賀県にあります。"),
    "d3": ("東京タワー", "東京タワーは東京都港区にある電波塔です。"),
    "d4": ("信濃川", "信濃川は日本一長い川です。"),
}
QUERIES = {"q1": "日本一高い山は？", "q2": "日本で一番大きい湖は？", "q3": "東京タワーはどこにある？"}
GOLD = {"q1": "d1", "q2": "d2", "q3": "d3"}


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """A fresh tiny BEIR folder: four passages, three judged queries, one unjudged, and candidates."""
    root = tmp_path / "tiny"
    root.mkdir(parents=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for did, (title, text) in CORPUS.items():
            fh.write(json.dumps({"_id": did, "title": title, "text": text}, ensure_ascii=False) + "\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for qid, text in {**QUERIES, "q-unjudged": "関係ない質問"}.items():
            fh.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    (root / "qrels").mkdir()
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t1" for q, d in GOLD.items()]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "candidates").mkdir()
    rows = ["query-id\tcorpus-id"] + [f"{q}\t{d}" for q in QUERIES for d in ("d1", "d2", "d3", "d4")]
    (root / "candidates" / "test.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.fixture
def tiny(tiny_folder: Path) -> BeirDataset:
    return load_beir(tiny_folder)


@pytest.fixture
def hw() -> MachineInfo:
    return machine_info(include_torch=False)


@pytest.fixture
def make_result(tiny: BeirDataset, hw: MachineInfo) -> Callable[..., EvalResult]:
    """``make_result(name, scale=1.0)``: a rerank run on ``tiny`` scoring the query characters each passage has."""

    def make(name: str, scale: float = 1.0) -> EvalResult:
        return evaluate_rerank(
            tiny.queries,
            tiny.candidates,
            tiny,
            lambda q, ps: [scale * len(set(q) & set(p)) for p in ps],
            metrics=["ndcg@10", "mrr@10"],
            models={"reranker": name},
            settings={"note": "テスト"},
            hardware=hw,
        )

    return make
