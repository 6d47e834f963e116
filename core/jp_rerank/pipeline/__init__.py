"""Two-stage retrieval: dense / sparse / BM25 first stages (fused when several) → cross-encoder rerank.

Example:
    >>> from jp_rerank.pipeline import TwoStageRetriever
    >>> retriever = TwoStageRetriever.from_texts(["富士山は日本一高い山です。", "京都には寺が多い。"], top_n=1)
    >>> retriever.retrieve("京都の寺")[0].text
    '京都には寺が多い。'
"""

from __future__ import annotations

from jp_rerank.pipeline.retriever import FusionMethod, RetrievedPassage, TwoStageRetriever
from jp_rerank.pipeline.stages import BM25Stage, Candidate, DenseStage, FirstStage, SparseStage, StageHit

__all__ = [
    "BM25Stage",
    "Candidate",
    "DenseStage",
    "FirstStage",
    "FusionMethod",
    "RetrievedPassage",
    "SparseStage",
    "StageHit",
    "TwoStageRetriever",
]
