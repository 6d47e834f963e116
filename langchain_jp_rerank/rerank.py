"""LangChain document compressor that reranks documents with a Japanese cross-encoder, also an LCEL step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import ensure_config
from pydantic import ConfigDict, Field, field_validator

from jp_rerank.checks import check_positive_int
from jp_rerank.defaults import DEFAULT_TOP_N
from jp_rerank.fusion import FIRST_STAGE_KEYS, RerankFusion, first_stage_score
from jp_rerank.presets import DEFAULT_RERANKER
from jp_rerank.rerank.scoring import Listwise
from langchain_jp_rerank._common import RerankerAdapter, as_model_name, scored_copy

__all__ = ["JapaneseReranker"]

_IDIOM = "{'query': RunnablePassthrough(), 'documents': retriever} | reranker"


class JapaneseReranker(RerankerAdapter, BaseDocumentCompressor, RunnableSerializable[dict[str, Any], list[Document]]):
    """Rerank retrieved documents with a Japanese cross-encoder: a LangChain ``BaseDocumentCompressor`` and Runnable.

    Returns new ``Document`` objects, best first, each a copy of an input document (same ``id``, deep-copied
    metadata) with ``metadata["relevance_score"]`` set to a Python float; the caller's documents are never
    modified. No documents in gives no documents out. ``acompress_documents`` / ``ainvoke`` run the model in a
    worker thread.

    Use it inside ``ContextualCompressionRetriever(base_compressor=reranker, base_retriever=...)``, or as a step
    of an LCEL chain: it is a Runnable taking ``{"query": str, "documents": [Document, ...]}`` and returning the
    reranked documents, so ``{"query": RunnablePassthrough(), "documents": retriever} | reranker`` retrieves then
    reranks (``invoke``, ``batch``, ``ainvoke``, ``astream`` all work). Each rerank is a ``chain`` run named
    ``JapaneseReranker`` for callback handlers and tracers (LangSmith): its inputs are the query and the
    documents in, its outputs the documents out with their scores, its start and end times the latency, and its
    metadata ``rerank_model`` and ``rerank_top_n``; under ``ContextualCompressionRetriever`` it is a child of the
    retriever's run.

    Fusion with the first stage (``rerank_fusion``, default ``None``: rerank only): a reranker weaker than the
    retriever on a domain makes the ranking worse; ``rerank_fusion="zscore"`` (or ``"minmax"``, ``"rrf"``, or a
    :class:`jp_rerank.fusion.RerankFusion` with the reranker's weight) ranks by a per-query combination of the
    reranker's score and the score each document arrived with: the first number found under
    ``first_stage_score_keys`` in its metadata (``first_stage_score``, ``relevance_score``, ``score``). A document
    without one (or with a value that is not a finite number) counts as the first stage's last (tied with it under
    ``zscore`` / ``minmax``, no first-stage share under ``rrf``); when no document
    carries a score (most retrievers return none), their order is taken as the first stage's ranking. The copies
    then carry ``relevance_score`` (the combined score, which ``top_n`` and ``score_threshold`` apply to),
    ``rerank_score`` (the cross-encoder's) and ``first_stage_score`` (the score used, when there was one).

    List-wise normalisation (``listwise``, default ``None``: the engine's setting, itself ``"none"`` unless built
    with ``Reranker(listwise=...)``): ``"softmax"`` turns one query's raw cross-encoder logits into shares of
    relevance, ``exp(x - max) / sum(exp(x - max))`` over the documents given (they sum to 1), and
    ``relevance_score``, ``top_n`` and ``score_threshold`` then use the shares (a threshold of 0.5 keeps at most
    one document). With ``rerank_fusion`` the shares are the reranker's scores that are fused (``rerank_score``);
    ``"rrf"`` ranks the same either way, ``"zscore"`` / ``"minmax"`` see the shares.

    Configuration (the same pattern in every adapter of jp-rerank): ``model`` (as ``CohereRerank``), the named
    fields ``device``, ``cache_folder``, ``preset``, and ``model_kwargs`` for any other :class:`jp_rerank.Reranker`
    argument (``batch_size``, ``overflow``, ``max_length``, ``trust_remote_code``, ``num_threads``...;
    ``model_kwargs={"device": "cpu"}`` works too). Or pass ``reranker=`` to use an engine you built. Rerankers,
    cross-encoders and LlamaIndex postprocessors configured alike share one engine and one loaded model;
    ``model_copy(deep=True)`` shares it too, and a pickled copy loads it again on first use.

    Example:
        >>> from langchain_core.documents import Document
        >>> from langchain_core.runnables import RunnableLambda, RunnablePassthrough
        >>> reranker = JapaneseReranker(model="xsmall", top_n=1)
        >>> docs = [Document("京都の寺。"), Document("富士山は3776mです。")]
        >>> best = reranker.compress_documents(docs, "富士山の高さは？")
        >>> len(best), type(best[0].metadata["relevance_score"])
        (1, <class 'float'>)
        >>> best  # the real xsmall model  # doctest: +SKIP
        [Document(metadata={'relevance_score': 0.98...}, page_content='富士山は3776mです。')]
        >>> retriever = RunnableLambda(lambda query: docs)  # any retriever
        >>> chain = {"query": RunnablePassthrough(), "documents": retriever} | reranker
        >>> chain.invoke("富士山の高さは？") == best
        True
    """

    model: str = Field(default=DEFAULT_RERANKER, frozen=True)
    """Alias from :mod:`jp_rerank.presets`, hub id or local directory of the cross-encoder."""
    top_n: int | None = DEFAULT_TOP_N
    """Number of documents to return (``None``: all of them, reordered)."""
    score_threshold: float | None = None
    """Drop documents scoring below this (scores are in ``[0, 1]`` for sigmoid rerankers; with ``rerank_fusion``
    it applies to the combined score)."""
    rerank_fusion: RerankFusion = Field(default_factory=RerankFusion)
    """Combine the reranker's score with each document's first-stage score: ``None`` / ``"none"`` (rerank only),
    ``"zscore"``, ``"minmax"``, ``"rrf"`` or a :class:`~jp_rerank.fusion.RerankFusion` (see the class notes)."""
    first_stage_score_keys: tuple[str, ...] = FIRST_STAGE_KEYS
    """Metadata keys looked up, in order, for the score a document arrived with (``rerank_fusion`` only)."""
    listwise: Listwise | None = None
    """``"softmax"``: scores are one query's shares of relevance (softmax of the raw logits over the documents
    given; ``top_n`` / ``score_threshold`` apply to them, fusion uses them); ``"none"``: per-document scores;
    ``None``: the engine's setting (see the class notes)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("model", mode="before")
    @classmethod
    def _model_path(cls, value: object) -> object:
        return as_model_name(value)

    @field_validator("top_n", mode="before")
    @classmethod
    def _check_top_n(cls, value: object) -> object:
        return value if value is None else check_positive_int(value, name="top_n")

    @field_validator("rerank_fusion", mode="before")
    @classmethod
    def _check_fusion(cls, value: object) -> object:
        return RerankFusion.of(value)  # type: ignore[arg-type]  # a wrong type raises a clear TypeError

    # ------------------------------------------------------------------ compressor and runnable
    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Return copies of the best ``top_n`` documents (at or above ``score_threshold``), best first.

        ``acompress_documents`` (LangChain's) runs it in a worker thread.

        Args:
            documents: Retrieved documents; left unmodified.
            query: The question.
            callbacks: Callback handlers or manager (``ContextualCompressionRetriever`` passes its run's): the
                rerank is reported to them as a child ``chain`` run.

        Returns:
            New documents with ``metadata["relevance_score"]`` (float), sorted by descending score (ties keep
            input order).

        Raises:
            ValueError: An empty or whitespace-only query.
            TypeError: A non-string query, or an item that is not a ``Document`` (the message names its position).
        """
        return self.invoke({"query": query, "documents": documents}, {"callbacks": callbacks})

    def invoke(self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any) -> list[Document]:
        """Rerank ``input["documents"]`` for ``input["query"]`` (see :meth:`compress_documents`).

        ``ainvoke`` (LangChain's) runs it in a worker thread.

        Raises:
            TypeError: ``input`` is not a mapping with ``"query"`` and ``"documents"``; or as
                :meth:`compress_documents`.
        """
        config = ensure_config(config)
        config["metadata"] = {
            **config.get("metadata", {}),
            "rerank_model": self._reranker.model_id,
            "rerank_top_n": self.top_n,
        }
        return self._call_with_config(self._rerank, input, config, run_type="chain")

    def _rerank(self, input: dict[str, Any]) -> list[Document]:
        if not isinstance(input, Mapping) or "query" not in input or "documents" not in input:
            got = sorted(map(str, input)) if isinstance(input, Mapping) else type(input).__name__
            raise TypeError(
                f"JapaneseReranker takes {{'query': str, 'documents': [Document, ...]}}, got {got}; "
                f"in a chain: {_IDIOM}"
            )
        docs = list(input["documents"])
        for i, doc in enumerate(docs):
            if not isinstance(doc, Document):
                raise TypeError(f"documents[{i}] must be a langchain_core Document, got {type(doc).__name__}")
        fusion, keys = self.rerank_fusion, self.first_stage_score_keys
        results = self._reranker.rerank(
            input["query"],
            [doc.page_content for doc in docs],
            top_n=self.top_n,
            score_threshold=self.score_threshold,
            listwise=self.listwise,
            first_stage_scores=[first_stage_score(doc.metadata, keys) for doc in docs] if fusion.active else None,
            fusion=fusion,
        )
        return [scored_copy(docs[r.index], r) for r in results]
