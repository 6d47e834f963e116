"""Bad-input matrix for ``jp-rerank rerank`` (run in-process through ``jp_rerank.cli.main``).

Usage errors exit with code 2 and a one-line message naming the file, the line and the problem; documented
results are valid JSONL that keeps every passage.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from jp_rerank.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main

pytestmark = pytest.mark.timeout(300)

QUERY = "富士山の高さは？"


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def strict_rows(out: str) -> list[dict[str, Any]]:
    """Parse JSONL strictly: ``NaN``/``Infinity`` tokens are not JSON and fail the test."""

    def refuse(token: str) -> None:
        raise AssertionError(f"the CLI wrote {token}, which is not valid JSON")

    return [json.loads(line, parse_constant=refuse) for line in out.splitlines()]


USAGE_CASES: list[tuple[str, str, str]] = [
    ("empty query", json.dumps({"query": "", "documents": ["a"]}), r"in\.jsonl:1: 'query' must be a non-empty string"),
    ("whitespace query", json.dumps({"query": " \u3000", "documents": ["a"]}), "'query' must be a non-empty string"),
    ("null query", json.dumps({"query": None, "documents": ["a"]}), "'query' must be a non-empty string"),
    ("number query", json.dumps({"query": 3, "documents": ["a"]}), "'query' must be a non-empty string"),
    ("null document", json.dumps({"query": QUERY, "documents": ["a", None]}), "'documents' must be a list of strings"),
    ("number document", json.dumps({"query": QUERY, "documents": [1.5]}), "'documents' must be a list of strings"),
    ("documents not a list", json.dumps({"query": QUERY, "documents": "a"}), "'documents' must be a list of strings"),
    ("no passages", json.dumps({"query": QUERY}), "expected 'documents' \\(list of strings\\) or 'passages'"),
    ("passage without text", json.dumps({"query": QUERY, "passages": [{"id": 1}]}), r"passages\[0\] must be an object"),
    ("not JSON", "{not json", r"in\.jsonl:1: invalid JSON"),
    ("not an object", json.dumps(["a", "b"]), "expected a JSON object, got list"),
    (
        "lone surrogate",
        '{"query": "q", "documents": ["ok", "bad \\ud800"]}',
        r"in\.jsonl:1: documents\[1\] contains a lone surrogate",
    ),
    # issue 12: queries that normalisation empties, and JSON that is not strict JSON
    ("NUL query", json.dumps({"query": "\x00", "documents": ["a"]}), r"in\.jsonl:1: 'query' must be a non-empty"),
    ("zero-width query", json.dumps({"query": "\u200b\ufeff", "documents": ["a"]}), "control and format characters"),
    ("NaN", '{"query": "q", "documents": ["a"], "w": NaN}', r"in\.jsonl:1: invalid JSON \(NaN is not valid JSON"),
    ("Infinity", '{"query": "q", "documents": ["a"], "w": -Infinity}', "-Infinity is not valid JSON"),
    ("overflowing number", '{"query": "q", "documents": ["a"], "w": 1e999}', "1e999 overflows to infinity"),
    ("deeply nested", '{"query": "q", "w": ' + "[" * 100_000 + "]" * 100_000 + "}", r"in\.jsonl:1: .*nested too deep"),
    ("huge integer", '{"query": "q", "documents": ["a"], "w": ' + "9" * 5000 + "}", r"in\.jsonl:1: invalid JSON"),
]


@pytest.mark.parametrize(("case", "line", "match"), USAGE_CASES, ids=[c[0] for c in USAGE_CASES])
def test_bad_lines_are_usage_errors_naming_the_line(
    xlmr_ce_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, line: str, match: str
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(line + "\n", encoding="utf-8")
    code, _, err = run(["rerank", str(src), "-m", str(xlmr_ce_path), "--device", "cpu"], capsys)
    assert code == EXIT_USAGE, case
    assert err.startswith("jp-rerank rerank: error: ")
    assert len(err.strip().splitlines()) == 1  # one line, no traceback
    assert re.search(match, err), err


def test_missing_input_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["rerank", str(tmp_path / "nope.jsonl")], capsys)
    assert code == EXIT_USAGE
    assert "input file not found" in err


def test_bad_options_are_usage_errors(xlmr_ce_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"query": QUERY, "documents": ["a"]}])
    code, _, err = run(["rerank", str(src), "-m", str(xlmr_ce_path), "--top-n", "0"], capsys)
    assert code == EXIT_USAGE
    assert "top_n must be a positive integer" in err
    code, _, err = run(["rerank", str(src), "-m", str(xlmr_ce_path), "--batch-size", "0"], capsys)
    assert code == EXIT_USAGE
    assert "batch_size must be positive" in err


def test_empty_file_blank_lines_and_empty_candidates(
    xlmr_ce_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    assert run(["rerank", str(empty), "-m", str(xlmr_ce_path)], capsys) == (EXIT_OK, "", "")
    src = tmp_path / "in.jsonl"
    src.write_text("\n" + json.dumps({"query": QUERY, "documents": []}) + "\n\n", encoding="utf-8")
    code, out, _ = run(["rerank", str(src), "-m", str(xlmr_ce_path), "--device", "cpu"], capsys)
    assert code == EXIT_OK
    assert strict_rows(out) == [{"query": QUERY, "results": []}]


def test_messy_long_and_duplicate_passages_all_come_back(
    xlmr_ce_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = [
        "富士山は3776メートル。" * 8_000,  # ~100k characters
        "制御\x00文字\x1fと\u200bゼロ幅",
        "😀🎌 絵文字",
        "ｶﾀｶﾅとＡＢＣ",
        "日本語 English 한국어",
        "重複",
        "重複",
        "",
    ]
    src = write_jsonl(tmp_path / "in.jsonl", [{"query": QUERY, "documents": docs}])
    code, out, err = run(["rerank", str(src), "-m", str(xlmr_ce_path), "--device", "cpu"], capsys)
    assert code == EXIT_OK, err
    (row,) = strict_rows(out)
    assert sorted(r["index"] for r in row["results"]) == list(range(len(docs)))
    assert [docs[r["index"]] for r in row["results"]] == [r["text"] for r in row["results"]]  # caller text, unchanged
    assert all(math.isfinite(r["score"]) for r in row["results"])


def test_over_the_default_caps_is_a_usage_error(
    xlmr_ce_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"query": QUERY, "documents": ["短い", "あ" * 1_000_001]}])
    code, out, err = run(["rerank", str(src), "-m", str(xlmr_ce_path), "--device", "cpu"], capsys)
    assert code == EXIT_USAGE
    assert "documents[1] has 1000001 characters, over the cap max_chars=1000000" in err
    assert out == ""


def test_nan_scores_are_written_as_valid_json(
    nan_ce_path: Path, poison: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = ["富士山は高い。", f"{poison}が好き。", "京都の寺。"]
    src = write_jsonl(tmp_path / "in.jsonl", [{"query": QUERY, "documents": docs}])
    code, out, err = run(["rerank", str(src), "-m", str(nan_ce_path), "--device", "cpu"], capsys)
    assert code == EXIT_OK, err
    (row,) = strict_rows(out)
    assert [r["index"] for r in row["results"]][-1] == 1  # ranked last, still present
    assert row["results"][-1]["score"] is None  # NaN has no JSON form: written as null
    assert all(isinstance(r["score"], float) for r in row["results"][:-1])


# ------------------------------------------------------------------------------------------------ index / search


def test_index_command_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        "empty.jsonl": ("", "the input files hold no passages"),
        "dup.jsonl": ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "duplicate passage id 'a'"),
        "notext.jsonl": ('{"id": "a", "text": "x"}\n{"id": "b"}\n', "notext.jsonl:2: field 'text' missing"),
        "badjson.jsonl": ('{"id": "a", "text": "x"}\n{oops\n', r"badjson.jsonl:2: invalid JSON"),
        "surrogate.jsonl": ('{"id": "a", "text": "x\\ud800"}\n', "surrogate"),
    }
    for name, (content, match) in cases.items():
        src = tmp_path / name
        src.write_text(content, encoding="utf-8")
        out = tmp_path / f"idx-{name}"
        code, _, err = run(["index", str(src), "-o", str(out), "--bm25", "char2"], capsys)
        assert code == EXIT_USAGE, name
        assert re.search(match, err), err
        assert not out.exists()  # nothing half-built is left under the target name
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".idx-{name}")]  # nor beside it


def test_search_command_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_jsonl(
        tmp_path / "p.jsonl", [{"id": "a", "text": "東京は日本の首都。"}, {"id": "b", "text": "京都の寺。"}]
    )
    idx = tmp_path / "idx"
    assert run(["index", str(src), "-o", str(idx), "--bm25", "char2"], capsys)[0] == EXIT_OK
    for query in ("", " \u3000"):
        code, out, err = run(["search", str(idx), query, "-m", "none"], capsys)
        assert code == EXIT_USAGE
        assert "query is empty or whitespace only" in err
    code, _, err = run(["search", str(tmp_path / "missing"), "東京", "-m", "none"], capsys)
    assert code == EXIT_USAGE
    assert "is not a jp-rerank index folder" in err
    code, out, _ = run(["search", str(idx), "京都", "-m", "none", "--json"], capsys)
    assert code == EXIT_OK
    (row,) = strict_rows(out)
    assert row["results"][0]["id"] == "b"
    assert run(["index", str(src), "-o", str(idx), "--bm25", "char2"], capsys)[0] == EXIT_USAGE  # no silent overwrite


# ------------------------------------------------------------------------------------------------ issue 12


def one_line_error(err: str, command: str) -> str:
    """The one error line of ``err`` (progress bars may precede it); there is no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("jp-rerank ")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"jp-rerank {command}: error: "), err
    return lines[0]


def test_invalid_utf8_names_the_file_line_and_column(
    xlmr_ce_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"query": "q", "documents": ["a"]}\n{"query": "\xe5\xaf\x8c\xff"}\n')
    code, out, err = run(["rerank", str(src), "-m", str(xlmr_ce_path), "--device", "cpu"], capsys)
    assert code == EXIT_USAGE
    assert "in.jsonl:2: not valid UTF-8 (byte 0xff at column 13)" in one_line_error(err, "rerank")
    assert len(strict_rows(out)) == 1  # the line before is already written
    csv_src = tmp_path / "p.csv"
    csv_src.write_bytes("id,text\na,東京\n".encode() + b"b,\x8e\x52\n")  # Shift-JIS bytes in a UTF-8 file
    code, _, err = run(["index", str(csv_src), "-o", str(tmp_path / "idx"), "--bm25", "char2"], capsys)
    assert code == EXIT_USAGE
    assert "p.csv:3: not valid UTF-8" in one_line_error(err, "index")


@pytest.mark.parametrize("bom", ["csv", "jsonl"])
def test_a_file_with_a_byte_order_mark_keeps_its_first_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bom: str
) -> None:
    if bom == "csv":  # what Excel writes for "CSV UTF-8"
        src = tmp_path / "excel.csv"
        src.write_text(
            "id,text,lang\nd1,富士山は日本一高い山です。,ja\nd2,京都には寺が多い。,ja\n", encoding="utf-8-sig"
        )
    else:
        src = tmp_path / "notepad.jsonl"
        rows = [{"id": "d1", "text": "富士山は日本一高い山です。", "lang": "ja"}, {"id": "d2", "text": "京都の寺。"}]
        src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8-sig")
    idx = tmp_path / "idx"
    assert run(["index", str(src), "-o", str(idx), "--bm25", "char2"], capsys)[0] == EXIT_OK
    code, out, err = run(["search", str(idx), "富士山", "-m", "none", "--json"], capsys)
    assert code == EXIT_OK, err
    (row,) = strict_rows(out)
    assert row["results"][0]["id"] == "d1"  # not "excel:2": the id column survived the BOM
    assert row["results"][0]["metadata"] == {"lang": "ja"}


def test_nan_metadata_is_refused_when_indexing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "p.jsonl"
    src.write_text('{"id": "a", "text": "東京", "score": 0.5}\n{"id": "b", "text": "大阪", "score": NaN}\n', "utf-8")
    idx = tmp_path / "idx"
    code, _, err = run(["index", str(src), "-o", str(idx), "--bm25", "char2"], capsys)
    assert code == EXIT_USAGE
    assert "p.jsonl:2: invalid JSON (NaN is not valid JSON" in one_line_error(err, "index")
    assert not idx.exists()  # not an index that every later search would fail on
    src.write_text('{"id": "a", "text": "東京", "score": 0.5}\n{"id": "b", "text": "大阪", "score": null}\n', "utf-8")
    assert run(["index", str(src), "-o", str(idx), "--bm25", "char2"], capsys)[0] == EXIT_OK
    code, out, _ = run(["search", str(idx), "大阪", "-m", "none", "--json"], capsys)
    assert code == EXIT_OK
    assert strict_rows(out)[0]["results"][0]["metadata"] == {"score": "null"}  # non-scalar values kept as JSON text


def test_bad_ids_and_ragged_csv_rows_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        "nullid.jsonl": ('{"id": null, "text": "x"}\n', r"nullid\.jsonl:1: field 'id' must be a non-empty string"),
        "listid.jsonl": ('{"id": ["a"], "text": "x"}\n', "field 'id' must be a non-empty string or an integer"),
        "ragged.csv": ("id,text\na,東京\nb,大阪,extra\n", r"ragged\.csv:3: this row has more fields than the header"),
        "noheader.csv": ("", "CSV header must contain a 'text' column"),
    }
    for name, (content, match) in cases.items():
        src = tmp_path / name
        src.write_text(content, encoding="utf-8")
        code, _, err = run(["index", str(src), "-o", str(tmp_path / f"idx-{name}"), "--bm25", "char2"], capsys)
        assert code == EXIT_USAGE, name
        assert re.search(match, one_line_error(err, "index")), err


@pytest.mark.parametrize("device", ["bogus", "cuda:x", "cuda", "cuda:7", "mps"])
def test_a_bad_device_is_a_usage_error_without_traceback(
    xlmr_ce_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], device: str
) -> None:
    import torch

    if device.startswith("cuda") and device != "cuda:x" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    src = write_jsonl(tmp_path / "in.jsonl", [{"query": QUERY, "documents": ["a"]}])
    code, _, err = run(["rerank", str(src), "-m", str(xlmr_ce_path), "--device", device], capsys)
    assert code == EXIT_USAGE
    assert f"--device {device!r}" in one_line_error(err, "rerank")
    passages = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "text": "東京"}])
    code, _, err = run(["index", str(passages), "-o", str(tmp_path / "idx"), "--device", device], capsys)
    assert code == EXIT_USAGE
    assert f"--device {device!r}" in one_line_error(err, "index")


def test_bad_output_paths_are_usage_errors(
    xlmr_ce_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"query": QUERY, "documents": ["a"]}])
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder", encoding="utf-8")
    for out, match in [
        (tmp_path, "is a folder"),
        (a_file / "out.jsonl", "is a file, not a folder"),
        (a_file / "deeper" / "out.jsonl", "is a file, not a folder"),
    ]:
        code, _, err = run(["rerank", str(src), "-m", str(xlmr_ce_path), "-o", str(out)], capsys)
        assert code == EXIT_USAGE, out
        assert match in one_line_error(err, "rerank")
    passages = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "text": "東京"}])
    for out, match in [(a_file, "it exists and is a file"), (a_file / "idx", "is a file, not a folder")]:
        code, _, err = run(["index", str(passages), "-o", str(out), "--bm25", "char2"], capsys)
        assert code == EXIT_USAGE, out
        assert match in one_line_error(err, "index")
    assert run(["index", str(passages), "-o", str(tmp_path / "idx"), "--bm25", "char2"], capsys)[0] == EXIT_OK
    code, _, err = run(["search", str(tmp_path / "idx"), "東京", "-m", "none", "-o", str(tmp_path)], capsys)
    assert code == EXIT_USAGE
    assert "is a folder" in one_line_error(err, "search")
    assert a_file.read_text(encoding="utf-8") == "not a folder"


def test_search_queries_are_checked_like_the_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "text": "東京は日本の首都。"}])
    idx = tmp_path / "idx"
    assert run(["index", str(src), "-o", str(idx), "--bm25", "char2"], capsys)[0] == EXIT_OK
    for query in ("\x00", "\u200b", "\ufeff", "\u2060\u00ad"):
        code, out, err = run(["search", str(idx), query, "-m", "none"], capsys)
        assert code == EXIT_USAGE, repr(query)
        assert "control and format characters" in one_line_error(err, "search")
        assert out == ""
    code, _, err = run(["search", str(idx), "東京", "あ" * 1_000_001, "-m", "none"], capsys)
    assert code == EXIT_USAGE
    assert "query 2 has 1000001 characters, over the cap of 1000000" in one_line_error(err, "search")


def test_a_folder_that_is_not_a_model_is_a_runtime_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"query": QUERY, "documents": ["a"]}])
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    (not_a_model / "readme.txt").write_text("hello", encoding="utf-8")
    code, out, err = run(["rerank", str(src), "-m", str(not_a_model), "--device", "cpu"], capsys)
    assert code == EXIT_FAILURE  # ModelLoadError: exit 1 (it was a raw ValueError, exit 2)
    assert "is not a model folder" in one_line_error(err, "rerank")
    assert out == ""
