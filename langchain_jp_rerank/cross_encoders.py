"""LangChain ``BaseCrossEncoder`` over :class:`jp_rerank.Reranker`, a drop-in for ``CrossEncoderReranker``."""

from __future__ import annotations

from typing import Any

from langchain_core.cross_encoders import BaseCrossEncoder
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from jp_rerank._validate import check_texts
from jp_rerank.presets import DEFAULT_RERANKER
from jp_rerank.rerank import Reranker
from langchain_jp_rerank._common import as_model_name, check_engine

__all__ = ["JapaneseCrossEncoder"]


class JapaneseCrossEncoder(BaseModel, BaseCrossEncoder):
    """Score (query, passage) pairs with a Japanese cross-encoder.

    Existing ``CrossEncoderReranker`` code switches by replacing its ``model=`` argument, e.g.
    ``HuggingFaceCrossEncoder(model_name=...)`` with ``JapaneseCrossEncoder(model="xsmall")``. Pairs sharing a
    query are scored together in one engine call (length-sorted batches); scores come back in input order as
    Python floats.

    Pass ``reranker=`` to share one loaded :class:`jp_rerank.Reranker` between adapters.

    Example:
        >>> from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
        >>> encoder = JapaneseCrossEncoder(model="xsmall")
        >>> compressor = CrossEncoderReranker(model=encoder, top_n=3)
        >>> encoder.score([("富士山の高さは？", "富士山は3776mです。")])  # doctest: +SKIP
        [0.98...]
    """

    model: str = Field(default=DEFAULT_RERANKER, frozen=True)
    """Alias from :mod:`jp_rerank.presets`, hub id or local directory of a cross-encoder."""
    device: str | None = Field(default=None, frozen=True)
    """``"cpu"``, ``"cuda"``...; ``None`` picks CUDA when available."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict, frozen=True)
    """Further :class:`jp_rerank.Reranker` arguments (``max_length``, ``overflow``, ``batch_size``...)."""

    model_config = ConfigDict(extra="forbid")

    _reranker: Reranker = PrivateAttr()

    def __init__(self, *, reranker: Reranker | None = None, **data: Any) -> None:
        if reranker is not None:
            check_engine(reranker, Reranker, arg="reranker", data=data)
        super().__init__(**data)
        self._reranker = (
            reranker if reranker is not None else Reranker(self.model, device=self.device, **self.model_kwargs)
        )

    @field_validator("model", mode="before")
    @classmethod
    def _path_to_str(cls, value: object) -> object:
        return as_model_name(value)

    @property
    def reranker(self) -> Reranker:
        """The engine; pass it to other adapters to share the loaded model."""
        return self._reranker

    def score(self, text_pairs: list[tuple[str, str]]) -> list[float]:
        """Score each ``(query, passage)`` pair.

        Args:
            text_pairs: Pairs in any order; queries may differ between pairs.

        Returns:
            One float per pair, in input order (higher is more relevant).

        Raises:
            TypeError: An item that is not a pair, or a non-string text.
            ValueError: An empty or whitespace-only query.
        """
        positions: dict[str, list[int]] = {}
        passages: dict[str, list[str]] = {}
        for i, pair in enumerate(text_pairs):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise TypeError(f"text_pairs[{i}] must be a (query, passage) pair, got {pair!r:.40}")
            query, passage = check_texts(pair, name=f"text_pairs[{i}]")
            positions.setdefault(query, []).append(i)
            passages.setdefault(query, []).append(passage)
        if not positions:
            return []
        scores = self._reranker.score_many(list(passages), list(passages.values()))
        out = [0.0] * sum(len(p) for p in positions.values())
        for idx, values in zip(positions.values(), scores, strict=True):
            for i, value in zip(idx, values.tolist(), strict=True):
                out[i] = value
        return out
