"""The pieces of the Ray jobs that need no Ray: corpus chunking, worker error transport, IVF-PQ encoding, BM25."""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jp_rerank.distributed import CorpusFormatError, RayConfig, iter_corpus, plan_corpus
from jp_rerank.distributed.cluster import ItemWorker
from jp_rerank.errors import CliInputError, ModelLoadError
from jp_rerank.records import iter_records

# ---------------------------------------------------------------------------------------------------- imports


def test_importing_the_package_does_not_import_ray() -> None:
    code = (
        "import sys, jp_rerank, jp_rerank.distributed, jp_rerank.commands.scale; "
        "bad = [m for m in ('ray', 'torch', 'pyarrow', 'faiss') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from jp_rerank.distributed.cluster import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r'pip install "jp-rerank\[ray\]"'):
        require_ray()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"workers": 0}, "workers"), ({"max_retries": -1}, "max_retries"), ({"threads_per_worker": 0}, "threads")],
)
def test_ray_config_rejects_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RayConfig(**kwargs)


def test_cli_options_build_the_config() -> None:
    from jp_rerank.commands import scale

    parser = argparse.ArgumentParser()
    scale.register(parser.add_subparsers())
    args = parser.parse_args(["embed-corpus", "c.jsonl", "-o", "out", "--embedder", "m", "--workers", "3"])
    config = scale.ray_config_from_args(args)
    assert (config.workers, config.address, config.threads) == (3, None, 1)
    args = parser.parse_args(["build-index", "c.jsonl", "-o", "out", "--workers", "0"])
    with pytest.raises(CliInputError, match="workers"):
        scale.ray_config_from_args(args)


def test_rerank_ray_flags_run_the_ray_job_with_the_commands_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`jp-rerank rerank --ray-address ...` hands the command's own options to the Ray job."""
    import jp_rerank.distributed
    from jp_rerank.cli import build_parser, main
    from jp_rerank.commands import scale
    from jp_rerank.distributed import RerankReport

    calls: list[dict[str, Any]] = []

    def fake(input: str, output: str | None, **kwargs: Any) -> RerankReport:
        calls.append({"input": input, "output": output, **kwargs})
        return RerankReport(1, 2, 1, 0.1)

    monkeypatch.setattr(jp_rerank.distributed, "rerank_jsonl", fake)
    parser = build_parser()
    args = parser.parse_args(["rerank", "in.jsonl", "-m", "xsmall", "--top-n", "5", "--device", "cpu"])
    assert not scale.wants_ray(args)
    argv = ["rerank", "in.jsonl", "-o", str(tmp_path / "o.jsonl"), "-m", "xsmall", "--top-n", "5",
            "--ray-address", "auto", "--workers", "4", "--chunk-mb", "2", "--overflow", "window"]  # fmt: skip
    assert scale.wants_ray(parser.parse_args(argv))
    assert scale.wants_ray(parser.parse_args(["rerank", "in.jsonl", "--ray"]))
    assert main(argv) == 0
    (call,) = calls
    assert (call["input"], call["reranker"], call["top_n"], call["threshold"]) == ("in.jsonl", "xsmall", 5, None)
    assert call["reranker_options"] == {"overflow": "window", "batch_size": 32}
    assert call["chunk_bytes"] == 2 << 20
    assert (call["config"].address, call["config"].workers) == ("auto", 4)


# ----------------------------------------------------------------------------------------------------- corpus


def _messy_jsonl(path: Path, *, newline: str = "\n", trailing: bool = False) -> Path:
    rows = []
    for i in range(300):
        if i % 41 == 0:
            rows.append("   ")
            continue
        rec: dict[str, Any] = {"text": "本文" * (1 + i % 17), "n": i}
        if i % 7:
            rec["id"] = f"d{i}"
        if i % 11 == 0:
            rec["nested"] = {"a": [i]}
        rows.append(json.dumps(rec, ensure_ascii=False))
    path.write_bytes((newline.join(rows) + (newline if trailing else "")).encode("utf-8"))
    return path


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("trailing", [True, False])
def test_chunks_read_exactly_as_jp_rerank_index(tmp_path: Path, newline: str, trailing: bool) -> None:
    path = _messy_jsonl(tmp_path / "c.jsonl", newline=newline, trailing=trailing)
    expected = list(iter_records(str(path)))
    for chunk_bytes in (1, 50, 999, 10**7):
        chunks = plan_corpus([path], chunk_bytes=chunk_bytes)
        assert [c.item for c in chunks] == list(range(len(chunks)))
        assert list(iter_corpus(chunks)) == expected, chunk_bytes
        assert sum(c.lines for c in chunks) == 300
    assert len(plan_corpus([path], chunk_bytes=999)) > 5


def test_a_bad_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(f'{{"id": "{i}", "text": "t"}}\n' for i in range(50)) + "{oops\n", encoding="utf-8")
    chunks = plan_corpus([path], chunk_bytes=100)
    with pytest.raises(CorpusFormatError, match=r"bad\.jsonl:51: invalid JSON"):
        list(iter_corpus(chunks))
    path.write_text('{"id": "a", "body": "t"}\n', encoding="utf-8")
    with pytest.raises(CorpusFormatError, match=r"bad\.jsonl:1: field 'text' missing"):
        list(iter_corpus(plan_corpus([path])))
    with pytest.raises(CorpusFormatError, match="not found"):
        plan_corpus([tmp_path / "missing.jsonl"])
    with pytest.raises(CorpusFormatError, match="no input file matches"):
        plan_corpus([str(tmp_path / "none-*.jsonl")])


def test_beir_folders_shards_globs_and_csv(tmp_path: Path) -> None:
    beir = tmp_path / "beir"
    beir.mkdir()
    (beir / "corpus.jsonl").write_text(
        '{"_id": "a1", "title": "富士山", "text": "日本一高い山"}\n{"_id": "a2", "title": "", "text": "湖"}\n',
        encoding="utf-8",
    )
    records = list(iter_corpus(plan_corpus([beir])))
    assert [(r["id"], r["metadata"]) for r in records] == [("a1", {"title": "富士山"}), ("a2", {"title": ""})]
    shards = tmp_path / "shards"
    shards.mkdir()
    for i in (2, 0, 1):
        (shards / f"part-{i}.jsonl").write_text(f'{{"id": "s{i}", "text": "t{i}"}}\n', encoding="utf-8")
    assert [r["id"] for r in iter_corpus(plan_corpus([shards]))] == ["s0", "s1", "s2"]
    assert [r["id"] for r in iter_corpus(plan_corpus([str(shards / "part-[12].jsonl")]))] == ["s1", "s2"]
    csv = tmp_path / "c.csv"
    csv.write_text("id,text,lang\nx,犬,ja\n,猫,ja\n", encoding="utf-8")
    assert list(iter_corpus(plan_corpus([csv]))) == list(iter_records(str(csv)))
    txt = tmp_path / "c.txt"
    txt.write_text("犬が走る\n\n  \n猫が寝る", encoding="utf-8")
    assert list(iter_corpus(plan_corpus([txt]))) == list(iter_records(str(txt)))
    with pytest.raises(CorpusFormatError, match="CSV header must contain a 'body' column"):
        list(iter_corpus(plan_corpus([csv], text_field="body")))


def test_parquet_row_groups(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"text": [f"本文{i}" for i in range(100)], "lang": ["ja"] * 100, "n": list(range(100))})
    pq.write_table(table, tmp_path / "c.parquet", row_group_size=10)
    chunks = plan_corpus([tmp_path / "c.parquet"], chunk_bytes=1)
    assert len(chunks) == 10
    assert [c.first_line for c in chunks[:2]] == [1, 11]
    records = list(iter_corpus(chunks))
    assert [r["id"] for r in records[:2]] == ["c:1", "c:2"]
    assert records[99]["metadata"] == {"lang": "ja", "n": 99}
    with_ids = table.append_column("id", pa.array([f"p{i}" for i in range(100)]))
    pq.write_table(with_ids, tmp_path / "d.parquet", row_group_size=30)
    assert [r["id"] for r in iter_corpus(plan_corpus([tmp_path / "d.parquet"]))] == [f"p{i}" for i in range(100)]


# ------------------------------------------------------------------------------------------------- workers


class _Failing(ItemWorker):
    def setup(self, *, fail_in_setup: bool) -> None:  # type: ignore[override]
        if fail_in_setup:
            raise ModelLoadError("model directory '/nowhere' does not exist")

    def process(self, item: dict[str, Any]) -> dict[str, Any]:
        if item["x"] < 0:
            raise ValueError(f"item {item['item']}: x must not be negative")
        return {"x": item["x"] * 2}


@pytest.mark.parametrize(
    ("fail_in_setup", "x", "error", "message"),
    [(True, 1, ModelLoadError, "does not exist"), (False, -1, ValueError, "item 0: x must not be negative")],
)
def test_worker_errors_come_back_as_raised(fail_in_setup: bool, x: int, error: type, message: str) -> None:
    out = _Failing(fail_in_setup=fail_in_setup)({"item": np.array([0]), "x": np.array([x])})
    exc = pickle.loads(out["error"][0])
    assert type(exc) is error
    assert message in str(exc)
    assert "raised in a Ray worker" in "\n".join(getattr(exc, "__notes__", ["raised in a Ray worker"]))
    ok = _Failing(fail_in_setup=False)({"item": np.array([3]), "x": np.array([21])})
    assert len(ok["error"][0]) == 0
    assert pickle.loads(ok["row"][0]) == {"x": 42}


def test_rerank_lines_formats_and_checks_like_the_cli() -> None:
    from jp_rerank.distributed.rerank import RerankInputError, rerank_lines
    from jp_rerank.rerank import RerankResult

    class Fake:
        def rerank(
            self, query: str, docs: list[str], top_n: int | None = None, score_threshold: float | None = None
        ) -> Any:
            scored = sorted(((len(d), i) for i, d in enumerate(docs)), reverse=True)[:top_n]
            return [RerankResult(index=i, score=float(s)) for s, i in scored]

    data = (
        b'{"query": "q", "documents": ["a", "bbb"]}\n\n'
        b'{"query": "r", "passages": [{"id": "x", "text": "cc"}, {"text": "d"}]}\n'
    )
    lines, pairs = rerank_lines(Fake(), data, source="in.jsonl", first_line=1, top_n=1, threshold=None)
    assert pairs == 4
    assert [json.loads(line) for line in lines] == [
        {"query": "q", "results": [{"id": 1, "index": 1, "score": 3.0, "text": "bbb"}]},
        {"query": "r", "results": [{"id": "x", "index": 0, "score": 2.0, "text": "cc"}]},
    ]
    with pytest.raises(RerankInputError, match=r"in\.jsonl:12: 'query' must be a non-empty string"):
        rerank_lines(
            Fake(), b'{"query": " ", "documents": []}\n', source="in.jsonl", first_line=12, top_n=None, threshold=None
        )


# ------------------------------------------------------------------------------- engine adapters (no Ray)


def test_bm25_from_worker_tokens_equals_the_public_build(tmp_path: Path, demo_corpus: list[dict[str, str]]) -> None:
    from jp_rerank import BM25Index
    from jp_rerank.distributed.index_merge import bm25_from_tokens

    texts = [d["text"] for d in demo_corpus]
    ids = [d["id"] for d in demo_corpus]
    metas: list[dict[str, Any]] = [{"title": d["title"]} for d in demo_corpus]
    worker = BM25Index("mecab")
    tokens = [worker.tokenize(t) for t in texts]
    wrong = [list(t) for t in tokens]
    replayed = bm25_from_tokens("mecab", texts, ids, metas, tokens)
    assert tokens == [None] * len(texts)  # handed over and freed as the index consumed them
    public = BM25Index("mecab").index(texts, ids, metas)
    replayed.save(tmp_path / "replayed")
    public.save(tmp_path / "public")
    loaded = BM25Index.load(tmp_path / "replayed")
    assert loaded.tokenizer.name == public.tokenizer.name
    for query in ("富士山の高さは？", "日本の首都"):
        assert loaded.search(query, 10) == public.search(query, 10)
    from jp_rerank.snapshots import read_snapshot

    (a, _), (b, _) = read_snapshot(tmp_path / "public"), read_snapshot(tmp_path / "replayed")
    for name in sorted(p.name for p in a.iterdir() if p.suffix != ".npz" and p.name != "manifest.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    with np.load(a / "arrays.npz") as x, np.load(b / "arrays.npz") as y:
        assert sorted(x.files) == sorted(y.files)
        for key in x.files:
            np.testing.assert_array_equal(x[key], y[key])
    wrong[0], wrong[1] = wrong[1], wrong[0]
    with pytest.raises(RuntimeError, match="differ between the workers and the driver"):
        bm25_from_tokens("mecab", texts, ids, metas, wrong)


# ------------------------------------------------------------------------------- checks before the job starts


def _jsonl(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"文書{i}"}) + "\n" for i in range(n)), encoding="utf-8")
    return path


def test_build_index_refuses_a_corpus_too_small_for_ivfpq_before_starting_ray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 25: an IVF-PQ index needs >= 256 training vectors; say so before the embedding job, not after it."""
    from jp_rerank.cli import EXIT_USAGE, main
    from jp_rerank.distributed import build_index

    monkeypatch.setitem(sys.modules, "ray", None)  # the checks must fail before anything imports ray
    small, out = _jsonl(tmp_path / "small.jsonl", 100), tmp_path / "idx"
    with pytest.raises(ValueError, match=r"at most 100 passages.*'faiss-ivfpq'.*at least 256 .*faiss-flat"):
        build_index([small], out, embedder="any-model")
    assert main(["build-index", str(small), "-o", str(out), "--embedder", "any-model"]) == EXIT_USAGE
    assert "at most 100 passages" in capsys.readouterr().err
    larger = _jsonl(tmp_path / "larger.jsonl", 300)
    with pytest.raises(ValueError, match=r"at most 300 passages.*at least 512 vectors"):
        build_index([larger], out, embedder="any-model", index_options={"nlist": 512})
    with pytest.raises(ValueError, match=r"training sample of 100 vectors.*at least 256.*train_size"):
        build_index([larger], out, embedder="any-model", train_size=100, batch_size=50)
    assert not out.exists()
    with pytest.raises(ImportError, match="ray"):  # big enough, or not trained first: the job starts
        build_index([larger], out, embedder="any-model")
    with pytest.raises(ImportError, match="ray"):
        build_index([small], out, embedder="any-model", backend="faiss-flat")


def test_csv_and_text_corpora_too_small_for_ivfpq_are_refused_before_starting_ray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CSV and text inputs used to be checked only once the embedding job had run; lone-CR files count too."""
    from jp_rerank.distributed import build_index

    monkeypatch.setitem(sys.modules, "ray", None)
    csv = tmp_path / "small.csv"
    csv.write_text("id,text\n" + "".join(f'd{i},"文書{i}\n二行目"\n' for i in range(60)), encoding="utf-8")
    text = tmp_path / "small.txt"
    text.write_bytes("\r".join(f"文書{i}" for i in range(50)).encode())  # old Mac line ends, no final break
    out = tmp_path / "idx"
    with pytest.raises(ValueError, match=r"at most 172 passages.*at least 256"):  # 121 + 1 and 49 + 1 line breaks
        build_index([csv, text], out, embedder="any-model")
    big_text = tmp_path / "big.txt"
    big_text.write_text("".join(f"文書{i}\n" for i in range(300)), encoding="utf-8")
    with pytest.raises(ImportError, match="ray"):  # enough lines: the job starts
        build_index([big_text], out, embedder="any-model")
    assert not out.exists()
