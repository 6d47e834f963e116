"""The two settings (rerank given candidates, full retrieval), query samples and candidate lists."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytest

from jp_rerank.evaluation import build_candidates, evaluate_rerank, evaluate_retrieval, sample_queries
from jp_rerank.evaluation.datasets import BeirDataset
from jp_rerank.hardware import MachineInfo

pytest.importorskip("ranx")


def char_overlap(query: str, passages: list[str]) -> list[float]:
    """Number of distinct query characters found in each passage."""
    return [float(len(set(query) & set(p))) for p in passages]


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
    assert seen[0][1][0] == "富士山 " + tiny.passage("d1")
    assert len(seen) == 1 + len(tiny.queries)
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
    assert len(seen) == len(tiny.queries)
    assert seen[0][0] == tiny.passage("d1")


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
    direct = reranker.score(tiny.queries["q1"], [tiny.passage(d, with_title=True) for d in tiny.candidates["q1"]])
    expected = sorted(zip(tiny.candidates["q1"], direct.tolist(), strict=True), key=lambda t: -t[1])
    assert list(result.run["q1"]) == [did for did, _ in expected]
    assert list(result.run["q1"].values()) == pytest.approx([score for _, score in expected])
    assert result.timing.pairs == 12
    assert 0.0 < result.metrics["mrr@10"] <= 1.0
    assert result.name == "toy-xlmr"
