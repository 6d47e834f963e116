"""Embedders: dense (transformer and StaticEmbedding) and sparse (SPLADE)."""

from __future__ import annotations

from jp_rerank.embed.dense import Embedder
from jp_rerank.embed.sparse import SparseEmbedder

__all__ = ["Embedder", "SparseEmbedder"]
