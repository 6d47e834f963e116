"""LangChain ``BaseCrossEncoder`` over :class:`jp_rerank.Reranker`, a drop-in for ``CrossEncoderReranker``."""

from __future__ import annotations

from typing import ClassVar

from langchain_core.cross_encoders import BaseCrossEncoder
from pydantic import Field, field_validator

from jp_rerank.presets import DEFAULT_RERANKER
from langchain_jp_rerank._common import RerankerAdapter, as_model_name

__all__ = ["JapaneseCrossEncoder"]


class JapaneseCrossEncoder(RerankerAdapter, BaseCrossEncoder):
    """Score (query, passage) pairs with a Japanese cross-encoder.

    A drop-in for ``HuggingFaceCrossEncoder`` in ``CrossEncoderReranker``: existing code switches by changing the
    class name, e.g. ``HuggingFaceCrossEncoder(model_name="...", model_kwargs={"device": "cpu"})`` becomes
    ``JapaneseCrossEncoder(model_name="xsmall", model_kwargs={"device": "cpu"})``. Pairs
    sharing a query are scored together in one engine call (length-sorted batches); scores come back in input
    order as Python floats.

    Configuration (the same pattern in every adapter of jp-rerank): ``model_name``, the named fields
    ``device``, ``cache_folder``, ``preset``, and ``model_kwargs`` for any other :class:`jp_rerank.Reranker`
    argument. Or pass ``reranker=`` to use an engine you built. Adapters configured alike share one engine and
    one loaded model.

    Example:
        >>> from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
        >>> encoder = JapaneseCrossEncoder(model_name="xsmall", model_kwargs={"device": "cpu"})
        >>> compressor = CrossEncoderReranker(model=encoder, top_n=3)
        >>> scores = encoder.score([("富士山の高さは？", "富士山は3776mです。"), ("富士山の高さは？", "京都の寺。")])
        >>> len(scores), type(scores[0])
        (2, <class 'float'>)
        >>> scores  # the real xsmall model  # doctest: +SKIP
        [0.98..., 0.01...]
    """

    model_field: ClassVar[str] = "model_name"
    model_name: str = Field(default=DEFAULT_RERANKER, frozen=True)
    """Alias from :mod:`jp_rerank.presets`, hub id or local directory of the cross-encoder (the name
    ``HuggingFaceCrossEncoder`` gives it)."""

    @field_validator("model_name", mode="before")
    @classmethod
    def _model_path(cls, value: object) -> object:
        return as_model_name(value)

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
        return self._reranker.score_pairs(text_pairs)
