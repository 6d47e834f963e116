"""Combining the reranker's score with the first stage's: hand-computed values, ties, NaN, missing scores."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from jp_rerank import Reranker, TwoStageRetriever
from jp_rerank.fusion import RerankFusion

RERANK = [0.9, 0.1, 0.5, 0.3]
FIRST = [2.0, 8.0, 4.0, 6.0]


def test_none_is_rerank_only() -> None:
    assert RerankFusion().fuse(RERANK, FIRST) == RERANK
    assert RerankFusion.of(None).method == "none"
    assert not RerankFusion.of("none").active


def test_zscore_hand_computed() -> None:
    # rerank: mean .45, population std sqrt(0.0875); first stage: mean 5, std sqrt(5)
    zr = [(s - 0.45) / math.sqrt(0.0875) for s in RERANK]
    zf = [(s - 5.0) / math.sqrt(5.0) for s in FIRST]
    for weight in (0.0, 0.3, 0.5, 1.0):
        got = RerankFusion("zscore", weight).fuse(RERANK, FIRST)
        expected = [weight * a + (1 - weight) * b for a, b in zip(zr, zf, strict=True)]
        assert got == pytest.approx(expected, rel=1e-12)


def test_minmax_and_rrf_hand_computed() -> None:
    mr = [1.0, 0.0, 0.5, 0.25]
    mf = [0.0, 1.0, 1 / 3, 2 / 3]
    got = RerankFusion("minmax", 0.6).fuse(RERANK, FIRST)
    assert got == pytest.approx([0.6 * a + 0.4 * b for a, b in zip(mr, mf, strict=True)], rel=1e-12)
    # ranks: rerank 1,4,2,3; first stage 4,1,3,2
    rr, rf = [1, 4, 2, 3], [4, 1, 3, 2]
    got = RerankFusion("rrf", 0.5, rrf_k=10).fuse(RERANK, FIRST)
    assert got == pytest.approx([0.5 / (10 + a) + 0.5 / (10 + b) for a, b in zip(rr, rf, strict=True)])


def test_missing_first_stage_scores() -> None:
    # no candidate has one: the reranker's own score
    assert RerankFusion("zscore").fuse(RERANK, [None] * 4) == RERANK
    # some do not: they get the lowest z-score of those that do (ranked below every scored one)
    first = [2.0, None, 4.0, float("nan")]
    zr = [(s - 0.45) / math.sqrt(0.0875) for s in RERANK]
    zf_present = {0: -1.0, 2: 1.0}  # two values: z = -1 and +1
    expected = [0.5 * zr[i] + 0.5 * zf_present.get(i, -1.0) for i in range(4)]
    assert RerankFusion("zscore").fuse(RERANK, first) == pytest.approx(expected, rel=1e-12)
    assert RerankFusion("minmax", 0.5).fuse(RERANK, first)[1] == pytest.approx(0.5 * 0.0 + 0.5 * 0.0)


def test_nan_rerank_scores_rank_last_and_single_candidates_and_ties() -> None:
    got = RerankFusion("zscore").fuse([0.9, math.nan, 0.5], [1.0, 9.0, 2.0])
    assert math.isnan(got[1])
    assert all(math.isfinite(x) for x in (got[0], got[2]))
    assert RerankFusion("zscore").fuse([0.7], [3.0]) == [0.0]  # one candidate: both z-scores are 0
    assert RerankFusion("minmax").fuse([0.7], [3.0]) == [1.0]
    tied = RerankFusion("zscore").fuse([0.5, 0.5, 0.5], [1.0, 1.0, 1.0])
    assert tied == [0.0, 0.0, 0.0]
    assert RerankFusion("zscore").fuse([], []) == []


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="must be 'none', 'rrf', 'zscore' or 'minmax'"):
        RerankFusion("max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"weight must be a number in \[0, 1\]"):
        RerankFusion("zscore", 1.5)
    with pytest.raises(ValueError, match="rrf_k must be"):
        RerankFusion("rrf", rrf_k=-1)
    with pytest.raises(TypeError, match="method name or a RerankFusion"):
        RerankFusion.of(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="got 2 reranker scores but 1"):
        RerankFusion("zscore").fuse([0.1, 0.2], [1.0])


def test_pipeline_ranks_by_the_combined_score(reranker: Reranker, demo_corpus: list[dict[str, str]]) -> None:
    texts = [d["text"] for d in demo_corpus]
    ids = [d["id"] for d in demo_corpus]
    plain = TwoStageRetriever.from_texts(texts, ids=ids, reranker=reranker, first_k=10, top_n=10)
    fused = TwoStageRetriever.from_texts(
        texts, ids=ids, reranker=reranker, first_k=10, top_n=10, rerank_fusion=RerankFusion("zscore", 0.5)
    )
    query = "富士山の高さは？"
    base = plain.retrieve(query)
    got = fused.retrieve(query)
    assert {h.id for h in got} == {h.id for h in base}  # the same candidates
    rerank = [h.scores["rerank"] for h in base]
    first = [h.scores["first_stage"] for h in base]
    expected = RerankFusion("zscore", 0.5).fuse(rerank, first)
    by_id = {h.id: e for h, e in zip(base, expected, strict=True)}
    assert [h.score for h in got] == pytest.approx([by_id[h.id] for h in got])
    assert [h.score for h in got] == sorted((h.score for h in got), reverse=True)
    assert all(h.rerank_score == next(b.rerank_score for b in base if b.id == h.id) for h in got)  # raw kept
    weight_one = TwoStageRetriever.from_texts(
        texts, ids=ids, reranker=reranker, first_k=10, top_n=10, rerank_fusion=RerankFusion("zscore", 1.0)
    )
    assert [h.id for h in weight_one.retrieve(query)] == [h.id for h in base]  # weight 1: the reranker's order


def test_eval_command_takes_the_same_setting(
    tmp_path: Path,
    xlmr_ce_path: Path,
    demo_corpus: list[dict[str, str]],
    demo_queries: list[dict[str, object]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from jp_rerank.cli import EXIT_OK, main
    from jp_rerank.evaluation import load_result

    root = tmp_path / "demo"
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for d in demo_corpus:
            fh.write(json.dumps({"_id": d["id"], "title": d["title"], "text": d["text"]}, ensure_ascii=False) + "\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for q in demo_queries:
            fh.write(json.dumps({"_id": q["id"], "text": q["text"]}, ensure_ascii=False) + "\n")
    rows = [f"{q['id']}\t{r}\t1" for q in demo_queries for r in q["relevant"]]  # type: ignore[attr-defined]
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n", encoding="utf-8")
    for setting in ("rerank", "retrieval"):
        out = tmp_path / f"{setting}.json"
        args = ["eval", str(root), "-m", str(xlmr_ce_path), "--setting", setting, "--first-k", "10"]
        assert main([*args, "--rerank-fusion", "zscore", "--fusion-weight", "0.3", "-o", str(out)]) == EXIT_OK
        saved = load_result(out)
        assert saved.settings["rerank_fusion"] == "zscore"
        assert saved.settings["fusion_weight"] == 0.3
    with pytest.raises(SystemExit):
        main(["eval", str(root), "--rerank-fusion", "max"])
    capsys.readouterr()
