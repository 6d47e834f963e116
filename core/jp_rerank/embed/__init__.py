"""Embedders: dense (transformer and StaticEmbedding) and sparse."""

from __future__ import annotations

from jp_rerank.embed.dense import Embedder

__all__ = ["Embedder"]
