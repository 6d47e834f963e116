"""Dataset loaders: BEIR folders, JQaRA and JaCWIR rows, local copies, and the hub loaders' errors."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from jp_rerank.evaluation.datasets import (
    BeirDataset,
    DatasetUnavailableError,
    jacwir_from_rows,
    jqara_from_rows,
    load_beir,
    load_jacwir,
    load_jqara,
    save_beir,
)


def test_load_beir_reads_candidates_and_drops_unjudged_queries(tiny: BeirDataset) -> None:
    assert set(tiny.queries) == {"q1", "q2", "q3"}
    assert tiny.candidates == {q: ["d1", "d2", "d3", "d4"] for q in ("q1", "q2", "q3")}
    assert tiny.passage("d1", with_title=True) == "富士山 富士山は日本一高い山で、標高は3776メートルです。"
    assert tiny.passage("d1") == "富士山は日本一高い山で、標高は3776メートルです。"
    with pytest.raises(KeyError, match="not in the corpus"):
        tiny.passage("nope")


def _jqara_rows() -> list[dict[str, Any]]:
    rows = []
    for q in range(2):
        for p in range(5):
            rows.append(
                {
                    "q_id": f"Q{q}",
                    "question": f"質問{q}",
                    "passage_row_id": 100 + p,
                    "title": f"題{p}",
                    "text": f"本文{p}",
                    "label": int(p == q),
                    "answers": ["x"],
                }
            )
    return rows


def test_jqara_from_rows() -> None:
    ds = jqara_from_rows(_jqara_rows())
    assert ds.queries == {"Q0": "質問0", "Q1": "質問1"}
    assert ds.qrels["Q1"]["101"] == 1
    assert ds.qrels["Q1"]["100"] == 0
    assert sorted(ds.candidates["Q0"]) == ["100", "101", "102", "103", "104"]
    assert ds.candidates == jqara_from_rows(_jqara_rows()).candidates  # fixed order
    assert ds.passage("103", with_title=True) == "題3 本文3"
    assert len(ds.corpus) == 5  # passages shared across questions


def test_jqara_rows_conflicting_passage_text_and_missing_column() -> None:
    rows = _jqara_rows()
    rows[5] = {**rows[5], "text": "別の本文"}  # Q1's passage 100 differs from Q0's
    ds = jqara_from_rows(rows)
    assert ds.corpus["100@Q1"]["text"] == "別の本文"
    assert "100@Q1" in ds.candidates["Q1"]
    with pytest.raises(ValueError, match="missing column 'label'"):
        jqara_from_rows([{k: v for k, v in _jqara_rows()[0].items() if k != "label"}])
    with pytest.raises(ValueError, match="no rows"):
        jqara_from_rows([])


def test_jacwir_from_rows() -> None:
    collection = [
        {"doc_id": f"D{i}", "title": f"T{i}", "description": f"説明{i}", "link": "", "date": ""} for i in range(6)
    ]
    eval_rows = [{"query": "質問", "positive": "D1", "negatives": ["D2", "D3", "D1"]}]
    ds = jacwir_from_rows(collection, eval_rows)
    assert ds.qrels == {"0": {"D1": 1}}
    assert sorted(ds.candidates["0"]) == ["D1", "D2", "D3"]
    assert set(ds.corpus) == {"D1", "D2", "D3"}  # only candidates are kept
    assert ds.passage("D2", with_title=True) == "T2 説明2"
    with pytest.raises(ValueError, match="not in the collection"):
        jacwir_from_rows(collection, [{"query": "q", "positive": "D9", "negatives": []}])


def test_save_beir_round_trip_is_a_local_copy_for_jqara(tmp_path: Path) -> None:
    ds = jqara_from_rows(_jqara_rows())
    folder = save_beir(ds, tmp_path / "jqara", split="test")
    loaded = load_jqara("test", path=folder)
    assert loaded.candidates == ds.candidates
    assert loaded.qrels == ds.qrels
    assert loaded.corpus == ds.corpus
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_beir(ds, folder, split="test")
    save_beir(ds, folder, split="test", overwrite=True)
    jacwir = jacwir_from_rows(
        [{"doc_id": "A", "title": "t", "description": "d"}], [{"query": "q", "positive": "A", "negatives": []}]
    )
    assert load_jacwir(path=save_beir(jacwir, tmp_path / "jacwir", split="eval")).candidates == {"0": ["A"]}


def test_load_beir_errors(tmp_path: Path, tiny_folder: Path) -> None:
    with pytest.raises(FileNotFoundError, match="folder not found"):
        load_beir(tmp_path / "nope")
    root = tiny_folder
    with (root / "candidates" / "test.tsv").open("a", encoding="utf-8") as fh:
        fh.write("q1\tghost\n")
    with pytest.raises(ValueError, match=r"'ghost' is not in corpus\.jsonl"):
        load_beir(root)
    (root / "qrels" / "test.tsv").unlink()
    with pytest.raises(FileNotFoundError, match=r"test\.tsv"):
        load_beir(root)


def test_hub_loaders_without_datasets_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(ImportError, match=r"'datasets' is required.*pip install \"jp-rerank\[eval\]\""):
        load_jqara()
    with pytest.raises(ImportError, match=r"'datasets' is required"):
        load_jacwir()


def test_hub_loaders_when_hub_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("Couldn't reach 'hotchpotch/JQaRA' on the Hub")

    fake = types.ModuleType("datasets")
    fake.load_dataset = unreachable  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", fake)  # stands in for the hub client only
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetUnavailableError, match=r"offline mode is on.*ConnectionError.*pass path="):
        load_jqara("dev")
    with pytest.raises(FileNotFoundError, match="local copy not found"):
        load_jqara(path="/nonexistent/jqara")
