"""Result files: JSON round trip and the errors of reading and writing them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from jp_rerank.evaluation import EvalResult, load_result, load_results, save_result
from jp_rerank.hardware import MachineInfo

pytest.importorskip("ranx")


def test_json_round_trip(make_result: Callable[..., EvalResult], hw: MachineInfo, tmp_path: Path) -> None:
    result = make_result("overlap")
    path = save_result(result, tmp_path / "out" / "overlap.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["schema"] == "jp-rerank/eval-result"
    assert data["settings"]["note"] == "テスト"
    assert "run" not in data
    assert data["timing"]["pairs_per_second"] > 0
    loaded = load_result(path)
    assert loaded == result
    assert loaded.run is None
    assert loaded.hardware.cpu_features == hw.cpu_features
    assert [r.name for r in load_results(tmp_path / "out")] == ["overlap"]
    assert load_results([path, path]) == [result, result]


def test_result_file_errors(make_result: Callable[..., EvalResult], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        load_results([tmp_path / "missing.json"])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.json: invalid JSON"):
        load_result(bad)
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(ValueError, match="not a jp-rerank evaluation result"):
        load_result(other)
    data = make_result("x").to_dict()
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**data, "schema_version": 99}), encoding="utf-8")
    with pytest.raises(ValueError, match="schema_version 99"):
        load_result(newer)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**data, "timing": {"seconds": "fast", "queries": 3}}), encoding="utf-8")
    with pytest.raises(ValueError, match="'seconds' must be a number"):
        load_result(broken)
    lacking = tmp_path / "lacking.json"
    lacking.write_text(json.dumps({k: v for k, v in data.items() if k != "metrics"}), encoding="utf-8")
    with pytest.raises(ValueError, match="lacks"):
        load_result(lacking)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no \*\.json"):
        load_results(empty)
    with pytest.raises(ValueError, match="cannot be written as JSON"):
        save_result(replace(make_result("x"), settings={"bad": object()}), tmp_path / "x.json")
