"""Cross-encoder reranking."""

from __future__ import annotations

from jp_rerank.hits import RerankResult, rank_scores
from jp_rerank.rerank.cross_encoder import Reranker

__all__ = ["RerankResult", "Reranker", "rank_scores"]
