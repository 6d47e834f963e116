"""LangChain ``BaseCrossEncoder`` over :class:`jp_rerank.Reranker`, a drop-in for ``CrossEncoderReranker``."""

from __future__ import annotations

from langchain_core.cross_encoders import BaseCrossEncoder

from jp_rerank.checks import check_texts
from langchain_jp_rerank._common import RerankerAdapter

__all__ = ["JapaneseCrossEncoder"]


class JapaneseCrossEncoder(RerankerAdapter, BaseCrossEncoder):
    """Score (query, passage) pairs with a Japanese cross-encoder.

    A drop-in for ``HuggingFaceCrossEncoder`` in ``CrossEncoderReranker``: existing code switches by changing the
    class name, e.g. ``HuggingFaceCrossEncoder(model_name="...", model_kwargs={"device": "cpu"})`` becomes
    ``JapaneseCrossEncoder(model_name="xsmall", model_kwargs={"device": "cpu"})`` (``model=`` works too). Pairs
    sharing a query are scored together in one engine call (length-sorted batches); scores come back in input
    order as Python floats.

    Configuration (the same pattern in every adapter of jp-rerank): ``model`` / ``model_name``, the named fields
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
