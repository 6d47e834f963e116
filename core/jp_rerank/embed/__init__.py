"""Embedders: dense (transformer and StaticEmbedding) and sparse."""

from __future__ import annotations

from jp_rerank.embed.dense import Embedder
from jp_rerank.embed.sparse import SparseEmbedder, SparseIndex

__all__ = ["Embedder", "SparseEmbedder", "SparseIndex"]
