"""Two-stage retrieval: dense / sparse / BM25 first stages (fused when several) → cross-encoder rerank.

This is the layer where the engine's pieces meet: :class:`DenseRetriever` joins an embedder to a vector index, and
:class:`TwoStageRetriever` runs any :class:`~jp_rerank.hits.FirstStage` objects (it, :class:`~jp_rerank.BM25Index`,
:class:`~jp_rerank.index.SparseIndex`, or your own), fuses them and reranks.

Example:
    >>> from jp_rerank.pipeline import TwoStageRetriever
    >>> retriever = TwoStageRetriever.from_texts(["富士山は日本一高い山です。", "京都には寺が多い。"], top_n=1)
    >>> retriever.retrieve("京都の寺")[0].text
    '京都には寺が多い。'
"""

from __future__ import annotations

from jp_rerank.hits import FirstStage
from jp_rerank.pipeline.dense import DenseRetriever
from jp_rerank.pipeline.retriever import FusionMethod, TwoStageRetriever

__all__ = ["DenseRetriever", "FirstStage", "FusionMethod", "TwoStageRetriever"]
