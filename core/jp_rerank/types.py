"""Type aliases shared across the engine (one definition each).

Example:
    >>> from jp_rerank.types import Side
    >>> from typing import get_args
    >>> get_args(Side)
    ('query', 'document')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeAlias

__all__ = ["Metadata", "MetadataValue", "Side", "Where"]

Side: TypeAlias = Literal["query", "document"]
"""Which side of retrieval a text is on: it decides the prompt (``query: `` / ``passage: ``, ``検索クエリ: ``...)."""

MetadataValue: TypeAlias = str | int | float | bool
"""A storable metadata value: the subset every index backend (Chroma included) keeps losslessly."""

Metadata: TypeAlias = dict[str, MetadataValue]
"""Flat metadata of one passage: non-empty ``str`` keys to :data:`MetadataValue`."""

Where: TypeAlias = Mapping[str, MetadataValue]
"""An equality filter on metadata: every listed key must equal the given value."""
