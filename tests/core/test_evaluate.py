"""Evaluation library: metrics vs hand computation, the two settings, result files, reports, dataset loaders."""

from __future__ import annotations

import copy
import json
import logging
import math
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jp_rerank.evaluation import (
    EvalResult,
    build_candidates,
    evaluate_rerank,
    evaluate_retrieval,
    format_markdown,
    format_table,
    load_result,
    load_results,
    plot_results,
    sample_queries,
    save_result,
    write_markdown,
)
from jp_rerank.evaluation.datasets import (
    BeirDataset,
    DatasetUnavailableError,
    jacwir_from_rows,
    jqara_from_rows,
    load_beir,
    load_jacwir,
    load_jqara,
    save_beir,
)
from jp_rerank.evaluation.metrics import DEFAULT_METRICS, evaluate, evaluate_per_query
from jp_rerank.hardware import CPU_FEATURES, MachineInfo, machine_info

pytest.importorskip("ranx")

# --- metrics -----------------------------------------------------------------------------------------------------

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


# --- a tiny BEIR folder ------------------------------------------------------------------------------------------

CORPUS = {
    "d1": ("富士山", "富士山は日本一高い山で、標高は3776メートルです。"),
    "d2": ("琵琶湖", "琵琶湖は日本最大の湖で、滋賀県にあります。"),
    "d3": ("東京タワー", "東京タワーは東京都港区にある電波塔です。"),
    "d4": ("信濃川", "信濃川は日本一長い川です。"),
}
QUERIES = {"q1": "日本一高い山は？", "q2": "日本で一番大きい湖は？", "q3": "東京タワーはどこにある？"}
GOLD = {"q1": "d1", "q2": "d2", "q3": "d3"}


def _write_beir(root: Path, *, candidates: bool = True) -> Path:
    root.mkdir(parents=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for did, (title, text) in CORPUS.items():
            fh.write(json.dumps({"_id": did, "title": title, "text": text}, ensure_ascii=False) + "\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for qid, text in {**QUERIES, "q-unjudged": "関係ない質問"}.items():
            fh.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    (root / "qrels").mkdir()
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t1" for q, d in GOLD.items()]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if candidates:
        (root / "candidates").mkdir()
        rows = ["query-id\tcorpus-id"] + [f"{q}\t{d}" for q in QUERIES for d in ("d1", "d2", "d3", "d4")]
        (root / "candidates" / "test.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.fixture
def tiny(tmp_path: Path) -> BeirDataset:
    return load_beir(_write_beir(tmp_path / "tiny"))


@pytest.fixture
def hw() -> MachineInfo:
    return machine_info(include_torch=False)


def char_overlap(query: str, passages: list[str]) -> list[float]:
    """Number of distinct query characters found in each passage."""
    return [float(len(set(query) & set(p))) for p in passages]


def test_load_beir_reads_candidates_and_drops_unjudged_queries(tiny: BeirDataset) -> None:
    assert set(tiny.queries) == set(QUERIES)
    assert tiny.candidates == {q: ["d1", "d2", "d3", "d4"] for q in QUERIES}
    assert tiny.passage("d1", with_title=True) == "富士山 富士山は日本一高い山で、標高は3776メートルです。"
    assert tiny.passage("d1") == CORPUS["d1"][1]
    with pytest.raises(KeyError, match="not in the corpus"):
        tiny.passage("nope")


def test_evaluate_rerank_with_character_overlap_gives_expected_ranks(tiny: BeirDataset, hw: MachineInfo) -> None:
    seen: list[tuple[str, list[str]]] = []

    def score(query: str, passages: list[str]) -> list[float]:
        seen.append((query, passages))
        return char_overlap(query, passages)

    result = evaluate_rerank(
        tiny.queries, tiny.candidates, tiny, score, metrics=["mrr@10", "hit@1", "ndcg@10"], hardware=hw
    )
    assert result.run is not None
    # q1: d1 (7 shared chars) > d4 (5) > d2 (3) > d3 (1).
    assert list(result.run["q1"]) == ["d1", "d4", "d2", "d3"]
    # q2: d1, d2 and d4 tie at 6: candidate order breaks the tie, so the gold d2 is second.
    assert list(result.run["q2"]) == ["d1", "d2", "d4", "d3"]
    assert next(iter(result.run["q3"])) == "d3"
    assert result.metrics["mrr@10"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert result.metrics["hit@1"] == pytest.approx(2 / 3)
    assert result.metrics["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1) / 3)
    assert result.per_query is not None
    assert result.per_query["q2"]["mrr@10"] == 0.5
    # passages are fed as "title text"; the warm-up call scores the first query once more
    assert seen[0] == seen[1]
    assert seen[0][1][0] == "富士山 " + CORPUS["d1"][1]
    assert len(seen) == 1 + len(QUERIES)
    assert result.timing.pairs == 12
    assert result.timing.queries == 3
    assert result.timing.pairs_per_second is not None
    assert result.timing.pairs_per_second > 0
    assert result.dataset.n_passages == 4
    assert result.dataset.mean_candidates == 4.0
    assert result.setting == "rerank"
    assert result.settings["with_title"] is True


def test_evaluate_rerank_without_titles_and_without_warmup(tiny: BeirDataset, hw: MachineInfo) -> None:
    seen: list[list[str]] = []

    def score(query: str, passages: list[str]) -> list[float]:
        seen.append(passages)
        return char_overlap(query, passages)

    evaluate_rerank(tiny.queries, tiny.candidates, tiny, score, with_title=False, warmup=False, hardware=hw)
    assert len(seen) == len(QUERIES)
    assert seen[0][0] == CORPUS["d1"][1]


def test_evaluate_rerank_accepts_numpy_scores(tiny: BeirDataset, hw: MachineInfo) -> None:
    np = pytest.importorskip("numpy")
    result = evaluate_rerank(
        tiny.queries,
        tiny.candidates,
        tiny,
        lambda q, ps: np.asarray(char_overlap(q, ps), dtype=np.float32),
        metrics=["mrr@10"],
        hardware=hw,
    )
    assert result.metrics["mrr@10"] == pytest.approx(2.5 / 3)
    assert result.run is not None
    assert all(type(s) is float for s in result.run["q1"].values())


def test_evaluate_rerank_query_without_candidates_counts_zero(
    tiny: BeirDataset, hw: MachineInfo, caplog: pytest.LogCaptureFixture
) -> None:
    cands = {"q1": ["d1", "d2"], "q2": ["d2"]}  # q3 has none
    with caplog.at_level(logging.WARNING):
        result = evaluate_rerank(tiny.queries, cands, tiny, char_overlap, metrics=["hit@10"], hardware=hw)
    assert result.metrics["hit@10"] == pytest.approx(2 / 3)
    assert "no candidates" in caplog.text
    assert result.timing.pairs == 3


@pytest.mark.parametrize(
    ("candidates", "score_fn", "match"),
    [
        ({"q1": ["d1", "zz"]}, char_overlap, "not in the corpus"),
        ({"q1": ["d1", "d1"]}, char_overlap, "repeat a passage id"),
        ({"q1": ["d1", "d2"]}, lambda q, ps: [1.0], "returned 1 scores for 2 passages"),
        ({"q1": ["d1", "d2"]}, lambda q, ps: [1.0, float("inf")], "non-finite"),
    ],
)
def test_evaluate_rerank_errors(tiny: BeirDataset, hw: MachineInfo, candidates: Any, score_fn: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        evaluate_rerank(tiny.queries, candidates, tiny, score_fn, hardware=hw)


def test_evaluate_rerank_needs_judged_queries(tiny: BeirDataset, hw: MachineInfo) -> None:
    with pytest.raises(ValueError, match="has judgements"):
        evaluate_rerank({"x": "質問"}, {"x": ["d1"]}, tiny, char_overlap, hardware=hw)
    with pytest.raises(ValueError, match="no queries"):
        evaluate_rerank({}, {}, tiny, char_overlap, hardware=hw)


def _overlap_search(ds: BeirDataset) -> Any:
    calls: list[int] = []

    def search(queries: list[str], k: int) -> list[list[tuple[str, float]]]:
        calls.append(len(queries))
        out = []
        for q in queries:
            scores = char_overlap(q, ds.passages(with_title=True))
            ranked = sorted(zip(ds.doc_ids, scores, strict=True), key=lambda t: -t[1])
            out.append(ranked[:k])
        return out

    search.calls = calls  # type: ignore[attr-defined]
    return search


def test_evaluate_retrieval_batches_and_records(tiny: BeirDataset, hw: MachineInfo) -> None:
    search = _overlap_search(tiny)
    result = evaluate_retrieval(tiny, search, k=3, metrics=["mrr@10", "recall@3"], batch_size=2, hardware=hw)
    assert search.calls == [1, 2, 1]  # warm-up, then batches of 2
    assert result.metrics["mrr@10"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert result.metrics["recall@3"] == 1.0
    assert result.run is not None
    assert all(len(r) == 3 for r in result.run.values())
    assert result.timing.pairs is None
    assert result.timing.queries == 3
    assert result.dataset.n_passages == 4
    assert result.settings == {"k": 3, "batch_size": 2}
    one_batch = evaluate_retrieval(tiny, _overlap_search(tiny), k=3, metrics=["mrr@10", "recall@3"], hardware=hw)
    assert one_batch.metrics == result.metrics


def test_evaluate_retrieval_on_a_query_subset(tiny: BeirDataset, hw: MachineInfo) -> None:
    subset = sample_queries(tiny.queries, 1)
    result = evaluate_retrieval(tiny, _overlap_search(tiny), k=4, queries=subset, metrics=["hit@1"], hardware=hw)
    assert result.metrics == {"hit@1": 1.0}
    assert result.dataset.n_queries == 1


@pytest.mark.parametrize(
    ("search", "error", "match"),
    [
        (lambda qs, k: [[(0, 1.0)] for _ in qs], TypeError, "dataset.doc_ids"),
        (lambda qs, k: [[("zz", 1.0)] for _ in qs], ValueError, "not in the corpus"),
        (lambda qs, k: [[("d1", 1.0), ("d1", 0.5)] for _ in qs], ValueError, "twice"),
        (lambda qs, k: [[("d2", 1.0), ("d1", 1.0), ("d3", 1.0)] for _ in qs], ValueError, "k=2"),
        (lambda qs, k: [], ValueError, "0 rankings"),
        (lambda qs, k: [["d1"] for _ in qs], TypeError, "pairs"),
    ],
)
def test_evaluate_retrieval_errors(tiny: BeirDataset, hw: MachineInfo, search: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        evaluate_retrieval(tiny, search, k=2, warmup=False, hardware=hw)


def test_sample_queries_is_seeded_and_keeps_order() -> None:
    queries = {str(i): f"q{i}" for i in range(20)}
    a = sample_queries(queries, 5, seed=3)
    assert a == sample_queries(queries, 5, seed=3)
    assert len(a) == 5
    assert list(a) == sorted(a, key=int)
    assert sample_queries(queries, 50) == queries
    with pytest.raises(ValueError, match="positive"):
        sample_queries(queries, 0)


# --- candidates from a first-stage run ---------------------------------------------------------------------------


def test_build_candidates_takes_top_depth_in_score_order() -> None:
    run = {"q1": {"a": 0.1, "b": 0.9, "c": 0.5, "d": 0.5}, "q2": {"x": 1.0}}
    assert build_candidates(run, depth=3) == {"q1": ["b", "c", "d"], "q2": ["x"]}


def test_build_candidates_ensure_gold_replaces_lowest_non_relevant() -> None:
    run = {"q1": {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6}, "q2": {"x": 1.0}}
    qrels = {"q1": {"b": 1, "g1": 2, "g2": 1}, "q2": {"y": 1}, "q3": {"z": 1}}
    cands = build_candidates(run, depth=3, qrels=qrels, ensure_gold=True)
    # q1 top-3 is a, b, c; b is relevant; g1 and g2 were missed: c and a make room, golds go last (by grade)
    assert cands["q1"] == ["b", "g1", "g2"]
    assert cands["q2"] == ["x", "y"]  # room left: appended
    assert "q3" not in cands  # only queries of the run get candidates
    assert build_candidates(run, depth=3)["q1"] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="needs qrels"):
        build_candidates(run, ensure_gold=True)


def test_first_stage_then_rerank_pipeline(tiny: BeirDataset, hw: MachineInfo) -> None:
    first = evaluate_retrieval(tiny, _overlap_search(tiny), k=4, metrics=["recall@2"], hardware=hw)
    assert first.run is not None
    cands = build_candidates(first.run, depth=2)
    assert all(len(c) == 2 for c in cands.values())
    reranked = evaluate_rerank(tiny.queries, cands, tiny, char_overlap, metrics=["recall@2"], hardware=hw)
    assert reranked.metrics["recall@2"] == pytest.approx(first.metrics["recall@2"])


# --- result files ------------------------------------------------------------------------------------------------


def _result(tiny: BeirDataset, hw: MachineInfo, name: str, scale: float = 1.0) -> EvalResult:
    return evaluate_rerank(
        tiny.queries,
        tiny.candidates,
        tiny,
        lambda q, ps: [scale * s for s in char_overlap(q, ps)],
        metrics=["ndcg@10", "mrr@10"],
        models={"reranker": name},
        settings={"note": "テスト"},
        hardware=hw,
    )


def test_json_round_trip(tiny: BeirDataset, hw: MachineInfo, tmp_path: Path) -> None:
    result = _result(tiny, hw, "overlap")
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


def test_result_file_errors(tiny: BeirDataset, hw: MachineInfo, tmp_path: Path) -> None:
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
    data = _result(tiny, hw, "x").to_dict()
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
        save_result(_result_with_settings(tiny, hw, {"bad": object()}), tmp_path / "x.json")


def _result_with_settings(tiny: BeirDataset, hw: MachineInfo, settings: dict[str, Any]) -> EvalResult:
    return evaluate_rerank(
        tiny.queries, tiny.candidates, tiny, char_overlap, metrics=["mrr@10"], settings=settings, hardware=hw
    )


# --- reports -----------------------------------------------------------------------------------------------------


def test_markdown_and_text_tables(tiny: BeirDataset, hw: MachineInfo, tmp_path: Path) -> None:
    a, b = _result(tiny, hw, "model-a"), _result(tiny, hw, "model-b")
    md = format_markdown([a, b], baseline="model-a", title="Rerank")
    lines = md.splitlines()
    assert lines[0] == "# Rerank"
    header = next(line for line in lines if line.startswith("| run"))
    assert "| ndcg@10 | mrr@10 |" in header
    assert "speed vs base" in header
    row_a = next(line for line in lines if line.startswith("| model-a |"))
    assert f"| {a.metrics['mrr@10']:.4f} |" in row_a
    assert "| 1.00x |" in row_a
    assert any(line.startswith("- Hardware: ") and hw.cpu_model in line for line in lines)
    assert any("4.0 candidates per query" in line for line in lines)
    assert any("reranker=model-b" in line for line in lines)
    path = write_markdown([a, b], tmp_path / "report" / "results.md")
    assert path.read_text(encoding="utf-8").startswith("# Evaluation results")
    text = format_table([a, b], ["mrr@10"])
    text_lines = text.splitlines()
    assert len(text_lines) == 4
    assert text_lines[0].split()[:5] == ["run", "setting", "dataset", "queries", "mrr@10"]
    assert text_lines[2].startswith("model-a")
    assert f"{a.metrics['mrr@10']:.4f}" in text_lines[2]
    with pytest.raises(ValueError, match="baseline 'nope'"):
        format_table([a], baseline="nope")
    with pytest.raises(ValueError, match="no run has metric"):
        format_table([a], ["recall@1000"])
    with pytest.raises(ValueError, match="no results"):
        format_markdown([])


def test_plot_writes_a_png(tiny: BeirDataset, hw: MachineInfo, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    results = [_result(tiny, hw, "model-a"), _result(tiny, hw, "model-b", scale=2.0)]
    path = plot_results(results, tmp_path / "plots" / "quality_speed.png", metric="mrr@10")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 2000
    with pytest.raises(ValueError, match="no run has metric 'recall@5'"):
        plot_results(results, tmp_path / "x.png", metric="recall@5")


def test_plot_tells_datasets_apart(tiny: BeirDataset, hw: MachineInfo, tmp_path: Path) -> None:
    """Two runs of the same name on two datasets: own colour/marker (legend) and the dataset in each label."""
    from dataclasses import replace

    from jp_rerank.evaluation.reports import plot_labels

    pytest.importorskip("matplotlib")
    first = _result(tiny, hw, "bm25-mecab")
    second = replace(first, dataset=replace(first.dataset, name="jqara"))
    names, labels = plot_labels([first, second])
    assert names == [first.dataset.name, "jqara"]
    assert labels == [f"bm25-mecab ({first.dataset.name})", "bm25-mecab (jqara)"]
    assert plot_labels([first])[1] == ["bm25-mecab"]
    assert plot_results([first, second], tmp_path / "two.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_rerank_with_rerank_fusion(tiny: BeirDataset, hw: MachineInfo) -> None:
    from jp_rerank.fusion import RerankFusion

    first_stage = {q: {d: float(len(d)) for d in tiny.candidates[q]} for q in tiny.queries}
    plain = evaluate_rerank(tiny.queries, tiny.candidates, tiny, char_overlap, metrics=["mrr@10"], hardware=hw)
    fused = evaluate_rerank(
        tiny.queries,
        tiny.candidates,
        tiny,
        char_overlap,
        metrics=["mrr@10"],
        hardware=hw,
        first_stage=first_stage,
        rerank_fusion="zscore",
    )
    assert fused.settings["rerank_fusion"] == "zscore"
    assert "rerank_fusion" not in plain.settings
    for qid, ranked in fused.run.items():
        docs = list(tiny.candidates[qid])
        scores = char_overlap(tiny.queries[qid], [tiny.passage(d, with_title=True) for d in docs])
        expected = RerankFusion("zscore").fuse(scores, [first_stage[qid][d] for d in docs])
        assert ranked == pytest.approx(dict(zip(docs, expected, strict=True)))


# --- hardware ----------------------------------------------------------------------------------------------------


def test_machine_info_round_trip_and_summary() -> None:
    info = machine_info(include_torch=False)
    assert info.logical_cores >= info.usable_cores >= 1
    assert info.torch is None
    assert set(info.cpu_features) <= set(CPU_FEATURES)
    assert MachineInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info
    assert f"{info.usable_cores} cores" in info.summary()
    with pytest.raises(ValueError, match="lacks"):
        MachineInfo.from_dict({"cpu_model": "x"})


def test_cpuinfo_parsing() -> None:
    from jp_rerank.hardware import _cpuinfo

    block = "model name\t: Test CPU\nflags\t\t: fpu avx2 avx512f amx_bf16\nphysical id\t: 0\ncore id\t: 0\n"
    text = f"processor\t: 0\n{block}\nprocessor\t: 1\n{block}"
    model, physical, flags = _cpuinfo(text)
    assert model == "Test CPU"
    assert physical == 1  # two hyperthreads on one core
    assert {"avx512f", "amx_bf16"} <= flags


# --- JQaRA / JaCWIR ----------------------------------------------------------------------------------------------


def _jqara_rows() -> list[dict[str, Any]]:
    rows = []
    for q in range(2):
        for p in range(5):
            rows.append(
                {
                    "q_id": f"Q{q}",
                    "question": f"質問{q}",
                    "passage_row_id": 100 + p,
                    "title": f"題{p}",
                    "text": f"本文{p}",
                    "label": int(p == q),
                    "answers": ["x"],
                }
            )
    return rows


def test_jqara_from_rows() -> None:
    ds = jqara_from_rows(_jqara_rows())
    assert ds.queries == {"Q0": "質問0", "Q1": "質問1"}
    assert ds.qrels["Q1"]["101"] == 1
    assert ds.qrels["Q1"]["100"] == 0
    assert sorted(ds.candidates["Q0"]) == ["100", "101", "102", "103", "104"]
    assert ds.candidates == jqara_from_rows(_jqara_rows()).candidates  # fixed order
    assert ds.passage("103", with_title=True) == "題3 本文3"
    assert len(ds.corpus) == 5  # passages shared across questions


def test_jqara_rows_conflicting_passage_text_and_missing_column() -> None:
    rows = _jqara_rows()
    rows[5] = {**rows[5], "text": "別の本文"}  # Q1's passage 100 differs from Q0's
    ds = jqara_from_rows(rows)
    assert ds.corpus["100@Q1"]["text"] == "別の本文"
    assert "100@Q1" in ds.candidates["Q1"]
    with pytest.raises(ValueError, match="missing column 'label'"):
        jqara_from_rows([{k: v for k, v in _jqara_rows()[0].items() if k != "label"}])
    with pytest.raises(ValueError, match="no rows"):
        jqara_from_rows([])


def test_jacwir_from_rows() -> None:
    collection = [
        {"doc_id": f"D{i}", "title": f"T{i}", "description": f"説明{i}", "link": "", "date": ""} for i in range(6)
    ]
    eval_rows = [{"query": "質問", "positive": "D1", "negatives": ["D2", "D3", "D1"]}]
    ds = jacwir_from_rows(collection, eval_rows)
    assert ds.qrels == {"0": {"D1": 1}}
    assert sorted(ds.candidates["0"]) == ["D1", "D2", "D3"]
    assert set(ds.corpus) == {"D1", "D2", "D3"}  # only candidates are kept
    assert ds.passage("D2", with_title=True) == "T2 説明2"
    with pytest.raises(ValueError, match="not in the collection"):
        jacwir_from_rows(collection, [{"query": "q", "positive": "D9", "negatives": []}])


def test_save_beir_round_trip_is_a_local_copy_for_jqara(tmp_path: Path) -> None:
    ds = jqara_from_rows(_jqara_rows())
    folder = save_beir(ds, tmp_path / "jqara", split="test")
    loaded = load_jqara("test", path=folder)
    assert loaded.candidates == ds.candidates
    assert loaded.qrels == ds.qrels
    assert loaded.corpus == ds.corpus
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_beir(ds, folder, split="test")
    save_beir(ds, folder, split="test", overwrite=True)
    jacwir = jacwir_from_rows(
        [{"doc_id": "A", "title": "t", "description": "d"}], [{"query": "q", "positive": "A", "negatives": []}]
    )
    assert load_jacwir(path=save_beir(jacwir, tmp_path / "jacwir", split="eval")).candidates == {"0": ["A"]}


def test_load_beir_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="folder not found"):
        load_beir(tmp_path / "nope")
    root = _write_beir(tmp_path / "broken")
    with (root / "candidates" / "test.tsv").open("a", encoding="utf-8") as fh:
        fh.write("q1\tghost\n")
    with pytest.raises(ValueError, match=r"'ghost' is not in corpus\.jsonl"):
        load_beir(root)
    (root / "qrels" / "test.tsv").unlink()
    with pytest.raises(FileNotFoundError, match=r"test\.tsv"):
        load_beir(root)


def test_hub_loaders_without_datasets_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(ImportError, match=r"'datasets' is required.*pip install \"jp-rerank\[eval\]\""):
        load_jqara()
    with pytest.raises(ImportError, match=r"'datasets' is required"):
        load_jacwir()


def test_hub_loaders_when_hub_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("Couldn't reach 'hotchpotch/JQaRA' on the Hub")

    fake = types.ModuleType("datasets")
    fake.load_dataset = unreachable  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", fake)  # stands in for the hub client only
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetUnavailableError, match=r"offline mode is on.*ConnectionError.*pass path="):
        load_jqara("dev")
    with pytest.raises(FileNotFoundError, match="local copy not found"):
        load_jqara(path="/nonexistent/jqara")


# --- with the real reranking engine ------------------------------------------------------------------------------


def test_evaluate_rerank_with_the_engine_reranker(tiny: BeirDataset, hw: MachineInfo, xlmr_ce_path: Path) -> None:
    from jp_rerank.rerank import Reranker

    reranker = Reranker(xlmr_ce_path, device="cpu")
    result = evaluate_rerank(
        tiny.queries,
        tiny.candidates,
        tiny,
        reranker.score,
        metrics=["ndcg@10", "mrr@10"],
        models={"reranker": "toy-xlmr"},
        hardware=hw,
    )
    assert result.run is not None
    direct = reranker.score(QUERIES["q1"], [tiny.passage(d, with_title=True) for d in tiny.candidates["q1"]])
    expected = sorted(zip(tiny.candidates["q1"], direct.tolist(), strict=True), key=lambda t: -t[1])
    assert list(result.run["q1"]) == [did for did, _ in expected]
    assert list(result.run["q1"].values()) == pytest.approx([score for _, score in expected])
    assert result.timing.pairs == 12
    assert 0.0 < result.metrics["mrr@10"] <= 1.0
    assert result.name == "toy-xlmr"
