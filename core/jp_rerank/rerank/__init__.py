"""Cross-encoder reranking."""

from __future__ import annotations

from jp_rerank.hits import FusedRerankResult, RerankResult, rank_scores
from jp_rerank.rerank.cross_encoder import Reranker

__all__ = ["FusedRerankResult", "RerankResult", "Reranker", "rank_scores"]
