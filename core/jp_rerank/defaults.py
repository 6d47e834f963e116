"""Default values shared by the engine and the adapters, defined once (model defaults live in :mod:`.presets`).

Example:
    >>> from jp_rerank.defaults import DEFAULT_FIRST_K, DEFAULT_TOP_N
    >>> DEFAULT_FIRST_K, DEFAULT_TOP_N
    (100, 3)
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_BM25_TOKENIZER",
    "DEFAULT_CHUNK_OVERLAP",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_FIRST_K",
    "DEFAULT_K",
    "DEFAULT_RETRIEVER_TOP_N",
    "DEFAULT_TOP_N",
]

DEFAULT_K = 10
"""Hits a ``search`` returns when ``k`` is not given (every first stage and vector index)."""

DEFAULT_FIRST_K = 100
"""First-stage candidates handed to the reranker (the published rerankers' evaluation depth)."""

DEFAULT_TOP_N = 3
"""Documents a reranking step (LangChain compressor, LlamaIndex postprocessor) keeps."""

DEFAULT_RETRIEVER_TOP_N = 4
"""Documents a retriever returns per query (LangChain's ``k`` default for retrievers and vector stores)."""

DEFAULT_BM25_TOKENIZER = "mecab"
"""BM25 tokenizer: MeCab lemmas without particles, the best MeCab set-up on JSQuAD (nDCG@10 0.945 vs 0.936 for
surface forms with bm25s defaults). ``"char1-2"`` scored higher there (0.952); see ``benchmarks/bm25_quality.py``."""

MINING_BM25_TOKENIZER = "char1-2"
"""BM25 tokenizer that mines hard negatives for ``jp-rerank train``: character uni+bigrams, the strongest BM25 on
JSQuAD (nDCG@10 0.952), so the negatives are the near misses a strong first stage hands the reranker, and no
dictionary is needed on the training machine. Searching uses :data:`DEFAULT_BM25_TOKENIZER` (lemmas, readable
matches); mining only needs the candidates."""

DEFAULT_CHUNK_SIZE = 400
"""Most characters per chunk when splitting documents (:func:`jp_rerank.text.chunk_text`)."""

DEFAULT_CHUNK_OVERLAP = 50
"""Characters shared by consecutive windows of a sentence longer than a chunk."""
