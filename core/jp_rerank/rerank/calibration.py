"""Japanese calibration inputs for int8 quantisation, encoded exactly as the reranker encodes its own inputs.

Static int8 fixes each activation's range ahead of time, so the ranges must come from inputs like the real ones:
Japanese questions paired with Japanese passages, tokenised, truncated and batched by the reranker's own pair
template and token budget. They are built from the bundled demo corpus (:mod:`jp_rerank.data`): every question
paired with a seeded sample of passages (the relevant ones and others), so both high and low scores occur.

Example:
    >>> from jp_rerank.data import load_demo_queries
    >>> pairs = calibration_pairs(per_question=16, seed=0)
    >>> len(pairs) == len(load_demo_queries()), {len(passages) for _, passages in pairs}
    (True, {16})
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np

from jp_rerank.rerank.backends import run_batches
from jp_rerank.rerank.pairs import EncodedPair

__all__ = ["calibration_batches", "calibration_pairs"]


def calibration_pairs(*, per_question: int = 16, seed: int = 0) -> list[tuple[str, list[str]]]:
    """``(question, passages)`` from the bundled corpus: each question with its relevant passages and others."""
    from jp_rerank.data import load_demo_corpus, load_demo_queries

    corpus = {d["id"]: f"{d['title']} {d['text']}" for d in load_demo_corpus()}
    rng = random.Random(seed)
    out: list[tuple[str, list[str]]] = []
    for query in load_demo_queries():
        relevant = [corpus[i] for i in query["relevant"] if i in corpus]  # type: ignore[attr-defined]
        others = [t for t in corpus.values() if t not in relevant]
        out.append((str(query["text"]), relevant + rng.sample(others, max(0, per_question - len(relevant)))))
    return out


def calibration_batches(
    encode: Callable[[str, Sequence[str]], list[EncodedPair]],
    pad_id: int,
    *,
    token_budget: int,
    batch_size: int = 32,
    seed: int = 0,
) -> list[dict[str, np.ndarray]]:
    """Padded model inputs for quantisation ranges, batched as the reranker batches them (:func:`run_batches`).

    Args:
        encode: Encodes one question with its passages into model inputs (the reranker's own encoder).
        pad_id: The tokenizer's padding id.
        token_budget: Most tokens per batch (the reranker's budget).
        batch_size: Most pairs per batch.
        seed: Seed of the passage sample.
    """
    recorder = _Recorder()
    for question, passages in calibration_pairs(seed=seed):
        run_batches(
            recorder, encode(question, passages), pad_id=pad_id, batch_size=batch_size, token_budget=token_budget
        )
    return recorder.batches


class _Recorder:
    """A backend that keeps the padded batches it is given (and scores them 0)."""

    name = "calibration"

    def __init__(self) -> None:
        self.batches: list[dict[str, np.ndarray]] = []

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        self.batches.append(inputs)
        return np.zeros((len(inputs["input_ids"]), 1), dtype=np.float32)
