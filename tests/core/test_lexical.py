from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from jp_rerank.data import load_demo_corpus, load_demo_queries
from jp_rerank.errors import IndexMismatchError
from jp_rerank.extras import is_available
from jp_rerank.hits import SearchHit
from jp_rerank.index import IndexCorruptedError
from jp_rerank.lexical import (
    BM25Index,
    CharNgramTokenizer,
    MeCabTokenizer,
    SudachiTokenizer,
    Tokenizer,
    bm25_scoring,
    get_tokenizer,
    prepare_text,
)
from jp_rerank.snapshots import read_snapshot, write_snapshot

HAS_SUDACHI = is_available("sudachipy") and is_available("sudachidict_core")
needs_sudachi = pytest.mark.skipif(not HAS_SUDACHI, reason="sudachipy/sudachidict-core not installed")

BUILTIN_SPECS = ["mecab", "mecab-surface+func", "mecab-base", "char2", "char1-2"]
ALL_SPECS = [*BUILTIN_SPECS, pytest.param("sudachi", marks=needs_sudachi)]


@pytest.fixture(scope="module")
def demo() -> tuple[list[str], list[str], list[dict[str, object]]]:
    docs = load_demo_corpus()
    texts = [f"{d['title']} {d['text']}" for d in docs]
    return texts, [d["id"] for d in docs], load_demo_queries()


@pytest.fixture(scope="module")
def demo_index(demo: tuple[list[str], list[str], list[dict[str, object]]]) -> BM25Index:
    texts, ids, _ = demo
    return BM25Index().index(texts, ids=ids)


# ---------------------------------------------------------------------------------------------- tokenizers


def test_mecab_splits_into_unidic_words() -> None:
    text = "東京都に住んでいます"
    assert MeCabTokenizer(form="surface", drop_function_words=False)(text) == [
        "東京",
        "都",
        "に",
        "住ん",
        "で",
        "い",
        "ます",
    ]
    assert MeCabTokenizer(form="base")(text) == ["東京", "都", "住む", "いる"]
    # Lemmas (UniDic 語彙素) merge spelling variants.
    lemma = MeCabTokenizer()
    assert lemma(text) == ["トウキョウ", "都", "住む", "居る"]
    assert lemma("子ども") == lemma("子供")
    assert lemma("ウィルス") == lemma("ウイルス")


def test_mecab_drops_punctuation_and_keeps_letters_tagged_as_symbols() -> None:
    tokens = MeCabTokenizer(form="surface")("「α線」とは、何？ 😀")
    assert tokens == ["α", "線", "何"]


def test_char_ngrams() -> None:
    assert CharNgramTokenizer(2)("東京都") == ["東京", "京都"]
    assert CharNgramTokenizer(ngram_range=(1, 2))("東京") == ["東", "京", "東京"]
    # Punctuation, symbols and spaces split runs; a run shorter than n is kept whole.
    assert CharNgramTokenizer(2)("山、川。海😀空 ab") == ["山", "川", "海", "空", "ab"]
    assert CharNgramTokenizer(3).name == "char3"
    with pytest.raises(ValueError, match="1 <= low <= high"):
        CharNgramTokenizer(ngram_range=(2, 1))
    with pytest.raises(ValueError, match="1 <= low <= high"):
        CharNgramTokenizer(0)


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_nfkc_and_lowercase(spec: str) -> None:
    tok = get_tokenizer(spec)
    assert tok("ﾃｽﾄ") == tok("テスト")
    assert tok("ＡＢＣ") == tok("abc")
    assert tok("テスト") != []


def test_normalize_off_keeps_width() -> None:
    assert CharNgramTokenizer(2, normalize_text=False)("ﾃｽﾄ") == ["ﾃｽ", "ｽﾄ"]
    assert prepare_text("ﾃｽﾄ　ＡＢＣ") == "テスト abc"
    assert prepare_text("Ａ\x00b", normalize_text=False) == "Ａ b"


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_empty_and_odd_unicode_never_raise(spec: str) -> None:
    tok = get_tokenizer(spec)
    raw = get_tokenizer(spec, normalize_text=False)
    for t in (tok, raw):
        assert t("") == []
        assert t(" \u3000\t\n") == []
        assert t("😀🎉、。！") == []
        # NUL would end MeCab's C string: text after it must still be tokenised.
        after_nul = t("東京\x00大阪")
        assert after_nul == t("東京 大阪")
        assert after_nul  # not empty
        # Lone surrogates cannot be encoded to UTF-8; they act as whitespace.
        assert t("東京\ud800大阪") == after_nul
        assert all(isinstance(x, str) and x for x in t("\x07\x1b[0m東京\u200b"))
    with pytest.raises(TypeError, match="must be a str"):
        tok(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a str"):
        tok(b"bytes")  # type: ignore[arg-type]


def test_mecab_tokenizer_is_thread_safe(demo: tuple[list[str], list[str], list[dict[str, object]]]) -> None:
    texts = demo[0]
    tokenizer = MeCabTokenizer()
    expected = [tokenizer(t) for t in texts]
    results: list[list[list[str]]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work() -> None:
        try:
            barrier.wait()
            results.append([tokenizer(t) for t in texts * 3])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 8
    assert all(r == expected * 3 for r in results)


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("mecab", "mecab"),
        ("MeCab-Lemma", "mecab"),
        ("mecab-surface", "mecab-surface"),
        ("mecab-surface+func", "mecab-surface+func"),
        ("mecab-base+func", "mecab-base+func"),
        ("mecab+func", "mecab-lemma+func"),
        ("sudachi", "sudachi-c"),
        ("sudachi-a-surface+func", "sudachi-a-surface+func"),
        ("sudachi-b-normalized", "sudachi-b"),
        ("char2", "char2"),
        ("char1-2", "char1-2"),
        ("char2-2", "char2"),
    ],
)
def test_get_tokenizer_names_round_trip(spec: str, name: str) -> None:
    tok = get_tokenizer(spec)
    assert tok.name == name
    assert get_tokenizer(tok.name).name == name
    assert isinstance(tok, Tokenizer)


def test_get_tokenizer_errors_and_passthrough() -> None:
    with pytest.raises(ValueError, match="unknown tokenizer spec 'bpe'"):
        get_tokenizer("bpe")
    with pytest.raises(TypeError, match="spec string or a callable"):
        get_tokenizer(42)  # type: ignore[arg-type]
    tok = CharNgramTokenizer(2)
    assert get_tokenizer(tok) is tok
    with pytest.raises(ValueError, match="form must be"):
        MeCabTokenizer(form="reading")  # type: ignore[arg-type]


@needs_sudachi
def test_sudachi_modes_and_long_text() -> None:
    assert SudachiTokenizer("A")("東京都庁") == ["東京", "都庁"]
    assert SudachiTokenizer("C")("東京都庁") == ["東京都庁"]
    assert SudachiTokenizer()("ｳｨﾙｽ") == ["ウイルス"]
    # Longer than Sudachi's 49,149-byte input limit.
    long_text = "東京都に住んでいます。" * 3000
    tokens = SudachiTokenizer()(long_text)
    assert tokens == ["東京都", "住む", "居る"] * 3000


# ---------------------------------------------------------------------------------------------- BM25


def reference_bm25(corpus: Sequence[list[str]], query: list[str], *, k1: float, b: float, method: str) -> np.ndarray:
    """Textbook BM25 computed term by term in float64 (Lucene >= 8 form, as in bm25s)."""
    n = len(corpus)
    avgdl = sum(len(doc) for doc in corpus) / n
    df = Counter(token for doc in corpus for token in set(doc))
    scores = np.zeros(n)
    for token in query:
        if token not in df:
            continue
        if method == "lucene":
            idf = math.log(1 + (n - df[token] + 0.5) / (df[token] + 0.5))
        elif method == "robertson":
            idf = max(0.0, math.log((n - df[token] + 0.5) / (df[token] + 0.5)))
        else:  # atire
            idf = math.log(n / df[token])
        for i, doc in enumerate(corpus):
            tf = doc.count(token)
            if tf:
                norm = k1 * (1 - b + b * len(doc) / avgdl)
                tfc = tf * (k1 + 1) / (tf + norm) if method == "atire" else tf / (tf + norm)
                scores[i] += idf * tfc
    return scores


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire"])
@pytest.mark.parametrize(("k1", "b"), [(0.9, 0.4), (1.5, 0.75), (0.0, 0.0)])
def test_scores_match_reference_bm25(
    demo: tuple[list[str], list[str], list[dict[str, object]]], method: str, k1: float, b: float
) -> None:
    texts, _, queries = demo
    # Include documents without any token: they count in N and in the average length.
    texts = [*texts, "", "。！？"]
    ids = [f"d{i:03d}" for i in range(len(texts))]  # string order = position order, for the tie-break check
    index = BM25Index("mecab", k1=k1, b=b, method=method).index(texts, ids)  # type: ignore[arg-type]
    corpus = [index.tokenize(t) for t in texts]
    assert corpus[-1] == corpus[-2] == []
    all_docs = list(range(len(texts)))
    for query in [str(q["text"]) for q in queries] + ["富士山 富士山 標高"]:
        expected = reference_bm25(corpus, index.tokenize(query), k1=k1, b=b, method=method)
        np.testing.assert_allclose(index.score(query, all_docs), expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(index.score(query, ids), expected, rtol=1e-5, atol=1e-5)  # by id too
        hits = index.search(query, k=len(texts))
        positions = [ids.index(h.id) for h in hits]
        assert positions == [i for i in np.argsort(-expected, kind="stable") if expected[i] > 0]
        np.testing.assert_allclose([h.score for h in hits], expected[positions], rtol=1e-5)
        assert [h.text for h in hits] == [texts[i] for i in positions]


def test_right_document_first(
    demo: tuple[list[str], list[str], list[dict[str, object]]], demo_index: BM25Index
) -> None:
    _, _, queries = demo
    results = demo_index.search_many([str(q["text"]) for q in queries], k=10)
    top1 = [bool(hits) and hits[0].id in q["relevant"] for hits, q in zip(results, queries, strict=True)]  # type: ignore[operator]
    assert sum(top1) >= len(queries) - 2
    index = BM25Index().index(
        [
            "東京は日本の首都で、人口が最も多い都市です。",
            "大阪はたこ焼きとお好み焼きで有名です。",
            "札幌は雪まつりで知られる。",
        ],
        ids=["tokyo", "osaka", "sapporo"],
    )
    assert index.search("日本の首都はどこですか？")[0].id == "tokyo"
    assert index.search("たこ焼きが有名な街")[0].id == "osaka"
    assert [h.id for h in index.search("雪まつり")] == ["sapporo"]


def test_hits_are_sorted_typed_and_tie_broken_by_id() -> None:
    texts = ["りんごとみかん", "ぶどう", "りんごとみかん", "りんご", "りんごとみかん"]
    index = BM25Index("char2").index(texts, ["e", "b", "c", "d", "a"], [{"n": i} for i in range(5)])
    hits = index.search("りんご", k=10)
    assert all(isinstance(h, SearchHit) for h in hits)
    assert all(type(h.score) is float for h in hits)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    # Identical documents tie: ascending id (the engine's one rule). Only matching documents are returned.
    assert [h.id for h in hits] == ["d", "a", "c", "e"]
    assert [h.id for h in index.search("りんご", k=2)] == ["d", "a"]  # the cut-off keeps the tie-break exact
    assert [(h.text, h.metadata) for h in hits[:2]] == [("りんご", {"n": 3}), ("りんごとみかん", {"n": 4})]
    hits[0].metadata["n"] = 99
    assert index.search("りんご", k=1)[0].metadata == {"n": 3}  # hits hold copies
    with pytest.raises(AttributeError):
        hits[0].score = 1.0  # type: ignore[misc]


def test_query_edge_cases(demo_index: BM25Index) -> None:
    assert demo_index.search("") == []
    assert demo_index.search("。、！") == []
    assert demo_index.search("ｘｙｚｚｙ") == []  # no token known to the index
    assert len(demo_index.search("日本", k=10_000)) <= len(demo_index)
    with pytest.raises(ValueError, match="k must be positive"):
        demo_index.search("日本", k=0)
    with pytest.raises(ValueError, match="k must be positive"):
        demo_index.search("日本", k=-3)
    with pytest.raises(TypeError, match="k must be an int"):
        demo_index.search("日本", k=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="query must be a str"):
        demo_index.search(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"queries\[1\] must be a str"):
        demo_index.search_many(["日本", 3])  # type: ignore[list-item]
    assert demo_index.search_many([]) == []


def test_empty_index_and_documents_without_tokens() -> None:
    assert BM25Index().search("東京") == []
    assert len(BM25Index()) == 0
    only_empty = BM25Index().index(["", "！？", "😀"])
    assert len(only_empty) == 3
    assert only_empty.vocabulary_size == 0
    assert only_empty.search("東京") == []
    assert only_empty.score("東京", [0, 2]) == [0.0, 0.0]
    mixed = BM25Index().index(["", "東京の天気", "！？"])
    assert [h.id for h in mixed.search("東京", k=5)] == ["1"]


def test_k_larger_than_index_returns_all_matching() -> None:
    index = BM25Index("char2").index(["東京タワー", "東京駅", "大阪城"])
    assert sorted(h.id for h in index.search("東京", k=100)) == ["0", "1"]


def test_bad_documents_and_ids_leave_index_unchanged() -> None:
    index = BM25Index("char2").index(["東京", "大阪"], ids=["a", "b"])
    before = index.search_many(["東京", "大阪"])
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got NoneType"):
        index.add(["京都", None])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="texts must be a sequence of str, not a single str"):
        index.add("京都")
    with pytest.raises(ValueError, match="duplicate document id 'a'"):
        index.add(["京都"], ids=["a"])
    with pytest.raises(ValueError, match="ids contains 'c' more than once"):
        index.add(["京都", "奈良"], ids=["c", "c"])
    with pytest.raises(ValueError, match="got 1 texts but 2 metadatas"):
        index.add(["京都"], metadatas=[{}, {}])
    with pytest.raises(TypeError, match="must be str, int, float or bool"):
        index.add(["京都"], metadatas=[{"tags": ["a"]}])
    with pytest.raises(ValueError, match="got 2 texts but 1 ids"):
        index.add(["京都", "奈良"], ids=["c"])
    with pytest.raises(TypeError, match=r"ids\[0\] must be a str"):
        index.add(["京都"], ids=[7])  # type: ignore[list-item]
    assert index.ids == ("a", "b")
    assert index.search_many(["東京", "大阪"]) == before


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError, match="k1 must be in"):
        BM25Index(k1=-0.1)
    with pytest.raises(ValueError, match="b must be in"):
        BM25Index(b=1.5)
    with pytest.raises(ValueError, match="method must be"):
        BM25Index(method="bm25l")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown tokenizer spec"):
        BM25Index("whitespace")

    class Broken:
        name = "broken"

        def __call__(self, text: str) -> list[str]:
            return text  # type: ignore[return-value]

    with pytest.raises(TypeError, match="tokenizer 'broken' must return a list of str"):
        BM25Index(Broken()).index(["abc"])


def test_add_equals_building_at_once(demo: tuple[list[str], list[str], list[dict[str, object]]]) -> None:
    texts, ids, queries = demo
    whole = BM25Index().index(texts, ids=ids)
    parts = BM25Index().index(texts[:20], ids=ids[:20])
    assert parts.add(texts[20:], ids=ids[20:]) == ids[20:]
    qs = [str(q["text"]) for q in queries]
    assert parts.ids == whole.ids
    assert parts.search_many(qs) == whole.search_many(qs)
    default_ids = BM25Index().index(["東京"])
    assert default_ids.add(["大阪", "京都"]) == ["1", "2"]
    assert default_ids.ids == ("0", "1", "2")
    # index() replaces the contents.
    assert BM25Index().index(["東京"]).index(["大阪"]).ids == ("0",)


def test_search_many_blocks_match_single_searches(
    demo: tuple[list[str], list[str], list[dict[str, object]]],
    demo_index: BM25Index,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    qs = [str(q["text"]) for q in demo[2]] + ["", "富士山"]
    expected = [demo_index.search(q, k=7) for q in qs]
    monkeypatch.setattr(bm25_scoring, "_BLOCK_POSTINGS", 5)  # forces many small blocks
    assert demo_index.search_many(qs, k=7) == expected


def test_score_given_candidates(demo_index: BM25Index) -> None:
    hits = demo_index.search("富士山の高さ", k=3)
    scores = demo_index.score("富士山の高さ", [h.id for h in reversed(hits)] + [hits[0].id])
    assert scores == pytest.approx([h.score for h in reversed(hits)] + [hits[0].score])
    assert all(type(s) is float for s in scores)
    position = demo_index.ids.index(hits[0].id)
    assert demo_index.score("富士山の高さ", [position]) == pytest.approx([hits[0].score])  # positions work too
    assert demo_index.score("富士山", []) == []
    assert demo_index.score("ｘｙｚｚｙ", [0, 1]) == [0.0, 0.0]
    with pytest.raises(IndexError, match=r"documents\[1\] = 999 is outside"):
        demo_index.score("富士山", [0, 999])
    with pytest.raises(IndexError, match="outside"):
        demo_index.score("富士山", [-1])
    with pytest.raises(TypeError, match=r"documents\[0\] must be a str id or an int"):
        demo_index.score("富士山", [True])
    with pytest.raises(KeyError, match="'nope' is not an id in the index"):
        demo_index.score("富士山", ["nope"])


def test_save_load_round_trip(
    demo: tuple[list[str], list[str], list[dict[str, object]]], demo_index: BM25Index, tmp_path: Path
) -> None:
    texts, ids, queries = demo
    qs = [str(q["text"]) for q in queries]
    target = tmp_path / "bm25"
    demo_index.save(target)
    snapshot, manifest = read_snapshot(target)  # the atomic, checksummed layout of the vector indexes
    assert sorted(p.name for p in snapshot.iterdir()) == ["arrays.npz", "docs.jsonl", "manifest.json", "vocab.json"]
    assert manifest["tokenizer"] == "mecab"
    assert manifest["num_docs"] == len(texts)
    loaded = BM25Index.load(target)
    assert loaded.ids == demo_index.ids
    assert (loaded.k1, loaded.b, loaded.method, loaded.normalize_text) == (0.9, 0.4, "lucene", True)
    assert loaded.texts == demo_index.texts
    assert loaded.search_many(qs) == demo_index.search_many(qs)
    # Adding after load gives the same index as building with everything.
    loaded.add(["富士山の山頂には神社があります。"], ids=["extra"])
    fresh = BM25Index().index([*texts, "富士山の山頂には神社があります。"], ids=[*ids, "extra"])
    assert loaded.search_many(qs) == fresh.search_many(qs)
    # Saving again over an existing index replaces it.
    loaded.save(target)
    assert len(BM25Index.load(target)) == len(texts) + 1


def test_save_load_empty_and_errors(tmp_path: Path) -> None:
    BM25Index("char2", normalize_text=False).save(tmp_path / "empty")
    empty = BM25Index.load(tmp_path / "empty")
    assert len(empty) == 0
    assert empty.normalize_text is False
    assert empty.tokenizer.name == "char2"
    assert empty.search("東京") == []

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(FileExistsError, match="not a saved BM25 index"):
        BM25Index().save(other)
    assert (other / "notes.txt").read_text(encoding="utf-8") == "keep me"

    with pytest.raises(FileNotFoundError, match="not a saved jp-rerank index"):
        BM25Index.load(other)

    with pytest.raises(IndexMismatchError, match="built with tokenizer 'char2', not 'mecab'"):
        BM25Index.load(tmp_path / "empty", tokenizer="mecab")

    write_snapshot(tmp_path / "future", {"backend": "bm25", "bm25_format_version": 99}, lambda folder: None)
    with pytest.raises(IndexMismatchError, match="version 99"):
        BM25Index.load(tmp_path / "future")


def test_save_load_custom_tokenizer(tmp_path: Path) -> None:
    class Whitespace:
        name = "whitespace"

        def __call__(self, text: str) -> list[str]:
            return text.split()

    index = BM25Index(Whitespace()).index(["Tokyo Osaka", "Kyoto Nara", "Tokyo Tower"])
    # normalize_text=True lower-cases before the custom tokenizer.
    assert [h.id for h in index.search("TOKYO")] == ["0", "2"]
    index.save(tmp_path / "ws")
    with pytest.raises(ValueError, match="custom tokenizer 'whitespace'; pass it as tokenizer="):
        BM25Index.load(tmp_path / "ws")
    loaded = BM25Index.load(tmp_path / "ws", tokenizer=Whitespace())
    assert loaded.search("tokyo") == index.search("tokyo")


def test_load_rejects_inconsistent_files(demo_index: BM25Index, tmp_path: Path) -> None:
    demo_index.save(tmp_path / "idx")
    snapshot, _ = read_snapshot(tmp_path / "idx")
    (snapshot / "docs.jsonl").write_text(json.dumps({"id": "only-one", "text": "", "metadata": {}}), encoding="utf-8")
    with pytest.raises(IndexCorruptedError, match=r"docs\.jsonl"):  # caught by its size and checksum
        BM25Index.load(tmp_path / "idx")
    # Files that match their checksums but not each other are caught too.
    demo_index.save(tmp_path / "idx")
    snapshot, manifest = read_snapshot(tmp_path / "idx")
    payload = {name: (snapshot / name).read_bytes() for name in manifest["files"]}
    payload["docs.jsonl"] = (json.dumps({"id": "only-one", "text": "", "metadata": {}}) + "\n").encode()
    fields = {k: v for k, v in manifest.items() if k not in ("format", "format_version", "files")}

    def write_payload(folder: Path) -> None:
        for name, data in payload.items():
            (folder / name).write_bytes(data)

    write_snapshot(tmp_path / "idx", fields, write_payload)
    with pytest.raises(ValueError, match="inconsistent"):
        BM25Index.load(tmp_path / "idx")


def test_concurrent_searches_agree(demo: tuple[list[str], list[str], list[dict[str, object]]]) -> None:
    texts, ids, queries = demo
    index = BM25Index().index(texts, ids=ids)
    qs = [str(q["text"]) for q in queries]
    expected = index.search_many(qs)
    outputs: list[list[list[SearchHit]]] = []

    def work() -> None:
        outputs.append([index.search(q) for q in qs])

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outputs) == 6
    assert all(out == expected for out in outputs)


def test_import_is_lazy() -> None:
    code = (
        "import sys, jp_rerank.lexical as m; "
        "heavy = [n for n in ('bm25s', 'fugashi', 'sudachipy', 'scipy') if n in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_query_length_is_capped_after_normalisation_and_documents_are_not() -> None:
    index = BM25Index("char2", max_chars=100).index(["東京の天気" * 50])  # a 250-character document is fine
    assert index.search("東京")[0].id == "0"
    with pytest.raises(ValueError, match="over the cap max_chars=100"):
        index.search("東" * 101)
    with pytest.raises(ValueError, match="max_chars=100"):  # NFKC expands U+FDFA 18x: the cap holds after it
        index.search("\ufdfa" * 10)
    assert BM25Index("char2", max_chars=None).index(["東京"]).search("東" * 200_000) == []


def test_a_bm25_index_pickles_and_deep_copies() -> None:
    import copy
    import pickle

    index = BM25Index("char2").index(["東京の天気", "大阪の城"], ["tokyo", "osaka"], [{"n": 1}, {"n": 2}])
    for clone in (pickle.loads(pickle.dumps(index)), copy.deepcopy(index)):
        assert clone.search_many(["東京", "大阪"]) == index.search_many(["東京", "大阪"])
        clone.add(["京都の寺"], ["kyoto"])  # its own write lock
        assert len(index) == 2


def test_index_from_tokens_computed_elsewhere_equals_tokenising_here(tmp_path) -> None:
    texts = ["富士山は日本一高い山です。", "京都には寺が多い。", "", "ＡＢＣの本"]
    ids = ["a", "b", "c", "d"]
    here = BM25Index("char2").index(texts, ids)
    worker = BM25Index("char2")
    there = BM25Index("char2").index(texts, ids, tokens=[worker.tokenize(t) for t in texts])
    here.save(tmp_path / "here")
    there.save(tmp_path / "there")
    skip = {"CURRENT", "manifest.json"}
    files = [
        {p.name: p.read_bytes() for p in (tmp_path / name).rglob("*") if p.is_file() and p.name not in skip}
        for name in ("here", "there")
    ]
    assert files[0]
    assert files[0] == files[1]
    assert [h.id for h in there.search("京都の寺", 2)] == [h.id for h in here.search("京都の寺", 2)]
    with pytest.raises(ValueError, match="4 texts but only 3 token lists"):
        BM25Index("char2").index(texts, ids, tokens=[["a"]] * 3)
    with pytest.raises(ValueError, match="more token lists than the 4 texts"):
        BM25Index("char2").index(texts, ids, tokens=iter([["a"]] * 5))
    with pytest.raises(TypeError, match=r"tokens\[1\] must be a list of str"):
        BM25Index("char2").index(texts, ids, tokens=[["a"], "ab", ["c"], ["d"]])
