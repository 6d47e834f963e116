"""Bad-input matrix for the engine (Reranker, Embedder): every case gets a clear error or a documented result.

Each row of docs/reliability.md is checked here: errors name the problem (and the position of a bad item), and
documented results keep every document (no silent drops), in a bounded time, without crashing the process.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jp_rerank import Embedder, Reranker
from jp_rerank.checks import DEFAULT_MAX_CHARS, DEFAULT_MAX_DOCUMENTS
from jp_rerank.data import load_demo_corpus
from jp_rerank.index import ExactIndex
from jp_rerank.text import normalize_text

pytestmark = pytest.mark.timeout(300)

QUERY = "富士山の高さは何メートルですか？"
DOCS = ["富士山は日本一高い山です。", "京都には寺が多い。", "新幹線は速い。"]


def long_text(n: int) -> str:
    """``n`` characters of real Japanese prose (the demo corpus, repeated)."""
    text = "".join(d["text"] for d in load_demo_corpus())
    return (text * (n // len(text) + 1))[:n]


BLANK = "query is empty or whitespace only once control and format characters"

# (case, query, documents, error type, message pattern) — the same for score() and rerank().
ERROR_CASES: list[tuple[str, Any, Any, type[Exception], str]] = [
    ("empty query", "", DOCS, ValueError, "query is empty or whitespace only"),
    ("whitespace query", " \u3000\t\n", DOCS, ValueError, "query is empty or whitespace only"),
    ("None query", None, DOCS, TypeError, "query must be a str, got NoneType"),
    ("bytes query", "質問".encode(), DOCS, TypeError, "query must be a str, got bytes"),
    ("number query", 42, DOCS, TypeError, "query must be a str, got int"),
    ("None document", QUERY, ["a", None, "b"], TypeError, r"documents\[1\] must be a str, got NoneType"),
    ("int document", QUERY, ["a", "b", 3], TypeError, r"documents\[2\] must be a str, got int"),
    ("NaN document", QUERY, [math.nan], TypeError, r"documents\[0\] must be a str, got float"),
    ("bytes document", QUERY, ["a", "本文".encode()], TypeError, r"documents\[1\] must be a str, got bytes"),
    ("documents is one str", QUERY, "一つの文字列", TypeError, "documents must be a sequence of str, not a single str"),
    ("documents is None", QUERY, None, TypeError, "documents must be a sequence of str, got NoneType"),
    (
        "lone surrogate in a document",
        QUERY,
        ["ok", "壊れた\ud800文字"],
        ValueError,
        r"documents\[1\] contains a lone surrogate U\+D800 at character 3",
    ),
    ("lone surrogate in the query", "質問\udfff", DOCS, ValueError, r"query contains a lone surrogate U\+DFFF"),
    # queries that normalisation empties: scored as noise before (issue 12, item 7)
    ("NUL query", "\x00", DOCS, ValueError, BLANK),
    ("zero-width space query", "\u200b", DOCS, ValueError, BLANK),
    ("BOM query", "\ufeff", DOCS, ValueError, BLANK),
    ("format characters only", "\u2060\u200d\u00ad\u200e", DOCS, ValueError, BLANK),
    ("controls and spaces", "\x01 \x7f\u3000\ufe0f", DOCS, ValueError, BLANK),
    # containers whose iteration is not their texts (issue 12, item 8)
    ("documents is a dict", QUERY, {"d1": "富士山は高い。"}, TypeError, "got a dict \\(iterating it gives its keys\\)"),
]


@pytest.mark.parametrize(("case", "query", "documents", "error", "match"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_reranker_rejects_bad_input_before_loading(
    xlmr_ce_path: Path, case: str, query: Any, documents: Any, error: type[Exception], match: str
) -> None:
    fresh = Reranker(xlmr_ce_path, device="cpu")
    with pytest.raises(error, match=match):
        fresh.rerank(query, documents)
    with pytest.raises(error, match=match):
        fresh.score(query, documents)
    assert fresh._loaded is None, f"{case}: the model was loaded for an input that was going to be rejected"


def test_a_pandas_dataframe_is_not_a_list_of_documents(xlmr_ce_path: Path, dense_path: Path) -> None:
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"id": ["a", "b"], "text": ["富士山は高い。", "京都の寺。"]})
    fresh = Reranker(xlmr_ce_path, device="cpu")
    with pytest.raises(TypeError, match=r"documents must be a sequence of str, got a pandas DataFrame .* df\['text'\]"):
        fresh.rerank(QUERY, frame)
    with pytest.raises(TypeError, match="got a pandas DataFrame"):
        Embedder(dense_path, device="cpu").embed_documents(frame)
    assert fresh._loaded is None
    assert len(fresh.rerank(QUERY, frame["text"])) == 2  # one column (a Series) is a sequence of texts
    assert len(fresh.rerank(QUERY, list({"d1": "富士山は高い。"}.values()))) == 1


def test_reranker_argument_errors(module_reranker: Reranker) -> None:
    with pytest.raises(ValueError, match="top_n must be a positive integer or None, got 0"):
        module_reranker.rerank(QUERY, DOCS, top_n=0)
    with pytest.raises(TypeError, match="top_n must be an int or None, got str"):
        module_reranker.rerank(QUERY, DOCS, top_n="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="score_threshold must not be NaN"):
        module_reranker.rerank(QUERY, DOCS, score_threshold=math.nan)
    with pytest.raises(ValueError, match="got 2 queries but 1 document lists"):
        module_reranker.score_many([QUERY, "二つ目"], [DOCS])
    with pytest.raises(ValueError, match=r"queries\[1\] is empty or whitespace only"):
        module_reranker.rerank_many([QUERY, " "], [DOCS, DOCS])


def test_reranker_empty_candidates_give_empty_results(module_reranker: Reranker) -> None:
    assert module_reranker.rerank(QUERY, []) == []
    scores = module_reranker.score(QUERY, [])
    assert scores.shape == (0,)
    assert scores.dtype == np.float32
    assert module_reranker.rerank_many([QUERY, "二つ目"], [[], DOCS])[0] == []


def test_query_too_long_for_any_passage_is_a_clear_error(module_reranker: Reranker) -> None:
    with pytest.raises(ValueError, match="queries are never truncated: shorten the query or raise max_length"):
        module_reranker.rerank(long_text(5_000), DOCS)


def test_100k_character_documents_are_truncated_with_a_warning(
    module_reranker: Reranker, caplog: pytest.LogCaptureFixture
) -> None:
    docs = [long_text(100_000), "x" * 100_000, "😀" * 100_000, "短い文。"]
    with caplog.at_level(logging.WARNING, logger="jp_rerank"):
        results = module_reranker.rerank(QUERY, docs)
    assert sorted(r.index for r in results) == [0, 1, 2, 3]
    assert all(math.isfinite(r.score) for r in results)
    assert "were truncated (use overflow='window'" in caplog.text


def test_100k_character_document_in_window_mode_scores_every_part(xlmr_ce_path: Path) -> None:
    windowed = Reranker(xlmr_ce_path, device="cpu", overflow="window")
    head = long_text(2_000)
    whole = windowed.score(QUERY, [long_text(100_000), head])
    assert np.isfinite(whole).all()
    assert whole[0] >= whole[1] - 1e-6  # best window over the whole text, which starts with ``head``


def test_10k_candidates_all_come_back(module_reranker: Reranker) -> None:
    docs = [f"候補{i}：東京タワーの高さは{i % 400}メートルです。" for i in range(10_000)]
    results = module_reranker.rerank(QUERY, docs)
    assert len(results) == 10_000
    assert sorted(r.index for r in results) == list(range(10_000))
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(type(s) is float and math.isfinite(s) for s in scores)


def test_messy_text_is_normalised_and_scored(module_reranker: Reranker) -> None:
    messy = [
        "ｶﾀｶﾅとＡＢＣ１２３",  # half-width kana, full-width ASCII (NFKC)
        "制御\x00文字の\x07な\u200bい\x1f文",  # control and zero-width characters become spaces
        "絵文字😀🎌と記号",
        "日本語　English\t한국어\n混在",  # ideographic space, tab and newline fold to one space
        " \u3000\n\t",  # whitespace only: scored as the empty passage
    ]
    clean = ["カタカナとABC123", "制御 文字の な い 文", "絵文字😀🎌と記号", "日本語 English 한국어 混在", ""]
    assert [normalize_text(m) for m in messy] == clean
    got = module_reranker.score(QUERY, messy)
    np.testing.assert_allclose(got, module_reranker.score(QUERY, clean), atol=1e-6)
    assert np.isfinite(got).all()
    raw = Reranker(module_reranker.source.location, device="cpu", normalize_text=False)
    assert np.isfinite(raw.score(QUERY, messy)).all()  # unnormalised control characters reach the tokenizer unharmed


def test_duplicate_documents_keep_every_copy_ties_by_index(module_reranker: Reranker) -> None:
    docs = ["同じ文です。", "別の文です。", "同じ文です。", "同じ文です。"]
    results = module_reranker.rerank(QUERY, docs)
    assert sorted(r.index for r in results) == [0, 1, 2, 3]
    same = [r for r in results if docs[r.index] == "同じ文です。"]
    assert [r.index for r in same] == [0, 2, 3]
    assert len({r.score for r in same}) == 1


def test_nan_from_a_broken_model_ranks_last_with_a_warning(
    nan_ce_path: Path, poison: str, caplog: pytest.LogCaptureFixture
) -> None:
    broken = Reranker(nan_ce_path, device="cpu")
    docs = ["富士山は高い。", f"{poison}が好き。", "京都の寺。", f"{poison}と犬。"]
    with caplog.at_level(logging.WARNING, logger="jp_rerank"):
        results = broken.rerank(QUERY, docs)
    assert [r.index for r in results][2:] == [1, 3]  # NaN last, by input order; nothing dropped
    assert all(math.isfinite(r.score) for r in results[:2])
    assert all(math.isnan(r.score) for r in results[2:])
    assert "the model returned NaN for 2 pairs; they rank last" in caplog.text
    scores = broken.score(QUERY, docs)
    assert np.isnan(scores[[1, 3]]).all()
    assert np.isfinite(scores[[0, 2]]).all()
    # NaN never passes a threshold (documented): only the finite scores survive one.
    kept = broken.rerank(QUERY, docs, score_threshold=-1e9)
    assert sorted(r.index for r in kept) == [0, 2]


# ------------------------------------------------------------------------------------------------ caps


def test_caps_have_generous_documented_defaults(xlmr_ce_path: Path, dense_path: Path) -> None:
    assert DEFAULT_MAX_DOCUMENTS >= 10_000
    assert DEFAULT_MAX_CHARS >= 100_000
    for engine in (Reranker(xlmr_ce_path), Embedder(dense_path)):
        assert engine.max_documents == DEFAULT_MAX_DOCUMENTS
        assert engine.max_chars == DEFAULT_MAX_CHARS


def test_reranker_caps_are_checked_before_any_model_work(xlmr_ce_path: Path) -> None:
    capped = Reranker(xlmr_ce_path, device="cpu", max_documents=5, max_chars=20)
    with pytest.raises(ValueError, match=r"6 documents in one call is over the cap max_documents=5.*Reranker\("):
        capped.rerank(QUERY, ["文"] * 6)
    with pytest.raises(ValueError, match=r"6 documents in one call is over the cap max_documents=5"):
        capped.score_many([QUERY, "二つ目"], [["文"] * 3, ["文"] * 3])  # all queries together
    with pytest.raises(ValueError, match=r"documents\[1\] has 21 characters, over the cap max_chars=20.*chunk_text"):
        capped.rerank(QUERY, ["短い", "あ" * 21])
    with pytest.raises(ValueError, match=r"documents\[1\]\[0\] has 21 characters, over the cap max_chars=20"):
        capped.score_many([QUERY, "二つ目"], [["短い"], ["あ" * 21]])
    with pytest.raises(ValueError, match=r"query has 21 characters, over the cap max_chars=20"):
        capped.rerank("質" * 21, ["短い"])
    assert capped._loaded is None
    assert len(capped.rerank(QUERY, ["あ" * 20] * 5)) == 5  # exactly at the caps is fine
    uncapped = Reranker(xlmr_ce_path, device="cpu", max_documents=None, max_chars=None)
    assert len(uncapped.rerank(QUERY, ["文"] * 3)) == 3


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_documents": 0}, ValueError, "max_documents must be positive, got 0"),
        ({"max_chars": -1}, ValueError, "max_chars must be positive, got -1"),
        ({"max_documents": "100"}, TypeError, "max_documents must be an int, got str"),
        ({"max_chars": 1.5}, TypeError, "max_chars must be an int, got float"),
    ],
)
def test_bad_cap_values_are_rejected(
    xlmr_ce_path: Path, dense_path: Path, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        Reranker(xlmr_ce_path, **kwargs)
    with pytest.raises(error, match=match):
        Embedder(dense_path, **kwargs)


# ------------------------------------------------------------------------------------------------ embedder

EMBED_DOC_ERRORS: list[tuple[str, Any, type[Exception], str]] = [
    ("None text", ["a", None], TypeError, r"texts\[1\] must be a str, got NoneType"),
    ("int text", [1], TypeError, r"texts\[0\] must be a str, got int"),
    ("bytes text", [b"x"], TypeError, r"texts\[0\] must be a str, got bytes"),
    ("one str", "本文", TypeError, "texts must be a sequence of str, not a single str"),
    ("lone surrogate", ["\ud83d"], ValueError, r"texts\[0\] contains a lone surrogate U\+D83D"),
]


@pytest.mark.parametrize(("case", "texts", "error", "match"), EMBED_DOC_ERRORS, ids=[c[0] for c in EMBED_DOC_ERRORS])
def test_embedder_rejects_bad_documents(
    dense_path: Path, case: str, texts: Any, error: type[Exception], match: str
) -> None:
    fresh = Embedder(dense_path, device="cpu")
    with pytest.raises(error, match=match):
        fresh.embed_documents(texts)
    assert fresh._model is None, case


@pytest.mark.parametrize(
    ("query", "error", "match"),
    [
        ("", ValueError, "query is empty or whitespace only"),
        ("\u3000 \n", ValueError, "query is empty or whitespace only"),
        (None, TypeError, "query must be a str, got NoneType"),
        (b"q", TypeError, "query must be a str, got bytes"),
        ("q\ud800", ValueError, "query contains a lone surrogate"),
        ("\u200b\ufeff", ValueError, "query is empty or whitespace only once control and format characters"),
        ("\x00", ValueError, "query is empty or whitespace only once control and format characters"),
    ],
)
def test_embedder_rejects_bad_queries(
    module_embedder: Embedder, query: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        module_embedder.embed_query(query)
    with pytest.raises(error, match=match.replace("query", r"queries\[0\]")):
        module_embedder.embed_queries([query])


def test_embedder_documented_results(module_embedder: Embedder) -> None:
    assert module_embedder.embed_documents([]).shape == (0, module_embedder.dim)
    assert module_embedder.embed_queries([]).shape == (0, module_embedder.dim)
    texts = [long_text(100_000), "😀" * 100_000, "", " \u3000", "日本語 English 한국어", "同じ", "同じ"]
    vectors = module_embedder.embed_documents(texts)
    assert vectors.shape == (len(texts), module_embedder.dim)
    assert np.isfinite(vectors).all()
    np.testing.assert_array_equal(vectors[5], vectors[6])  # duplicates: identical rows, both kept
    np.testing.assert_allclose(vectors[2], vectors[3], atol=1e-6)  # whitespace-only embeds as the empty text
    messy = module_embedder.embed_documents(["ｶﾀｶﾅＡＢＣ\x00\u200b"])
    np.testing.assert_allclose(messy, module_embedder.embed_documents(["カタカナABC"]), atol=1e-6)


def test_embedder_caps(dense_path: Path) -> None:
    capped = Embedder(dense_path, device="cpu", max_documents=3, max_chars=10)
    with pytest.raises(ValueError, match=r"4 texts in one call is over the cap max_documents=3.*Embedder\("):
        capped.embed_documents(["a"] * 4)
    with pytest.raises(ValueError, match=r"texts\[0\] has 11 characters, over the cap max_chars=10"):
        capped.embed_documents(["a" * 11])
    with pytest.raises(ValueError, match=r"query has 11 characters, over the cap max_chars=10"):
        capped.embed_query("a" * 11)
    assert capped._model is None
    assert capped.embed_documents(["a" * 10] * 3).shape[0] == 3


def test_nan_embeddings_warn_and_an_index_refuses_them(
    nan_dense_path: Path, poison: str, caplog: pytest.LogCaptureFixture
) -> None:
    broken = Embedder(nan_dense_path, device="cpu")
    texts = ["富士山", f"{poison}の話", "京都"]
    with caplog.at_level(logging.WARNING, logger="jp_rerank"):
        vectors = broken.embed_documents(texts)
    assert "the model returned NaN or infinite values for 1 of 3 texts" in caplog.text
    assert np.isnan(vectors[1]).all()
    assert np.isfinite(vectors[[0, 2]]).all()
    index = ExactIndex(broken.dim)
    with pytest.raises(ValueError, match="vectors row 1 contains NaN or infinite values"):
        index.add(["a", "b", "c"], vectors, texts)
    assert len(index) == 0  # nothing half-written
