"""Metrics against hand computation and a textbook reference implementation."""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jp_rerank.evaluation.metrics import DEFAULT_METRICS, evaluate, evaluate_per_query

pytest.importorskip("ranx")

# q1: relevant d1 (grade 1) at rank 1 and d3 (grade 2) at rank 3; q2: relevant d2 at rank 2; q3: not in the run.
QRELS = {"q1": {"d1": 1, "d3": 2}, "q2": {"d2": 1}, "q3": {"d9": 1}}
RUN = {"q1": {"d1": 0.9, "d2": 0.8, "d3": 0.7}, "q2": {"d5": 1.0, "d2": 0.5}}


def _hand_per_query() -> dict[str, dict[str, float]]:
    # nDCG with linear gains and log2(rank + 1) discounts.
    q1_dcg = 1 / math.log2(2) + 2 / math.log2(4)
    q1_idcg = 2 / math.log2(2) + 1 / math.log2(3)
    return {
        "q1": {"ndcg@10": q1_dcg / q1_idcg, "mrr@10": 1.0, "map@10": (1 / 1 + 2 / 3) / 2, "recall@10": 1.0},
        "q2": {"ndcg@10": 1 / math.log2(3), "mrr@10": 0.5, "map@10": 0.5, "recall@10": 1.0},
        "q3": {"ndcg@10": 0.0, "mrr@10": 0.0, "map@10": 0.0, "recall@10": 0.0},
    }


def test_metrics_match_hand_computation() -> None:
    hand = _hand_per_query()
    got = evaluate(RUN, QRELS, ["ndcg@10", "mrr@10", "map@10", "recall@10", "hit@10"])
    for metric in ("ndcg@10", "mrr@10", "map@10", "recall@10"):
        assert got[metric] == pytest.approx(sum(q[metric] for q in hand.values()) / 3)
    assert got["hit@10"] == pytest.approx(2 / 3)
    assert all(type(v) is float for v in got.values())


def test_metrics_at_cutoff_one() -> None:
    got = evaluate(RUN, QRELS, ["hit@1", "recall@1", "ndcg@1", "mrr@1"])
    assert got["hit@1"] == pytest.approx(1 / 3)  # only q1 has a relevant passage first
    assert got["recall@1"] == pytest.approx((1 / 2) / 3)  # q1 finds 1 of its 2 relevant passages
    assert got["ndcg@1"] == pytest.approx((1 / 2) / 3)  # q1: gain 1 where the ideal first gain is 2
    assert got["mrr@1"] == pytest.approx(1 / 3)


def test_per_query_scores_follow_qrels_order_and_hand_values() -> None:
    per_query = evaluate_per_query(RUN, QRELS, ["ndcg@10", "mrr@10", "map@10", "recall@10"])
    assert list(per_query) == ["q1", "q2", "q3"]
    hand = _hand_per_query()
    for qid, scores in per_query.items():
        assert scores == pytest.approx(hand[qid])


def test_default_metrics_cover_five_metrics_at_10_and_100() -> None:
    assert len(DEFAULT_METRICS) == 10
    got = evaluate(RUN, QRELS)
    assert set(got) == set(DEFAULT_METRICS)
    assert got["recall@100"] == pytest.approx(2 / 3)


def test_missing_queries_count_as_zero_and_unjudged_run_queries_are_ignored() -> None:
    without_q3 = {k: v for k, v in QRELS.items() if k != "q3"}
    full = evaluate(RUN, QRELS, ["mrr@10"])["mrr@10"]
    partial = evaluate(RUN, without_q3, ["mrr@10"])["mrr@10"]
    assert full == pytest.approx(partial * 2 / 3)
    extra = {**RUN, "unjudged": {"d1": 1.0}}
    assert evaluate(extra, QRELS, ["mrr@10"])["mrr@10"] == pytest.approx(full)


def test_grade_zero_is_not_relevant_and_all_zero_query_counts_as_zero(caplog: pytest.LogCaptureFixture) -> None:
    qrels = {"q1": {"d1": 0, "d2": 1}, "q2": {"d3": 0}}
    run = {"q1": {"d1": 0.9, "d2": 0.5}, "q2": {"d3": 1.0}}
    with caplog.at_level(logging.WARNING, logger="jp_rerank.evaluation.metrics"):
        got = evaluate(run, qrels, ["mrr@10"])
    assert got["mrr@10"] == pytest.approx((1 / 2 + 0) / 2)
    assert "no relevant passage" in caplog.text


def test_ties_keep_the_given_order() -> None:
    qrels = {"q": {"b": 1}}
    assert evaluate({"q": {"a": 1.0, "b": 1.0}}, qrels, ["mrr@10"])["mrr@10"] == 0.5
    assert evaluate({"q": {"b": 1.0, "a": 1.0}}, qrels, ["mrr@10"])["mrr@10"] == 1.0


def test_ids_are_compared_as_strings_and_inputs_are_not_mutated() -> None:
    run = {"1": {"2": 1.0}}
    qrels: dict[Any, Any] = {1: {2: 1}}
    before = copy.deepcopy(run), copy.deepcopy(qrels)
    assert evaluate(run, qrels, ["hit@10"]) == {"hit@10": 1.0}
    assert (run, qrels) == before


@pytest.mark.parametrize(
    ("run", "qrels", "metrics", "error", "match"),
    [
        ({}, QRELS, ["mrr@10"], ValueError, "run is empty"),
        ({"q1": {}}, QRELS, ["mrr@10"], ValueError, "run is empty"),
        (RUN, {}, ["mrr@10"], ValueError, "qrels is empty"),
        (RUN, {"q1": {}}, ["mrr@10"], ValueError, "qrels is empty"),
        ({"x": {"d1": 1.0}}, QRELS, ["mrr@10"], ValueError, "share no query ids"),
        (RUN, QRELS, ["foo@10"], ValueError, "unknown metric"),
        (RUN, QRELS, ["ndcg"], ValueError, "unknown metric"),
        (RUN, QRELS, ["ndcg@0"], ValueError, "unknown metric"),
        (RUN, QRELS, [], ValueError, "metrics is empty"),
        (RUN, QRELS, "ndcg@10", TypeError, "not a single str"),
        ({"q1": {"d1": float("nan")}}, QRELS, ["mrr@10"], ValueError, "non-finite"),
        ({"q1": {"d1": "high"}}, QRELS, ["mrr@10"], TypeError, "must be a number"),
        (RUN, {"q1": {"d1": 1.5}}, ["mrr@10"], ValueError, "integer grade"),
        (RUN, {"q1": ["d1"]}, ["mrr@10"], TypeError, "must be a mapping of doc id"),
        ([("q1", "d1")], QRELS, ["mrr@10"], TypeError, "run must be a mapping"),
    ],
)
def test_bad_inputs_raise_clear_errors(run: Any, qrels: Any, metrics: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        evaluate(run, qrels, metrics)


def _reference(ranking: list[str], judged: dict[str, int], k: int) -> dict[str, float]:
    """Textbook definitions, computed from a ranked list (linear gains, log2(rank + 1) discounts)."""
    rel = {d for d, g in judged.items() if g > 0}
    top = ranking[:k]
    hits = [i for i, d in enumerate(top) if d in rel]
    dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(top) if d in rel)
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return {
        f"ndcg@{k}": dcg / idcg if idcg else 0.0,
        f"mrr@{k}": 1 / (hits[0] + 1) if hits else 0.0,
        f"map@{k}": sum((n + 1) / (i + 1) for n, i in enumerate(hits)) / len(rel) if rel else 0.0,
        f"recall@{k}": len(hits) / len(rel) if rel else 0.0,
        f"hit@{k}": 1.0 if hits else 0.0,
    }


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from("abcdefgh"), unique=True, max_size=8),
            st.dictionaries(st.sampled_from("abcdefgh"), st.integers(-1, 3), min_size=1, max_size=4),
            st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=8, max_size=8),
        ),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from([1, 3, 10]),
)
def test_metrics_match_a_reference_implementation(queries: list[Any], k: int) -> None:
    run: dict[str, dict[str, float]] = {}
    qrels: dict[str, dict[str, int]] = {}
    reference: dict[str, dict[str, float]] = {}
    for i, (docs, judged, scores) in enumerate(queries):
        qid = f"q{i}"
        ranking = {d: scores[j] for j, d in enumerate(docs)}  # ties (repeated scores) keep list order
        run[qid], qrels[qid] = ranking, judged
        ordered = sorted(ranking, key=lambda d: -ranking[d])
        reference[qid] = _reference(ordered, judged, k)
    if not any(run.values()):
        run["q0"] = {"z": 1.0}
        reference["q0"] = _reference(["z"], qrels["q0"], k)
    names = [f"{m}@{k}" for m in ("ndcg", "mrr", "map", "recall", "hit")]
    per_query = evaluate_per_query(run, qrels, names)
    for qid, expected in reference.items():
        assert per_query[qid] == pytest.approx(expected)
