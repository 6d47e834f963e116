"""The jp-rerank command line: subcommands, help, errors and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jp_rerank.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, build_parser, main
from jp_rerank.snapshots import read_snapshot


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    names = sorted(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert {"demo", "models", "rerank"} <= set(names)
    for name in names:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
        assert f"usage: jp-rerank {name}" in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_USAGE
    assert "usage: jp-rerank" in capsys.readouterr().err


def test_models_lists_presets_as_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "hotchpotch/japanese-reranker-cross-encoder-xsmall-v1" in out
    assert "fugashi, unidic_lite" in out
    assert main(["models", "--kind", "dense", "--json"]) == EXIT_OK
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows
    assert {r["kind"] for r in rows} == {"dense"}
    e5 = next(r for r in rows if r["alias"] == "me5-small")
    assert e5["query_prefix"] == "query: "


def test_rerank_jsonl_in_jsonl_out(tmp_path: Path, xlmr_ce_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps({"query": "富士山の高さ", "documents": ["富士山は3776メートル。", "京都の寺。", "新幹線。"]})
        + "\n\n"
        + json.dumps({"query": "京都", "passages": [{"id": "a", "text": "京都の寺。"}, {"id": "b", "text": "海"}]})
        + "\n",
        encoding="utf-8",
    )
    dst = tmp_path / "out.jsonl"
    assert main(["rerank", str(src), "-o", str(dst), "-m", str(xlmr_ce_path), "--top-n", "2"]) == EXIT_OK
    rows = [json.loads(line) for line in dst.read_text(encoding="utf-8").splitlines()]
    assert [r["query"] for r in rows] == ["富士山の高さ", "京都"]
    first = rows[0]["results"]
    assert len(first) == 2
    assert first[0]["score"] >= first[1]["score"]
    assert all(isinstance(r["score"], float) for r in first)
    assert {r["id"] for r in rows[1]["results"]} == {"a", "b"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json\n", "in.jsonl:1: invalid JSON"),
        ('{"query": "", "documents": []}\n', "'query' must be a non-empty string"),
        ('{"query": "q", "documents": [1]}\n', "'documents' must be a list of strings"),
        ('{"query": "q"}\n', "expected 'documents'"),
        ("[1, 2]\n", "expected a JSON object"),
    ],
)
def test_rerank_bad_input_is_a_usage_error(
    tmp_path: Path, xlmr_ce_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(content, encoding="utf-8")
    assert main(["rerank", str(src), "-m", str(xlmr_ce_path)]) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_missing_file_and_unloadable_model_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rerank", str(tmp_path / "missing.jsonl")]) == EXIT_USAGE
    assert "input file not found" in capsys.readouterr().err
    src = tmp_path / "in.jsonl"
    src.write_text('{"query": "q", "documents": ["d"]}\n', encoding="utf-8")
    assert main(["rerank", str(src), "-m", "small"]) == EXIT_FAILURE  # hub unreachable, not in the test cache
    assert "could not load model" in capsys.readouterr().err


def _beir(root: Path, corpus: list[dict[str, str]], queries: list[dict[str, object]]) -> Path:
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for d in corpus:
            fh.write(json.dumps({"_id": d["id"], "title": d["title"], "text": d["text"]}, ensure_ascii=False) + "\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for q in queries:
            fh.write(json.dumps({"_id": q["id"], "text": q["text"]}, ensure_ascii=False) + "\n")
    lines = ["query-id\tcorpus-id\tscore"]
    lines += [f"{q['id']}\t{r}\t1" for q in queries for r in q["relevant"]]  # type: ignore[attr-defined]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_eval_and_report_on_a_beir_folder(
    tmp_path: Path,
    xlmr_ce_path: Path,
    demo_corpus: list[dict[str, str]],
    demo_queries: list[dict[str, object]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = _beir(tmp_path / "demo", demo_corpus, demo_queries)
    bm25_json, rerank_json = tmp_path / "bm25.json", tmp_path / "rerank.json"
    assert main(["eval", str(data), "-m", "none", "--name", "bm25", "-o", str(bm25_json)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "ndcg@10" in out
    assert "bm25" in out
    saved = json.loads(bm25_json.read_text(encoding="utf-8"))
    assert saved["metrics"]["recall@100"] == pytest.approx(1.0)  # the whole demo corpus fits in the first 100
    assert 0.5 < saved["metrics"]["ndcg@10"] <= 1.0
    args = ["eval", str(data), "--setting", "rerank", "-m", str(xlmr_ce_path), "--first-k", "10", "--limit", "5"]
    assert main([*args, "--name", "tiny", "-o", str(rerank_json)]) == EXIT_OK
    reranked = json.loads(rerank_json.read_text(encoding="utf-8"))
    assert reranked["dataset"]["n_queries"] == 5
    assert reranked["setting"] == "rerank"
    capsys.readouterr()
    md, png = tmp_path / "cmp.md", tmp_path / "cmp.png"
    assert main(["report", str(bm25_json), str(rerank_json), "--markdown", str(md), "--plot", str(png)]) == EXIT_OK
    table = capsys.readouterr().out
    assert "bm25" in table
    assert "tiny" in table
    assert "| bm25 |" in md.read_text(encoding="utf-8")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_missing_dataset_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(tmp_path / "nope"), "-m", "none"]) == EXIT_USAGE
    assert "dataset folder not found" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "none.json")]) == EXIT_USAGE


def test_index_then_search_bm25_and_hybrid(
    tmp_path: Path, static_path: Path, xlmr_ce_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "passages.jsonl"
    rows = [
        {"id": "fuji", "text": "富士山の標高は3776メートルです。", "tags": ["山"]},
        {"id": "kyoto", "text": "京都には多くの寺があります。"},
        {"id": "shinkansen", "text": "東海道新幹線は1964年に開業しました。"},
    ]
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    txt = tmp_path / "more.txt"
    txt.write_text("北海道の冬は寒い。\n\n沖縄の海はきれいです。\n", encoding="utf-8")
    idx = tmp_path / "idx"
    assert (
        main(["index", str(src), str(txt), "-o", str(idx), "--embedder", str(static_path), "--backend", "exact"]) == 0
    )
    assert "indexed 5 passages" in capsys.readouterr().out
    _, manifest = read_snapshot(idx)
    assert manifest["backend"] == "search-index"
    assert manifest["count"] == 5
    assert manifest["bm25"].startswith("mecab")
    assert main(["index", str(src), "-o", str(idx)]) == EXIT_USAGE  # exists, no --overwrite
    assert "already exists" in capsys.readouterr().err

    assert main(["search", str(idx), "富士山の標高", "-m", "none", "--top-n", "2", "--json"]) == EXIT_OK
    result = json.loads(capsys.readouterr().out.splitlines()[0])
    assert result["results"][0]["id"] == "fuji"
    assert result["results"][0]["metadata"]["tags"] == '["山"]'  # non-scalar metadata kept as JSON text
    assert main(["search", str(idx), "京都の寺", "新幹線", "-m", str(xlmr_ce_path), "--json"]) == EXIT_OK
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [x["query"] for x in lines] == ["京都の寺", "新幹線"]
    assert all(r["rerank_score"] is not None for r in lines[0]["results"])


def test_search_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", str(tmp_path), "質問", "-m", "none"]) == EXIT_USAGE
    assert "not a jp-rerank index folder" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    assert main(["index", str(empty), "-o", str(tmp_path / "i")]) == EXIT_USAGE
    assert "hold no passages" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("title,body\nx,y\n", encoding="utf-8")
    assert main(["index", str(bad), "-o", str(tmp_path / "i")]) == EXIT_USAGE
    assert "must contain a 'text' column" in capsys.readouterr().err


def test_ctrl_c_during_index_is_one_line_exit_130_and_the_previous_index_stays(tmp_path: Path) -> None:
    """A real SIGINT while ``jp-rerank index --overwrite`` reads a large file: no traceback, the old index kept."""
    import os
    import signal
    import subprocess
    import sys

    small = tmp_path / "small.txt"
    small.write_text("富士山は日本一高い山です。\n京都には寺が多い。\n", encoding="utf-8")
    out = tmp_path / "idx"
    assert main(["index", str(small), "-o", str(out)]) == EXIT_OK
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    big = tmp_path / "big.txt"
    big.write_text("".join(f"文書{i}は東京と大阪の話です。\n" for i in range(400_000)), encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "jp_rerank", "index", str(big), "-o", str(out), "--overwrite"]
    # a shell's background job (`make test &`) starts with SIGINT ignored, and a child inherits that: Ctrl-C is
    # what the test sends, so the child gets the default disposition back
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    seen = b""
    while b"read " not in seen:  # tqdm's first progress line: the command is inside its work now
        chunk = proc.stderr.read1(256)  # type: ignore[attr-defined]
        assert chunk, f"index ended before it started reading: {seen.decode(errors='replace')}"
        seen += chunk
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    err = (seen + rest).decode(errors="replace")
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert err.rstrip().splitlines()[-1].endswith("jp-rerank index: interrupted")
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_index_of_a_beir_corpus_keeps_its_ids_and_titles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 25, item 16: `_id` was replaced by `corpus:N` ids (build-index, train and eval read `_id`)."""
    from jp_rerank.pipeline.folder import load_search_index

    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {"_id": "fuji", "title": "富士山", "text": "富士山は日本一高い山です。"},
        {"_id": "kyoto", "title": "京都", "text": "京都には寺が多い。"},
    ]
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert main(["index", str(corpus), "-o", str(tmp_path / "idx")]) == EXIT_OK
    capsys.readouterr()
    hits = load_search_index(tmp_path / "idx", reranker=None).retrieve("富士山の高さ")
    assert hits[0].id == "fuji"
    assert hits[0].metadata == {"title": "富士山"}
    assert {h.id for h in hits} <= {"fuji", "kyoto"}
