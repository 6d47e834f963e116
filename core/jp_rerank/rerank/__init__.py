"""Cross-encoder reranking."""

from __future__ import annotations

from jp_rerank.rerank.cross_encoder import Reranker
from jp_rerank.rerank.results import RerankResult, rank_scores

__all__ = ["RerankResult", "Reranker", "rank_scores"]
