"""Rank fusion: hand-computed RRF and weighted-score values, ties, partial lists, errors."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jp_rerank.fusion import reciprocal_rank_fusion, weighted_score_fusion
from jp_rerank.hits import SearchHit


def _pairs(hits: list[SearchHit]) -> list[tuple[str, float]]:
    return [(h.id, h.score) for h in hits]


def test_rrf_hand_computed_default_k() -> None:
    hits = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]])
    # a: 1/61 + 1/62, c: 1/63 + 1/61, b: 1/62
    expected = [("a", 1 / 61 + 1 / 62), ("c", 1 / 63 + 1 / 61), ("b", 1 / 62)]
    assert [h.id for h in hits] == [e[0] for e in expected]
    for hit, (_, score) in zip(hits, expected, strict=True):
        assert hit.score == pytest.approx(score, rel=1e-12)
        assert type(hit.score) is float
    assert all(isinstance(h, SearchHit) and h.scores == {} for h in hits)  # plain ids carry no stage scores


def test_fused_hits_keep_each_rankings_score_text_and_metadata() -> None:
    dense = [SearchHit("a", 0.9, "本文A", {"src": "x"}), SearchHit("b", 0.5, "本文B")]
    bm25 = [SearchHit("b", 12.0, "本文B (bm25)"), SearchHit("c", 3.0, "本文C", {"src": "y"})]
    hits = reciprocal_rank_fusion([dense, bm25], names=["dense", "bm25"])
    by_id = {h.id: h for h in hits}
    assert by_id["b"].scores == {"dense": 0.5, "bm25": 12.0}
    assert by_id["a"].scores == {"dense": 0.9}  # absent from bm25: no score recorded there
    assert (by_id["a"].text, by_id["a"].metadata) == ("本文A", {"src": "x"})
    assert by_id["b"].text == "本文B"  # text from the first ranking holding the id
    assert by_id["c"].metadata == {"src": "y"}
    by_id["a"].metadata["src"] = "changed"
    assert dense[0].metadata == {"src": "x"}  # a copy
    with pytest.raises(ValueError, match="distinct non-empty strings"):
        reciprocal_rank_fusion([dense, bm25], names=["same", "same"])


def test_rrf_weights_and_k() -> None:
    hits = reciprocal_rank_fusion([["a", "b"], ["b", "a"]], k=0, weights=[2.0, 1.0])
    # a: 2/1 + 1/2 = 2.5 ; b: 2/2 + 1/1 = 2.0
    assert _pairs(hits) == [("a", 2.5), ("b", 2.0)]
    zero_weight = reciprocal_rank_fusion([["a"], ["b"]], k=1, weights=[0.0, 1.0])
    assert _pairs(zero_weight) == [("b", 0.5), ("a", 0.0)]  # still listed, with no credit


def test_rrf_ties_follow_ascending_id() -> None:
    # x and y both rank 1 in one list each: the engine's one tie rule orders them by id, whatever the list order
    assert [h.id for h in reciprocal_rank_fusion([["x"], ["y"]])] == ["x", "y"]
    assert [h.id for h in reciprocal_rank_fusion([["y"], ["x"]])] == ["x", "y"]
    # symmetric swap: a and b tie
    assert [h.id for h in reciprocal_rank_fusion([["b", "a"], ["a", "b"]])] == ["a", "b"]


def test_rrf_top_n_and_empty_inputs() -> None:
    assert [h.id for h in reciprocal_rank_fusion([["a", "b", "c"]], top_n=2)] == ["a", "b"]
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []
    assert [h.id for h in reciprocal_rank_fusion([[], ["q"]])] == ["q"]


def test_minmax_fusion_hand_computed() -> None:
    hits = weighted_score_fusion(
        [[("a", 10.0), ("b", 6.0), ("c", 2.0)], [("c", 0.9), ("d", 0.5), ("a", 0.1)]],
        weights=[1.0, 2.0],
    )
    # list 0: a 1.0, b 0.5, c 0.0 ; list 1: c 1.0, d 0.5, a 0.0 ; absent -> 0
    # a: 1 + 0 = 1 ; b: 0.5 ; c: 0 + 2 = 2 ; d: 2 * 0.5 = 1
    assert _pairs(hits) == [("c", 2.0), ("a", 1.0), ("d", 1.0), ("b", 0.5)]
    assert hits[0].scores == {"0": 2.0, "1": 0.9}
    assert hits[3].scores == {"0": 6.0}


def test_minmax_equal_scores_get_one() -> None:
    hits = weighted_score_fusion([[("a", 3.0), ("b", 3.0)], [("c", 1.0)]])
    assert _pairs(hits) == [("a", 1.0), ("b", 1.0), ("c", 1.0)]


def test_zscore_fusion_hand_computed() -> None:
    hits = weighted_score_fusion(
        [[("a", 3.0), ("b", 2.0), ("c", 1.0)], [("b", 5.0), ("d", 1.0)]], normalization="zscore"
    )
    # list 0: mean 2, std sqrt(2/3) -> a +1.2247, b 0, c -1.2247 ; absent gets -1.2247
    # list 1: mean 3, std 2 -> b +1, d -1 ; absent gets -1
    z = math.sqrt(1.5)
    expected = {"a": z - 1, "b": 0 + 1, "c": -z - 1, "d": -z - 1}
    assert [h.id for h in hits] == ["b", "a", "c", "d"]  # c and d tie: ascending id
    for h in hits:
        assert h.score == pytest.approx(expected[h.id], rel=1e-12)


def test_zscore_equal_scores_give_zero() -> None:
    hits = weighted_score_fusion([[("a", 2.0), ("b", 2.0)]], normalization="zscore")
    assert _pairs(hits) == [("a", 0.0), ("b", 0.0)]


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"rankings\[0\] lists id 'a' more than once"):
        reciprocal_rank_fusion([["a", "a"]])
    with pytest.raises(TypeError, match=r"rankings\[1\]\[0\] must be a str id"):
        reciprocal_rank_fusion([["a"], [1]])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="rankings must be a sequence"):
        reciprocal_rank_fusion("abc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be a finite number >= 0"):
        reciprocal_rank_fusion([["a"]], k=-1)
    with pytest.raises(ValueError, match="got 2 rankings but 1 weights"):
        reciprocal_rank_fusion([["a"], ["b"]], weights=[1.0])
    with pytest.raises(ValueError, match="at least one weight must be positive"):
        reciprocal_rank_fusion([["a"]], weights=[0.0])
    with pytest.raises(ValueError, match=r"weights\[0\] must be finite and >= 0"):
        reciprocal_rank_fusion([["a"]], weights=[-1.0])
    with pytest.raises(ValueError, match="top_n must be positive"):
        reciprocal_rank_fusion([["a"]], top_n=0)
    with pytest.raises(ValueError, match="non-finite score"):
        weighted_score_fusion([[("a", float("nan"))]])
    with pytest.raises(TypeError, match=r"must be an \(id, score\) pair or a hit"):
        weighted_score_fusion([["a"]])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="mixes plain ids with scored entries"):
        reciprocal_rank_fusion([["a", ("b", 1.0)]])
    with pytest.raises(ValueError, match="normalization must be"):
        weighted_score_fusion([[("a", 1.0)]], normalization="l2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lists id 'b' more than once"):
        weighted_score_fusion([[("b", 1.0), ("b", 0.5)]])


def test_inputs_are_not_mutated() -> None:
    rankings = [["a", "b"], ["b"]]
    weights = [1.0, 2.0]
    reciprocal_rank_fusion(rankings, weights=weights)
    assert rankings == [["a", "b"], ["b"]]
    assert weights == [1.0, 2.0]


_ids = st.lists(st.sampled_from("abcdefgh"), unique=True, max_size=8)


@given(st.lists(_ids, min_size=1, max_size=4))
def test_rrf_properties(rankings: list[list[str]]) -> None:
    hits = reciprocal_rank_fusion(rankings)
    assert sorted(h.id for h in hits) == sorted({i for r in rankings for i in r})  # every id once
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert hits == reciprocal_rank_fusion([list(r) for r in rankings])  # deterministic
    for h in hits:
        ranks = [r.index(h.id) + 1 for r in rankings if h.id in r]
        assert h.score == pytest.approx(sum(1 / (60 + rank) for rank in ranks))
    ties = [(a.id, b.id) for a, b in itertools.pairwise(hits) if a.score == b.score]
    assert all(x < y for x, y in ties)  # equal scores: ascending id


@given(st.lists(_ids, min_size=1, max_size=4), st.sampled_from(["minmax", "zscore"]))
def test_weighted_properties(rankings: list[list[str]], normalization: str) -> None:
    scored = [[(doc_id, float(len(r) - j) * 1.5) for j, doc_id in enumerate(r)] for r in rankings]
    hits = weighted_score_fusion(scored, normalization=normalization)  # type: ignore[arg-type]
    assert sorted(h.id for h in hits) == sorted({i for r in rankings for i in r})
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    if normalization == "minmax":
        assert all(0.0 <= s <= len(rankings) for s in scores)


@pytest.mark.parametrize("normalization", ["minmax", "zscore"])
def test_scores_near_the_float_limit_neither_overflow_nor_reverse_the_ranking(normalization: str) -> None:
    """First-stage scores of 1e300-1e308 (a broken or adversarial retriever) rank as their order says."""
    huge = [("a", 1.7e308), ("b", 1e300), ("c", -1.7e308)]
    small = [("a", 3.0), ("b", 2.0), ("c", 1.0)]
    fused = weighted_score_fusion([huge, small], normalization=normalization)  # type: ignore[arg-type]
    assert [h.id for h in fused] == ["a", "b", "c"]
    assert all(math.isfinite(h.score) for h in fused)
    scaled = weighted_score_fusion([[(i, s / 1e300) for i, s in huge], small], normalization=normalization)  # type: ignore[arg-type]
    assert [round(h.score, 9) for h in fused] == [round(h.score, 9) for h in scaled]  # scale does not matter


def test_rerank_fusion_with_huge_first_stage_scores_ranks_the_best_first() -> None:
    from jp_rerank.fusion import RerankFusion

    for method in ("minmax", "zscore"):
        ranked = RerankFusion(method, 0.5).rank([0.9, 0.1, 0.5], [1e308, -1e308, 1e300])  # type: ignore[arg-type]
        assert ranked[0].index == 0
        assert ranked[-1].index == 1
