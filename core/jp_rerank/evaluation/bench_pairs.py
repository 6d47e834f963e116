"""The pairs ``jp-rerank bench`` scores: BM25 candidates of sampled questions, and their token counts and work.

Example:
    >>> pairs = candidate_pairs(load_beir("path/to/jsquad-valid"), questions=2, candidates=100)  # doctest: +SKIP
    >>> pair_token_stats("path/to/model", pairs)["mean"]  # doctest: +SKIP
    131.4
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

import numpy as np

from jp_rerank.evaluation.timing import Pairs

if TYPE_CHECKING:
    from jp_rerank.evaluation.datasets import BeirDataset

__all__ = ["candidate_pairs", "gflop_per_pair", "pair_token_stats"]

logger = logging.getLogger(__name__)

_MAX_TOKENS = 512


def candidate_pairs(dataset: BeirDataset, questions: int, candidates: int, seed: int = 0) -> Pairs:
    """A seeded sample of questions, each with its BM25 (MeCab) top-``candidates`` passages (title + text).

    A question with fewer BM25 hits is topped up with seeded random passages (the note says how many).
    """
    from jp_rerank.lexical import BM25Index

    texts = dataset.passages(with_title=True)
    ids = list(dataset.doc_ids)
    index = BM25Index().index(texts, ids=ids)
    position = {doc_id: i for i, doc_id in enumerate(ids)}
    qids = random.Random(seed).sample(sorted(dataset.queries), min(questions, len(dataset.queries)))
    rng = random.Random(seed + 1)
    out_ids: list[list[str]] = []
    out_docs: list[list[str]] = []
    topped = 0
    for qid in qids:
        hits = [position[h.id] for h in index.search(dataset.queries[qid], k=candidates)]
        if len(hits) < min(candidates, len(texts)):
            chosen = set(hits)
            rest = [i for i in range(len(texts)) if i not in chosen]
            hits += rng.sample(rest, min(candidates, len(texts)) - len(hits))
            topped += 1
        out_ids.append([ids[i] for i in hits])
        out_docs.append([texts[i] for i in hits])
    note = f"BM25 (jp_rerank.lexical, MeCab) top-{candidates} per question over title + text"
    if topped:
        note += f"; {topped} question(s) had fewer BM25 hits and were topped up with seeded random passages"
    return Pairs(qids, [dataset.queries[q] for q in qids], out_ids, out_docs, note)


def _pair_lengths(tok: Any, pairs: Pairs) -> list[int]:
    """Each pair's token count (up to the 512 a model reads), without padding."""
    return [
        min(_MAX_TOKENS, len(ids))
        for q, docs in zip(pairs.queries, pairs.docs, strict=True)
        for ids in tok([q] * len(docs), docs, truncation=False, verbose=False)["input_ids"]
    ]


def gflop_per_pair(path: str, pairs: Pairs) -> float | None:
    """Mean useful GFLOP of one pair (:func:`jp_rerank.evaluation.flops.encoder_flops` over the real lengths)."""
    from transformers import AutoConfig, AutoTokenizer

    from jp_rerank.evaluation.flops import total_flops

    try:
        config = AutoConfig.from_pretrained(path)
        lengths = _pair_lengths(AutoTokenizer.from_pretrained(path), pairs)
        return round(total_flops(config, lengths) / len(lengths) / 1e9, 4)
    except (OSError, ValueError, AttributeError) as exc:  # a model whose config has no encoder shape
        logger.info("no FLOP count for %s: %s", path, exc)
        return None


def pair_token_stats(path: str, pairs: Pairs) -> dict[str, float]:
    """Pair lengths in the model's tokens (mean, median, p95, max), and the cost of padding per question.

    ``tutorial_padding_waste`` is how many times the real tokens a model computes when each question's pairs are
    padded together to their longest (the tutorial loop's one batch per question).
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    lengths = _pair_lengths(tok, pairs)
    padded = [
        min(_MAX_TOKENS, max(len(x) for x in tok([q] * len(d), d, verbose=False)["input_ids"]))
        for q, d in zip(pairs.queries, pairs.docs, strict=True)
    ]
    mean = float(np.mean(lengths))
    return {
        "mean": round(mean, 1),
        "median": float(np.median(lengths)),
        "p95": round(float(np.percentile(lengths, 95)), 1),
        "max": float(max(lengths)),
        "tutorial_padding_waste": round(float(np.mean(padded)) / mean, 2),
    }
