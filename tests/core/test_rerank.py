"""Reranker engine: parity with a plain transformers forward pass, ordering, truncation, windows, errors.

Exact parity asks for ``precision="fp32"``: ``"auto"`` runs bf16 on CPUs with native bf16 (AVX-512 BF16, AMX), whose
scores differ from fp32 by about 1e-3 (the bf16 tolerance is tested in ``test_backends.py``).
"""

from __future__ import annotations

import logging
import random
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from jp_rerank import Reranker, RerankResult
from jp_rerank.errors import ModelLoadError
from jp_rerank.rerank.pairs import PairEncoder, PairTemplate
from jp_rerank.text import iter_windows, normalize_text

QUERY = "富士山の高さは何メートルですか？"
DOCS = [
    "富士山は静岡県と山梨県にまたがる日本最高峰の山で、標高は3776メートルです。",
    "京都には多くの寺や神社があり、観光客に人気です。",
    "新幹線は東京と大阪を約2時間半で結びます。",
    "",
    "ﾃｽﾄ用の半角カナとＡＢＣ全角英字を含む文。",
    "北海道の冬は寒く、雪まつりが開かれます。" * 3,
]


def reference_scores(path: Path, query: str, docs: list[str], *, max_length: int, activation: str = "sigmoid"):
    """Plain transformers: tokenize each pair, one forward pass per pair, activation by hand."""
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    out = []
    with torch.inference_mode():
        for doc in docs:
            enc = tok(
                normalize_text(query),
                normalize_text(doc),
                truncation="only_second",
                max_length=max_length,
                return_tensors="pt",
            )
            if "token_type_ids" not in enc and model.config.type_vocab_size > 1:
                # BERT pairs: query segment 0, passage segment 1 (transformers 5's BertJapaneseTokenizer omits them)
                first_sep = int((enc["input_ids"][0] == tok.sep_token_id).nonzero()[0])
                types = torch.zeros_like(enc["input_ids"])
                types[0, first_sep + 1 :] = 1
                enc["token_type_ids"] = types
            logit = model(**enc).logits[0, -1].double()
            out.append(float(torch.sigmoid(logit)) if activation == "sigmoid" else float(logit))
    return np.array(out)


@pytest.fixture(scope="module", params=["xlmr", "bert_ja"])
def ce_path(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(f"{request.param}_ce_path")


@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_scores_match_plain_transformers_any_batch_and_order(ce_path: Path, batch_size: int) -> None:
    reranker = Reranker(ce_path, device="cpu", precision="fp32", batch_size=batch_size)
    expected = reference_scores(ce_path, QUERY, DOCS, max_length=reranker.max_length)
    got = reranker.score(QUERY, DOCS)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    perm = list(range(len(DOCS)))
    random.Random(7).shuffle(perm)
    shuffled = reranker.score(QUERY, [DOCS[i] for i in perm])
    np.testing.assert_allclose(shuffled, got[perm], atol=1e-5)


def test_pair_encoder_reproduces_tokenizer_pairs(ce_path: Path) -> None:
    tok = AutoTokenizer.from_pretrained(ce_path)
    encoder = PairEncoder(tok, PairTemplate.from_tokenizer(tok), 512)
    docs = list(DOCS)
    items = encoder.encode_request([QUERY], [docs], overflow="truncate", overlap=0).items
    assert [item.pair for item in items] == list(range(len(docs)))
    for doc, item in zip(docs, items, strict=True):
        ref = tok(QUERY, doc)
        assert list(item.input_ids) == list(ref["input_ids"])
        if item.token_type_ids is not None:
            assert list(item.token_type_ids) == list(ref["token_type_ids"])


def test_rerank_sorted_top_n_threshold_and_float_scores(xlmr_ce_path: Path) -> None:
    reranker = Reranker(xlmr_ce_path, device="cpu", precision="fp32")
    scores = reranker.score(QUERY, DOCS)
    results = reranker.rerank(QUERY, DOCS)
    assert [r.index for r in results] == sorted(range(len(DOCS)), key=lambda i: (-scores[i], i))
    assert all(type(r.score) is float for r in results)
    assert reranker.rerank(QUERY, DOCS, top_n=2) == results[:2]
    threshold = float(np.median(scores))
    kept = reranker.rerank(QUERY, DOCS, score_threshold=threshold)
    assert kept == [r for r in results if r.score >= threshold]
    assert reranker.rerank(QUERY, DOCS, top_n=100) == results


def test_duplicate_documents_tie_in_input_order(xlmr_ce_path: Path) -> None:
    results = Reranker(xlmr_ce_path, device="cpu", precision="fp32").rerank(QUERY, [DOCS[1], DOCS[0], DOCS[1]])
    dup = [r.index for r in results if r.index in (0, 2)]
    assert dup == [0, 2]
    assert {r.score for r in results if r.index in (0, 2)} == {results[[r.index for r in results].index(0)].score}


def test_bad_inputs(xlmr_ce_path: Path) -> None:
    reranker = Reranker(xlmr_ce_path, device="cpu", precision="fp32")
    assert reranker.rerank(QUERY, []) == []
    assert reranker.score(QUERY, []).shape == (0,)
    with pytest.raises(ValueError, match="query is empty"):
        reranker.rerank("", DOCS)
    with pytest.raises(ValueError, match="query is empty"):
        reranker.rerank(" \u3000\n", DOCS)
    with pytest.raises(TypeError, match=r"documents\[1\] must be a str, got NoneType"):
        reranker.rerank(QUERY, ["a", None, "b"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"documents\[0\] must be a str, got bytes"):
        reranker.rerank(QUERY, [b"bytes"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="query must be a str"):
        reranker.rerank(123, DOCS)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="top_n must be a positive"):
        reranker.rerank(QUERY, DOCS, top_n=0)
    with pytest.raises(ValueError, match="top_n must be a positive"):
        reranker.rerank(QUERY, [], top_n=-1)
    with pytest.raises(ValueError, match="must not be NaN"):
        reranker.rerank(QUERY, DOCS, score_threshold=float("nan"))
    with pytest.raises(TypeError, match="single str"):
        reranker.rerank(QUERY, "not a list")  # type: ignore[arg-type]


def test_constructor_validation(xlmr_ce_path: Path) -> None:
    with pytest.raises(ValueError, match="overflow"):
        Reranker(xlmr_ce_path, overflow="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size must be positive"):
        Reranker(xlmr_ce_path, batch_size=0)
    with pytest.raises(ValueError, match="activation"):
        Reranker(xlmr_ce_path, activation="relu")  # type: ignore[arg-type]


def test_long_passage_truncated_with_one_counting_warning(xlmr_ce_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    reranker = Reranker(xlmr_ce_path, device="cpu", precision="fp32", max_length=32)
    long_docs = [DOCS[0] * 20, DOCS[1] * 20, DOCS[2]]
    with caplog.at_level(logging.WARNING, logger="jp_rerank"):
        got = reranker.score(QUERY, long_docs)
    warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1
    assert "2 of 3 passages" in warnings[0].getMessage()
    np.testing.assert_allclose(got, reference_scores(xlmr_ce_path, QUERY, long_docs, max_length=32), atol=1e-5)


def test_very_long_passage_character_cut_keeps_exact_tokens(xlmr_ce_path: Path) -> None:
    reranker = Reranker(xlmr_ce_path, device="cpu", precision="fp32", max_length=24)
    doc = "東京" + "あ" * 5000
    np.testing.assert_allclose(
        reranker.score("東京", [doc]), reference_scores(xlmr_ce_path, "東京", [doc], max_length=24), atol=1e-5
    )


def test_query_is_never_truncated(xlmr_ce_path: Path) -> None:
    reranker = Reranker(xlmr_ce_path, device="cpu", precision="fp32", max_length=16)
    with pytest.raises(ValueError, match="queries are never truncated"):
        reranker.score(QUERY * 10, DOCS[:1])


def test_window_scoring_is_max_over_windows_scored_by_hand(bert_ja_ce_path: Path) -> None:
    max_length, overlap = 40, 8
    reranker = Reranker(
        bert_ja_ce_path,
        device="cpu",
        precision="fp32",
        max_length=max_length,
        overflow="window",
        window_overlap=overlap,
    )
    doc = "".join(DOCS)
    tok = AutoTokenizer.from_pretrained(bert_ja_ce_path)
    model = AutoModelForSequenceClassification.from_pretrained(bert_ja_ce_path).eval()
    q_ids = tok(normalize_text(QUERY), add_special_tokens=False)["input_ids"]
    d_ids = tok(normalize_text(doc), add_special_tokens=False)["input_ids"]
    budget = max_length - len(q_ids) - 3  # [CLS] q [SEP] d [SEP]
    assert len(d_ids) > budget
    by_hand = []
    with torch.inference_mode():
        for s, e in iter_windows(len(d_ids), budget, budget - overlap):
            ids = [tok.cls_token_id, *q_ids, tok.sep_token_id, *d_ids[s:e], tok.sep_token_id]
            types = [0] * (len(q_ids) + 2) + [1] * (e - s + 1)
            logits = model(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([types])).logits
            by_hand.append(float(torch.sigmoid(logits[0, 0].double())))
    assert len(by_hand) >= 2
    got = reranker.score(QUERY, [doc, DOCS[1]])
    assert got[0] == pytest.approx(max(by_hand), abs=1e-5)
    np.testing.assert_allclose(
        got[1], reference_scores(bert_ja_ce_path, QUERY, [DOCS[1]], max_length=max_length)[0], atol=1e-5
    )


def test_raw_logits_on_request(xlmr_ce_path: Path) -> None:
    reranker = Reranker(xlmr_ce_path, device="cpu", precision="fp32", activation="none")
    expected = reference_scores(xlmr_ce_path, QUERY, DOCS, max_length=reranker.max_length, activation="none")
    np.testing.assert_allclose(reranker.score(QUERY, DOCS), expected, atol=1e-5)


def test_rerank_many_shares_batches_and_equals_single_calls(xlmr_ce_path: Path) -> None:
    reranker = Reranker(xlmr_ce_path, device="cpu", precision="fp32", batch_size=4)
    queries = [QUERY, "京都の寺", "新幹線の所要時間"]
    docs = [DOCS, DOCS[:2], []]
    many = reranker.rerank_many(queries, docs, top_n=3)
    single = [reranker.rerank(q, d, top_n=3) for q, d in zip(queries, docs, strict=True)]
    # Shared batches pad pairs to other lengths than single calls: fp32 matmuls may round the last bits differently
    # on some CPUs, so the promise is the same ranking and scores equal to float32 rounding, not identical floats.
    assert [[r.index for r in rs] for rs in many] == [[r.index for r in rs] for rs in single]
    for got, want in zip(many, single, strict=True):
        np.testing.assert_allclose([r.score for r in got], [r.score for r in want], atol=1e-5)
    assert many[2] == []
    with pytest.raises(ValueError, match="3 queries but 2 document lists"):
        reranker.rerank_many(queries, docs[:2])


def test_thread_safe_shared_instance(xlmr_ce_path: Path) -> None:
    reranker = Reranker(xlmr_ce_path, device="cpu", precision="fp32", batch_size=2)
    expected = reranker.rerank(QUERY, DOCS)
    results: list[list[RerankResult]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                results.append(reranker.rerank(QUERY, DOCS))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 24
    assert all(r == expected for r in results)


def test_missing_local_model_and_offline_hub_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        Reranker(str(tmp_path / "nope" / "model"))
    with pytest.raises(ModelLoadError) as info:
        Reranker("small").load()  # a preset that is not in the test session's HF cache
    message = str(info.value)
    assert "hotchpotch/japanese-reranker-cross-encoder-small-v1" in message
    assert "offline" in message
    assert "local path" in message


def test_score_pairs_scores_mixed_queries_in_input_order(reranker: Reranker) -> None:
    other = "京都の寺は？"
    pairs = [(QUERY, DOCS[1]), (other, DOCS[0]), (QUERY, DOCS[0]), (other, DOCS[2])]
    got = reranker.score_pairs(pairs)
    by_query = {QUERY: reranker.score(QUERY, DOCS), other: reranker.score(other, DOCS)}
    want = [float(by_query[q][DOCS.index(p)]) for q, p in pairs]
    assert got == pytest.approx(want, abs=1e-6)  # batched with other pairs: equal up to padding noise
    assert all(type(s) is float for s in got)
    assert reranker.score_pairs([]) == []
    with pytest.raises(TypeError, match=r"pairs\[1\] must be a \(query, passage\) pair"):
        reranker.score_pairs([(QUERY, "a"), (QUERY,)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="query is empty"):
        reranker.score_pairs([(" ", "a")])
