"""Training data readers, held-out split, saved mined sets and hard-negative mining (no model needed)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from jp_rerank.training import (
    TrainingDataError,
    TrainingSet,
    load_corpus,
    load_training_data,
    mine_hard_negatives,
    save_jsonl,
    split_heldout,
)

FUJI = "富士山は静岡県と山梨県にまたがる日本最高峰の山で、標高は3776メートルです。"
BIWA = "琵琶湖は滋賀県にある日本最大の湖で、面積は約670平方キロメートルです。"
TOKYO = "東京タワーは東京都港区にある電波塔で、高さは333メートルです。"


def _write(path: Path, text: str, *, bom: bool = False, newline: str = "\n") -> Path:
    path.write_bytes((("\ufeff" if bom else "") + text.replace("\n", newline)).encode("utf-8"))
    return path


def _jsonl(path: Path, rows: list[object], **kw: bool | str) -> Path:
    return _write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ JSONL


def test_jsonl_with_bom_crlf_and_every_field_spelling(tmp_path: Path) -> None:
    rows = [
        {"query": "富士山の高さは？", "positive": FUJI},
        {"query": "日本一大きい湖は？", "positives": [BIWA], "negatives": [TOKYO], "qid": "q-biwa"},
        {"query": "東京タワーの高さは？", "pos": [TOKYO], "neg": [FUJI]},
    ]
    ts = load_training_data(_jsonl(tmp_path / "train.jsonl", rows, bom=True, newline="\r\n"))
    assert ts.format == "jsonl"
    assert [q.query for q in ts.queries] == ["富士山の高さは？", "日本一大きい湖は？", "東京タワーの高さは？"]
    assert ts.queries[0].positives == (FUJI,)  # the BOM did not end up in the first field, CR not in the text
    assert ts.queries[1].qid == "q-biwa"
    assert ts.queries[1].negatives == (TOKYO,)
    assert ts.queries[2].negatives == (FUJI,)
    assert set(ts.corpus.values()) == {FUJI, BIWA, TOKYO}
    assert ts.num_pairs == 5


def test_repeated_question_is_merged(tmp_path: Path) -> None:
    rows = [{"query": "富士山の高さは？", "positive": FUJI}, {"query": "富士山の高さは？", "positives": [FUJI, TOKYO]}]
    ts = load_training_data(_jsonl(tmp_path / "d.jsonl", rows))
    assert len(ts.queries) == 1
    assert ts.queries[0].positives == (FUJI, TOKYO)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"positive": "x"}', r"missing field 'query'"),
        ('{"query": "質問"}', r"missing field 'positive' or 'positives'"),
        ('{"query": "質問", "positives": []}', r"'positives' is an empty list"),
        ('{"query": "質問", "positives": "文書"}', r"'positives' must be a list of strings"),
        ('{"query": "  ", "positive": "文書"}', r"'query' is empty"),
        ('{"query": "\\u200b\\u2060", "positive": "文書"}', r"'query' is only invisible characters"),
        ('{"query": "質問", "positive": "\\ufeff\\u200b"}', r"'positive' is only invisible characters"),
        ('{"query": "質問", "positives": ["文書", "\\u2060"]}', r"'positives\[1\]' is only invisible characters"),
        ('{"query": "質問", "positive": "文書", "negatives": ["\\u200b"]}', r"'negatives\[0\]' is only invisible"),
        ('{"query": "質問", "positive": "文書", "negatives": ["文書"]}', r"both positive and negative"),
        ('{"query": "質問", "positive": 3}', r"'positive' must be a string, got int"),
        ('{"query": "質問", "positive": "文書"', r"invalid JSON"),
        ('["質問", "文書"]', r"expected a JSON object, got list"),
    ],
)
def test_bad_jsonl_row_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    good = json.dumps({"query": "富士山の高さは？", "positive": FUJI}, ensure_ascii=False)
    path = _write(tmp_path / "bad.jsonl", f"{good}\n\n{line}\n{good}\n")
    with pytest.raises(TrainingDataError, match=rf"bad\.jsonl:3: .*{message}"):
        load_training_data(path)


def test_skip_bad_rows_reports_the_count(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = [json.dumps({"query": f"質問{i}", "positive": f"文書{i}"}, ensure_ascii=False) for i in range(3)]
    path = _write(tmp_path / "mixed.jsonl", "\n".join([good[0], "{oops", good[1], '{"query": "q"}', good[2]]) + "\n")
    with caplog.at_level(logging.WARNING, logger="jp_rerank.training"):
        ts = load_training_data(path, skip_bad_rows=True)
    assert [q.query for q in ts.queries] == ["質問0", "質問1", "質問2"]
    assert ts.skipped == 2
    assert "skipped 2 bad rows" in caplog.text
    assert "mixed.jsonl:2" in caplog.text  # the first bad row is named


def test_rows_blank_once_normalised_are_counted_by_skip_bad_rows(tmp_path: Path) -> None:
    rows = [
        {"query": "富士山の高さは？", "positive": FUJI},
        {"query": "\u200b", "positive": FUJI},
        {"query": "東京は？", "positive": "\u2060\u200b"},
    ]
    ts = load_training_data(_jsonl(tmp_path / "d.jsonl", rows), skip_bad_rows=True)
    assert [q.query for q in ts.queries] == ["富士山の高さは？"]
    assert ts.skipped == 2


def test_a_passage_over_the_character_cap_is_refused_at_its_line(tmp_path: Path) -> None:
    huge = "あ" * 1_000_001
    path = _jsonl(tmp_path / "huge.jsonl", [{"query": "質問", "positive": FUJI}, {"query": "質問2", "positive": huge}])
    with pytest.raises(TrainingDataError, match=r"huge\.jsonl:2: 'positive' has 1,000,001 characters, over the"):
        load_training_data(path)


_GOOD = json.dumps({"query": "富士山の高さは？", "positive": FUJI}, ensure_ascii=False).encode()
_LAST = json.dumps({"query": "湖は？", "positive": BIWA}, ensure_ascii=False).encode()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"query": "質問'.encode() + b'\xff", "positive": "p"}', r"not valid UTF-8 \(byte 0xff at column 14\)"),
        (b'{"query": "q", "positive": "p", "qid": 1' + b"0" * 5000 + b"}", r"invalid JSON \(Exceeds the limit"),
        (b"[" * 100_000 + b"]" * 100_000, r"invalid JSON \(nested too deeply\)"),
        (b'{"query": "q", "positive": "p", "qid": NaN}', r"invalid JSON \(NaN is not valid JSON"),
        (b'{"query": "q\\ud800", "positive": "p"}', r"'query' holds a lone surrogate U\+D800"),
        (b'{"query": "q", "positive": "' + "あ".encode() * 1_000_001 + b'"}', r"'positive' has 1,000,001 characters"),
    ],
    ids=["bad-utf8-byte", "huge-int", "deep-nesting", "nan", "lone-surrogate", "over-char-cap"],
)
def test_undecodable_lines_name_file_and_line_and_are_skippable(tmp_path: Path, line: bytes, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\r\n".join([_GOOD, line, _LAST]) + b"\r\n")
    with pytest.raises(TrainingDataError, match=rf"bad\.jsonl:2: {message}"):
        load_training_data(path)
    ts = load_training_data(path, skip_bad_rows=True)
    assert [q.query for q in ts.queries] == ["富士山の高さは？", "湖は？"]  # the rest of the file is still read
    assert ts.skipped == 1


def test_bad_utf8_byte_in_csv_and_qrels_is_one_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(f"q,{FUJI},1\n".encode() + b'q2,"two\nlines \xff",1\n' + f"q3,{BIWA},1\n".encode())
    with pytest.raises(TrainingDataError, match=r"bad\.csv:3: not valid UTF-8 \(byte 0xff at column 7\)"):
        load_training_data(path)
    ts = load_training_data(path, skip_bad_rows=True)
    assert [q.query for q in ts.queries] == ["q", "q3"]  # the quoted two-line record holding the byte is left out
    assert ts.skipped == 1
    root = _beir(tmp_path / "beir", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    (root / "qrels" / "train.tsv").write_bytes(b"q1\td1\t1\nq2\td2\xfe\t1\n")
    with pytest.raises(TrainingDataError, match=r"train\.tsv:2: not valid UTF-8"):
        load_training_data(root)
    assert load_training_data(root, skip_bad_rows=True).skipped == 1


def test_lone_cr_line_ends_still_split_lines(tmp_path: Path) -> None:
    jsonl = tmp_path / "mac.jsonl"
    jsonl.write_bytes(b"\r".join([_GOOD, b"{oops", _LAST]) + b"\r")
    with pytest.raises(TrainingDataError, match=r"mac\.jsonl:2: invalid JSON"):
        load_training_data(jsonl)
    csv_file = _write(tmp_path / "mac.csv", f"q,{FUJI},1\nq,{BIWA},0\n", newline="\r")
    assert load_training_data(csv_file).queries[0].negatives == (BIWA,)


def test_file_with_only_bad_rows_is_an_error_even_when_skipping(tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match="no training question"):
        load_training_data(_write(tmp_path / "x.jsonl", "{oops\n"), skip_bad_rows=True)


def test_missing_file_and_wrong_kind(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="training data not found"):
        load_training_data(tmp_path / "nope.jsonl")
    with pytest.raises(TrainingDataError, match="is a folder"):
        load_training_data(tmp_path, data_format="jsonl")


# ------------------------------------------------------------------------------------------ CSV


def test_csv_with_header_in_any_order_and_headerless_tsv(tmp_path: Path) -> None:
    with_header = _write(
        tmp_path / "pairs.csv",
        f'label,query,passage\n1,富士山の高さは？,"{FUJI}"\n0,富士山の高さは？,{BIWA}\n2,湖は？,{BIWA}\n',
        bom=True,
    )
    ts = load_training_data(with_header)
    assert ts.format == "csv"
    assert [(q.query, q.positives, q.negatives) for q in ts.queries] == [
        ("富士山の高さは？", (FUJI,), (BIWA,)),
        ("湖は？", (BIWA,), ()),
    ]
    headerless = _write(tmp_path / "pairs.tsv", f"富士山の高さは？\t{FUJI}\t1\n富士山の高さは？\t{TOKYO}\t0\n")
    assert load_training_data(headerless).queries[0].negatives == (TOKYO,)


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("q,p,1\nq,p2,yes\n", 2, "label 'yes' is not a number"),
        ("q,p,1\nq,p2\n", 2, "expected 3 columns"),
        ("q,p,1\nq,p2,-1\n", 2, "finite number >= 0"),
        ("q,p,1\nq,p,0\n", 2, "opposite label at"),
        ("q2,p,0\nq,p,1\n", 1, "has no row with label > 0"),
    ],
)
def test_bad_csv_row_names_file_and_line(tmp_path: Path, body: str, line: int, message: str) -> None:
    path = _write(tmp_path / "bad.csv", body)
    with pytest.raises(TrainingDataError, match=rf"bad\.csv:{line}: .*{message}"):
        load_training_data(path)


def test_csv_question_without_positive_is_skipped_with_its_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.csv", "q2,p,0\nq2,p3,0\nq,p,1\n")
    ts = load_training_data(path, skip_bad_rows=True)
    assert [q.query for q in ts.queries] == ["q"]
    assert ts.skipped == 2


# ------------------------------------------------------------------------------------------ BEIR


def _beir(root: Path, qrels: str, *, split: str = "train") -> Path:
    root.mkdir()
    _jsonl(
        root / "corpus.jsonl",
        [
            {"_id": "d1", "title": "富士山", "text": FUJI},
            {"_id": "d2", "title": "琵琶湖", "text": BIWA},
            {"_id": "d3", "title": "", "text": TOKYO},
        ],
        bom=True,
    )
    _jsonl(root / "queries.jsonl", [{"_id": "q1", "text": "富士山の高さは？"}, {"_id": "q2", "text": "湖は？"}])
    (root / "qrels").mkdir()
    _write(root / "qrels" / f"{split}.tsv", qrels)
    return root


def test_beir_folder_with_titles_negative_grades_and_split_fallback(tmp_path: Path) -> None:
    root = _beir(tmp_path / "beir", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td3\t0\nq2\td2\t1\n", split="test")
    ts = load_training_data(root, split="train")  # only test.tsv exists: it is used
    assert ts.format == "beir"
    assert ts.queries[0].qid == "q1"
    assert ts.queries[0].positives == (f"富士山 {FUJI}",)
    assert ts.queries[0].negatives == (TOKYO,)
    assert ts.corpus["d2"] == f"琵琶湖 {BIWA}"
    assert load_training_data(root, with_title=False).queries[1].positives == (BIWA,)


def test_beir_unknown_ids_name_the_line_and_missing_files_are_named(tmp_path: Path) -> None:
    root = _beir(tmp_path / "beir", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td9\t1\n")
    with pytest.raises(TrainingDataError, match=r"train\.tsv:3: corpus id 'd9' is not in corpus\.jsonl"):
        load_training_data(root)
    assert len(load_training_data(root, skip_bad_rows=True).queries) == 1
    (root / "qrels" / "train.tsv").rename(root / "qrels" / "a.tsv")
    _write(root / "qrels" / "b.tsv", "q1\td1\t1\n")
    with pytest.raises(TrainingDataError, match=r"qrels/train\.tsv not found \(available splits: a, b\)"):
        load_training_data(root)
    (root / "corpus.jsonl").unlink()
    with pytest.raises(TrainingDataError, match=r"corpus\.jsonl not found"):
        load_training_data(root)


def test_extra_corpus_joins_the_pool(tmp_path: Path) -> None:
    data = _jsonl(tmp_path / "d.jsonl", [{"query": "富士山の高さは？", "positive": FUJI}])
    corpus = _jsonl(tmp_path / "c.jsonl", [{"id": "x1", "text": BIWA}, {"text": TOKYO, "title": "タワー"}])
    assert load_corpus(corpus) == {"x1": BIWA, "c1": f"タワー {TOKYO}"}
    ts = load_training_data(data, corpus=corpus)
    assert set(ts.corpus.values()) == {FUJI, BIWA, f"タワー {TOKYO}"}


# ------------------------------------------------------------------------------------------ split / save


def test_heldout_split_keeps_questions_of_one_passage_together_and_ignores_order() -> None:
    pairs = [(f"質問{i}-{j}", f"文書{i}") for i in range(20) for j in range(3)]  # three questions per passage
    ts = TrainingSet.from_pairs(pairs)
    train, held = split_heldout(ts, 9, seed=1)
    assert 0 < len(held.queries) <= 9
    assert len(held.queries) % 3 == 0
    held_passages = {p for q in held.queries for p in q.positives}
    assert not held_passages & {p for q in train.queries for p in q.positives}
    reordered = TrainingSet.from_pairs(list(reversed(pairs)))
    assert {q.query for q in split_heldout(reordered, 9, seed=1)[1].queries} == {q.query for q in held.queries}
    assert {q.query for q in split_heldout(ts, 9, seed=2)[1].queries} != {q.query for q in held.queries}
    assert split_heldout(TrainingSet.from_pairs(pairs[:9]), 5)[1].queries == ()  # too few to hold out


def test_saving_what_mining_returns_names_the_set_to_pass(tmp_path: Path) -> None:
    mined = mine_hard_negatives(_pool_set(), num_negatives=1, random_negatives=0, relative_margin=None)
    with pytest.raises(TypeError, match=r"mine_hard_negatives returns \(set, stats\)"):
        save_jsonl(mined, tmp_path / "mined.jsonl")  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_saved_set_reads_back_identically(tmp_path: Path) -> None:
    rows = [{"query": "富士山の高さは？", "positives": [FUJI], "negatives": [BIWA, TOKYO], "qid": "a"}]
    ts = load_training_data(_jsonl(tmp_path / "d.jsonl", rows))
    again = load_training_data(save_jsonl(ts, tmp_path / "out" / "mined.jsonl"))
    assert [(q.qid, q.query, q.positives, q.negatives) for q in again.queries] == [
        (q.qid, q.query, q.positives, q.negatives) for q in ts.queries
    ]


# ------------------------------------------------------------------------------------------ mining


def _pool_set() -> TrainingSet:
    corpus = [
        "富士山の麓には富士五湖と呼ばれる湖がある。",  # lexically close to the question: a hard negative
        "富士山は静岡県と山梨県にまたがる日本最高峰の山で、標高は3776メートルです！",  # near-duplicate of the positive
        "琵琶湖は日本一大きい湖。",
        "東京タワーの高さは333m。",
        "京都には多くの寺がある。",
        "大阪はたこ焼きで有名。",
    ]
    return TrainingSet.from_pairs([("富士山の標高は何メートル？", FUJI)], corpus=corpus)


def test_mining_skips_positives_and_their_near_duplicates() -> None:
    mined, stats = mine_hard_negatives(_pool_set(), num_negatives=2, random_negatives=1, relative_margin=None)
    negatives = mined.queries[0].negatives
    assert len(negatives) == 3
    assert FUJI not in negatives
    assert not any("3776メートルです！" in n for n in negatives)
    assert negatives[0] == "富士山の麓には富士五湖と呼ばれる湖がある。"
    assert stats.dropped_duplicates == 1
    assert stats.hard_negatives + stats.random_negatives == 3
    again, _ = mine_hard_negatives(_pool_set(), num_negatives=2, random_negatives=1, relative_margin=None)
    assert again.queries[0].negatives == negatives  # seeded


def test_margin_drops_candidates_scoring_like_the_positive() -> None:
    ts = TrainingSet.from_pairs(
        [("富士山の標高", "富士山の標高は高い。")],
        corpus=["富士山の標高は高いです。山です。", "富士山の麓。", "琵琶湖。", "京都の寺。"],
    )
    loose, _ = mine_hard_negatives(ts, num_negatives=1, random_negatives=0, relative_margin=None, max_overlap=1.0)
    strict, stats = mine_hard_negatives(ts, num_negatives=1, random_negatives=0, relative_margin=0.3, max_overlap=1.0)
    assert loose.queries[0].negatives == ("富士山の標高は高いです。山です。",)
    assert strict.queries[0].negatives == ("富士山の麓。",)
    assert stats.dropped_margin >= 1


def test_questions_with_enough_negatives_are_not_mined() -> None:
    ts = TrainingSet.from_pairs([("質問", "文書")], corpus=["他の文書"])
    given = ts.with_queries([ts.queries[0].__class__("質問", ("文書",), ("用意した負例",), qid="q")])
    mined, stats = mine_hard_negatives(given, num_negatives=1, random_negatives=0)
    assert mined.queries[0].negatives == ("用意した負例",)
    assert stats.queries_mined == 0


@pytest.mark.parametrize("first_stage", ["dense", "hybrid"])
def test_dense_and_hybrid_mining_with_a_real_embedder(dense_path: Path, first_stage: str) -> None:
    from jp_rerank import Embedder

    embedder = Embedder(dense_path, device="cpu")
    ts = _pool_set()
    mined, stats = mine_hard_negatives(
        ts, first_stage=first_stage, embedder=embedder, num_negatives=2, random_negatives=0, relative_margin=None
    )
    negatives = mined.queries[0].negatives
    assert len(negatives) == 2
    assert len(set(negatives)) == 2
    assert set(negatives) <= set(ts.corpus.values()) - {FUJI}
    assert not any("3776メートルです！" in n for n in negatives)  # the near-duplicate is never a negative
    assert stats.method == first_stage
    assert stats.hard_negatives == 2
    assert stats.settings["embedder"] == embedder.model_id


def test_dense_first_stage_needs_an_embedder() -> None:
    with pytest.raises(ValueError, match="needs an embedder"):
        mine_hard_negatives(_pool_set(), first_stage="dense")


def test_importing_training_does_not_import_torch() -> None:
    code = (
        "import sys, jp_rerank.training, jp_rerank.commands.train\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers', 'datasets', 'accelerate') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
