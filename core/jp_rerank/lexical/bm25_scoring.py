"""BM25 scoring: the weight matrix built by ``bm25s``, and queries scored against it in vectorised blocks.

``bm25s`` computes the BM25 weight of every (document, token) pair once, at indexing time, into a sparse
column-per-token matrix. A query's scores are then the sum of its tokens' columns; this module sums the
columns of many queries in one vectorised pass and ranks the documents itself so that ties break
deterministically (lower document index first) and only matching documents are returned.

Scoring (``method="lucene"``, the default, as in Lucene and ``bm25s``) for a query ``q`` and document ``d``::

    score(q, d) = Σ_{t in q} idf(t) · tf(t, d) / (tf(t, d) + k1 · (1 - b + b · |d| / avgdl))
    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

A token repeated in the query counts once per occurrence. ``"robertson"`` uses the idf
``ln((N - df + 0.5) / (df + 0.5))`` clipped at 0; ``"atire"`` uses ``ln(N / df)`` and multiplies the
term-frequency part by ``k1 + 1``. The parity test in ``tests/core/test_lexical.py`` recomputes these formulas.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import numpy as np

from jp_rerank.hits import SearchHit, rank
from jp_rerank.lexical.bm25_store import BM25State, empty_state

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

__all__ = ["BM25Method", "bm25_weights", "score_block", "search_tokens"]

BM25Method = Literal["lucene", "robertson", "atire"]
"""BM25 variants (see the module docs)."""

# Postings summed per sparse product: bounds the memory of one block of queries (about 16 bytes each).
_BLOCK_POSTINGS = 1 << 24

_bm25s_quieted = False


def _quiet_bm25s() -> None:
    """Undo bm25s's ``logging.getLogger("bm25s").setLevel(DEBUG)`` (done when it is imported), once per process.

    With that level, bm25s's debug lines pass its logger and reach the application's handlers whatever level the
    application chose; ``NOTSET`` makes the logger follow the application's configuration again.
    """
    global _bm25s_quieted
    if _bm25s_quieted:
        return
    _bm25s_quieted = True
    bm25s_logger = logging.getLogger("bm25s")
    if bm25s_logger.level == logging.DEBUG:
        bm25s_logger.setLevel(logging.NOTSET)


def bm25_weights(
    vocab: dict[str, int], doc_offsets: np.ndarray, doc_tokens: np.ndarray, *, k1: float, b: float, method: BM25Method
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compute the BM25 weight matrix (CSC arrays ``data``, ``indices``, ``indptr``) with bm25s.

    Args:
        vocab: Token to token id.
        doc_offsets: Document ``i``'s token ids are ``doc_tokens[doc_offsets[i]:doc_offsets[i + 1]]``.
        doc_tokens: Token ids of every document, concatenated.
        k1: Term-frequency saturation.
        b: Length normalisation.
        method: BM25 variant.
    """
    if not vocab:
        empty = empty_state()
        return empty.data, empty.indices, empty.indptr
    import bm25s

    _quiet_bm25s()
    corpus = [doc.tolist() for doc in np.split(doc_tokens, doc_offsets[1:-1])]
    model = bm25s.BM25(k1=k1, b=b, method=method)
    # A copy: bm25s may add entries to the vocabulary it is given.
    model.index((corpus, dict(vocab)), create_empty_token=False, show_progress=False)
    scores = model.scores
    indptr = np.asarray(scores["indptr"], dtype=np.int64)
    if len(indptr) != len(vocab) + 1:
        raise RuntimeError(f"bm25s returned {len(indptr) - 1} token columns for {len(vocab)} tokens")
    return (
        np.asarray(scores["data"], dtype=np.float32),
        np.asarray(scores["indices"], dtype=np.int32),
        indptr,
    )


def score_block(state: BM25State, token_ids: list[list[int]]) -> csr_matrix:
    """Sparse ``(len(token_ids), n_docs)`` float64 scores: each row sums the weights of a query's tokens."""
    import scipy.sparse

    weights = scipy.sparse.csr_matrix(
        (state.data, state.indices, state.indptr), shape=(len(state.vocab), len(state.ids))
    )
    rows = np.repeat(np.arange(len(token_ids), dtype=np.int64), [len(ids) for ids in token_ids])
    cols = np.fromiter((t for ids in token_ids for t in ids), dtype=np.int64, count=len(rows))
    # Building from coordinates sums repeats, so a token repeated in the query counts once per occurrence.
    queries = scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(token_ids), len(state.vocab)))
    return (queries @ weights).tocsr()


def search_tokens(state: BM25State, token_ids: list[list[int]], k: int) -> list[list[SearchHit]]:
    """The ``k`` best matching documents of each query given by its token ids, scored in blocks of queries.

    Blocks of queries whose postings add up to at most ``_BLOCK_POSTINGS`` bound the memory of one product.
    Hits are sorted by score descending, ties by ascending id; documents scoring 0 are left out.
    """
    posting_counts = np.diff(state.indptr)
    blocks: list[tuple[int, int]] = []
    start, volume = 0, 0
    for i, ids in enumerate(token_ids):
        cost = int(posting_counts[ids].sum()) if ids else 0
        if i > start and volume + cost > _BLOCK_POSTINGS:
            blocks.append((start, i))
            start, volume = i, 0
        volume += cost
    blocks.append((start, len(token_ids)))
    return [hits for lo, hi in blocks for hits in _rank_block(state, token_ids[lo:hi], k)]


def _rank_block(state: BM25State, token_ids: list[list[int]], k: int) -> list[list[SearchHit]]:
    scores = score_block(state, token_ids)
    ids = state.ids
    out: list[list[SearchHit]] = []
    for row in range(len(token_ids)):
        lo, hi = scores.indptr[row], scores.indptr[row + 1]
        docs, values = scores.indices[lo:hi], scores.data[lo:hi]
        best = rank(values, k, ids=_ids_of(ids, docs), min_score=0.0, strict=True)
        out.append([_hit(state, int(docs[r]), float(values[r])) for r in best])
    return out


def _ids_of(ids: tuple[str, ...], docs: np.ndarray) -> Callable[[int], str]:
    """The id of the ``r``-th candidate (candidates are the documents ``docs``), for tie-breaks."""
    return lambda r: ids[docs[r]]


def _hit(state: BM25State, doc: int, score: float) -> SearchHit:
    return SearchHit(state.ids[doc], score, state.texts[doc], dict(state.metadatas[doc]))
