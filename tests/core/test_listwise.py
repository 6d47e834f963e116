"""List-wise score normalisation (issue 14): one query's raw logits become shares of relevance.

The reference is the Korean reranking walkthrough's ``exp_normalize`` written out here on raw logits taken from a
plain transformers forward pass, not from the engine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from jp_rerank import Reranker, testing
from jp_rerank.data import load_demo_corpus
from jp_rerank.text import normalize_text

QUERY = "富士山の高さは何メートルですか？"


def exp_normalize(x: np.ndarray) -> np.ndarray:
    """The walkthrough's formula: ``exp(x - max) / sum(exp(x - max))``."""
    b = x.max()
    y = np.exp(x - b)
    return y / y.sum()


@pytest.fixture(scope="module")
def spread_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny cross-encoder whose random logits spread out (so the shares differ)."""
    return testing.build_modernbert_cross_encoder(tmp_path_factory.mktemp("listwise") / "m", initializer_range=0.3)


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return [d["text"] for d in load_demo_corpus()][:12]


def _raw_logits(path: Path, query: str, docs: list[str]) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    with torch.inference_mode():
        return np.array(
            [
                float(model(**tok(normalize_text(query), normalize_text(d), return_tensors="pt")).logits[0, 0])
                for d in docs
            ]
        )


def test_softmax_shares_follow_the_walkthrough_formula_on_raw_logits(spread_path: Path, docs: list[str]) -> None:
    reranker = Reranker(spread_path, precision="fp32")
    raw = _raw_logits(spread_path, QUERY, docs)
    expected = exp_normalize(raw)
    assert expected.max() - expected.min() > 0.01  # the shares really differ
    results = reranker.rerank(QUERY, docs, listwise="softmax")
    got = np.zeros(len(docs))
    for r in results:
        got[r.index] = r.score
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert sum(r.score for r in results) == pytest.approx(1.0, abs=1e-5)
    assert [r.index for r in results] == [int(i) for i in np.argsort(-raw, kind="stable")]
    # the engine's own raw scores are those logits, and sigmoid scores rank the same way
    np.testing.assert_allclose(reranker.score(QUERY, docs, activation="none"), raw, atol=1e-5)
    assert [r.index for r in reranker.rerank(QUERY, docs)] == [r.index for r in results]


def test_top_n_and_threshold_apply_to_the_shares(spread_path: Path, docs: list[str]) -> None:
    reranker = Reranker(spread_path, precision="fp32")
    shares = exp_normalize(_raw_logits(spread_path, QUERY, docs))
    cut = float(np.sort(shares)[-3])  # keeps exactly the three largest shares
    kept = reranker.rerank(QUERY, docs, listwise="softmax", score_threshold=cut - 1e-7)
    assert len(kept) == 3
    assert all(r.score >= cut - 1e-6 for r in kept)
    top = reranker.rerank(QUERY, docs, listwise="softmax", top_n=2)
    assert [r.index for r in top] == [r.index for r in kept[:2]]
    assert sum(r.score for r in top) < 1.0  # shares of the whole list, not renormalised over the kept ones
    # a threshold on sigmoid scores (~0.5 for these models) would keep none of the shares
    assert reranker.rerank(QUERY, docs, listwise="softmax", score_threshold=0.5) == []


def test_reranker_default_and_per_call_override(spread_path: Path, docs: list[str]) -> None:
    listwise = Reranker(spread_path, precision="fp32", listwise="softmax")
    assert listwise.listwise == "softmax"
    assert sum(r.score for r in listwise.rerank(QUERY, docs)) == pytest.approx(1.0, abs=1e-5)
    plain = listwise.rerank(QUERY, docs, listwise="none")
    sigmoid = Reranker(spread_path, precision="fp32").rerank(QUERY, docs)
    assert plain == sigmoid
    # score / score_many are per pair whatever the list-wise setting
    np.testing.assert_array_equal(
        listwise.score(QUERY, docs), Reranker(spread_path, precision="fp32").score(QUERY, docs)
    )


def test_each_query_is_normalised_over_its_own_documents(spread_path: Path, docs: list[str]) -> None:
    reranker = Reranker(spread_path, precision="fp32")
    lists = [docs[:5], docs[5:], docs[:1]]
    out = reranker.rerank_many(["富士山の高さ", "京都の寺", "東京"], lists, listwise="softmax")
    assert [len(x) for x in out] == [5, 7, 1]
    for results in out:
        assert sum(r.score for r in results) == pytest.approx(1.0, abs=1e-5)
    assert out[2][0].score == pytest.approx(1.0)  # one candidate takes the whole share
    assert reranker.rerank(QUERY, [], listwise="softmax") == []


def test_window_mode_uses_each_passages_best_window_logit(spread_path: Path, docs: list[str]) -> None:
    reranker = Reranker(spread_path, precision="fp32", max_length=48, overflow="window")
    long_docs = [docs[0] * 4, docs[1], docs[2] * 3]
    raw = reranker.score(QUERY, long_docs, activation="none")
    got = {r.index: r.score for r in reranker.rerank(QUERY, long_docs, listwise="softmax")}
    np.testing.assert_allclose([got[i] for i in range(3)], exp_normalize(raw.astype(np.float64)), rtol=1e-5)


def test_multi_label_heads_use_the_last_labels_raw_logit(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    path = testing.build_xlmr_cross_encoder(tmp_path / "two-labels")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=2, ignore_mismatched_sizes=True)
    model.save_pretrained(str(path))  # a two-label head (softmax activation), like some multilingual rerankers
    reranker = Reranker(path, precision="fp32")
    assert reranker._load().activation == "softmax"
    docs = ["富士山は3776メートルです。", "京都の寺。", "東京タワー"]
    raw = reranker.score(QUERY, docs, activation="none")
    got = {r.index: r.score for r in reranker.rerank(QUERY, docs, listwise="softmax")}
    np.testing.assert_allclose([got[i] for i in range(3)], exp_normalize(raw.astype(np.float64)), rtol=1e-5)


def test_nan_logits_take_no_share_and_rank_last() -> None:
    from jp_rerank.rerank.scoring import list_softmax

    shares = list_softmax(np.array([1.0, np.nan, 3.0], dtype=np.float32))
    assert np.isnan(shares[1])
    np.testing.assert_allclose(shares[[0, 2]], exp_normalize(np.array([1.0, 3.0])), rtol=1e-6)
    assert np.isnan(list_softmax(np.array([np.nan], dtype=np.float32))).all()
    assert list_softmax(np.zeros(0, dtype=np.float32)).shape == (0,)


def test_bad_options_are_refused_before_any_work(reranker: Reranker) -> None:
    with pytest.raises(ValueError, match="listwise must be 'none' or 'softmax', got 'sum'"):
        Reranker("xsmall", listwise="sum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="listwise must be 'none' or 'softmax', got 'max'"):
        reranker.rerank(QUERY, ["文書"], listwise="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="activation must be auto, sigmoid, softmax or none, got 'relu'"):
        reranker.score(QUERY, ["文書"], activation="relu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="top_n"):
        reranker.rerank(QUERY, ["文書"], listwise="softmax", top_n=0)
    auto = reranker.score(QUERY, ["文書", "富士山"], activation="auto")
    np.testing.assert_array_equal(auto, reranker.score(QUERY, ["文書", "富士山"]))


def test_infinite_logits_take_the_limit_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    from jp_rerank.rerank.scoring import list_softmax

    with caplog.at_level("WARNING", logger="jp_rerank.rerank.scoring"):
        one_inf = list_softmax(np.array([1.0, np.inf, 3.0], dtype=np.float32))
    np.testing.assert_array_equal(one_inf, [0.0, 1.0, 0.0])
    assert "infinite logits" in caplog.text
    np.testing.assert_array_equal(list_softmax(np.array([np.inf, 0.0, np.inf], dtype=np.float32)), [0.5, 0.0, 0.5])
    all_low = list_softmax(np.array([-np.inf, -np.inf, np.nan, -np.inf], dtype=np.float32))
    np.testing.assert_allclose(all_low[[0, 1, 3]], [1 / 3] * 3, rtol=1e-6)
    assert np.isnan(all_low[2])
    some_low = list_softmax(np.array([-np.inf, 0.0, 0.0], dtype=np.float32))
    np.testing.assert_allclose(some_low, [0.0, 0.5, 0.5])
