"""LangChain retriever over jp-rerank's two-stage pipeline: Japanese BM25 / hybrid first stage → rerank."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping, Sequence
from copy import deepcopy
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, PrivateAttr, ValidationInfo, field_validator

from jp_rerank.checks import check_positive_int, storable_metadata
from jp_rerank.defaults import DEFAULT_BM25_TOKENIZER, DEFAULT_K, DEFAULT_RETRIEVER_TOP_N
from jp_rerank.embed import Embedder, SparseEmbedder
from jp_rerank.engines import shared_engine
from jp_rerank.hits import FirstStage, SearchHit
from jp_rerank.pipeline import TwoStageRetriever
from jp_rerank.presets import DEFAULT_RERANKER
from jp_rerank.rerank import Reranker
from langchain_jp_rerank.embeddings import JapaneseEmbeddings
from langchain_jp_rerank.rerank import JapaneseReranker

__all__ = ["JapaneseRetriever"]

ModelArg = str | os.PathLike[str]


class _FillToK:
    """A first stage that returns its stage's hits, then, up to ``k``, the documents the stage did not match.

    BM25 returns only documents sharing a word with the query, while LangChain retrievers return ``k`` documents
    whenever the corpus has them. The documents BM25 did not match follow its hits with their BM25 score, 0.0, by
    ascending id (the engine's tie rule), so a reranker sees up to ``fetch_k`` candidates and ``k`` come back.
    """

    def __init__(self, stage: FirstStage, ids: Sequence[str], texts: Sequence[str], metadatas: Sequence[Any]) -> None:
        self.stage = stage
        self.name = stage.name
        self._by_id = {i: (t, m) for i, t, m in zip(ids, texts, metadatas, strict=True)}
        self._order = sorted(self._by_id)

    def search(self, query: str, k: int = DEFAULT_K) -> list[SearchHit]:
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int = DEFAULT_K) -> list[list[SearchHit]]:
        out = []
        for hits in self.stage.search_many(queries, k):
            filled = list(hits)
            seen = {hit.id for hit in filled}
            for doc_id in self._order:
                if len(filled) >= k:
                    break
                if doc_id not in seen:
                    text, metadata = self._by_id[doc_id]
                    filled.append(SearchHit(doc_id, 0.0, text, dict(metadata)))
            out.append(filled)
        return out


class _Corpus:
    """The pipeline and the caller's metadata by id, shared (not copied) by deep copies of the retriever."""

    def __init__(self, pipeline: TwoStageRetriever, metadatas: dict[str, dict[str, Any]]) -> None:
        self.pipeline = pipeline
        self.metadatas = metadatas

    def __deepcopy__(self, memo: dict[int, Any]) -> _Corpus:
        return self


class JapaneseRetriever(BaseRetriever):
    """Retrieve Japanese passages: BM25 (MeCab) and/or dense first stage, fused, then cross-encoder rerank.

    Wraps :class:`jp_rerank.pipeline.TwoStageRetriever`. Build it with :meth:`from_documents` /
    :meth:`from_texts`, or pass an already-built pipeline as ``pipeline=`` (to share it, and its loaded
    models, with other adapters). Results are new ``Document`` objects, best first, carrying the passage's id, a
    copy of its metadata as given (lists and dicts included) and two floats: ``first_stage_score`` and
    ``relevance_score``, the score the results are ranked by. With a reranker ``relevance_score`` is the
    reranker's (in ``[0, 1]`` for the sigmoid rerankers of the presets); **without one it is the first-stage
    score, which is not in [0, 1]**: raw BM25 (0 and up, often 3-10), cosine similarity (dense only) or the
    reciprocal-rank-fusion score (hybrid, at most 2/61). Compare such scores within one query only.

    ``k`` documents come back whenever the corpus has them (and a ``score_threshold`` does not drop them): with
    BM25 as the only first stage, the documents sharing no word with the query follow the matching ones (BM25
    score 0.0, by ascending id), and a reranker sees them too. ``k`` and ``fetch_k`` can also be given per call:
    ``retriever.invoke(query, k=3)``. A deep copy (``model_copy(deep=True)``) shares the index and its models.

    Example:
        >>> from langchain_core.documents import Document
        >>> docs = [Document("富士山は日本一高い山です。", id="a"), Document("京都には寺が多い。", id="b")]
        >>> retriever = JapaneseRetriever.from_documents(docs, reranker="xsmall", k=2)
        >>> [type(d.metadata["relevance_score"]) for d in retriever.invoke("京都の寺")]
        [<class 'float'>, <class 'float'>]
        >>> retriever.invoke("京都の寺")[0].id  # the real xsmall model  # doctest: +SKIP
        'b'
    """

    k: int = DEFAULT_RETRIEVER_TOP_N
    """Documents returned per query."""
    fetch_k: int | None = None
    """First-stage candidates handed to the reranker (``None``: the pipeline's ``first_k``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    _corpus: _Corpus = PrivateAttr()

    def __init__(self, *, pipeline: TwoStageRetriever, **data: Any) -> None:
        if not isinstance(pipeline, TwoStageRetriever):
            raise TypeError(f"pipeline must be a jp_rerank.pipeline.TwoStageRetriever, got {type(pipeline).__name__}")
        super().__init__(**data)
        self._corpus = _Corpus(pipeline, {})

    @field_validator("k", "fetch_k", mode="before")
    @classmethod
    def _positive(cls, value: object, info: ValidationInfo) -> object:
        return value if value is None else check_positive_int(value, name=str(info.field_name))

    @property
    def pipeline(self) -> TwoStageRetriever:
        """The engine's two-stage retriever (share it with other adapters)."""
        return self._corpus.pipeline

    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        reranker: Reranker | JapaneseReranker | ModelArg | None = DEFAULT_RERANKER,
        embedder: Embedder | JapaneseEmbeddings | ModelArg | None = None,
        bm25: str | None = DEFAULT_BM25_TOKENIZER,
        k: int = DEFAULT_RETRIEVER_TOP_N,
        fetch_k: int | None = None,
        **pipeline_kwargs: Any,
    ) -> JapaneseRetriever:
        """Index texts and build the retriever.

        Args:
            texts: Passages.
            metadatas: One mapping per passage (``None``: empty), with ``str`` keys and any values, as LangChain
                vector stores take them. Returned documents carry a deep copy of it; the index itself stores
                ``str`` / ``int`` / finite ``float`` / ``bool`` values as they are and every other value (lists,
                dicts, ``None``...) as its JSON text.
            ids: One unique id per passage (default ``"0"``, ``"1"``...).
            reranker: Cross-encoder (engine, :class:`JapaneseReranker`, alias, hub id or path); ``None`` to return
                the first-stage order.
            embedder: Dense embedder (engine, :class:`JapaneseEmbeddings`, alias, hub id or path) for a hybrid
                first stage; ``None`` for BM25 only.
            bm25: BM25 tokenizer (``"mecab"``, ``"sudachi"``, ``"char2"``...); ``None`` for no BM25 stage.
            k: Documents returned per query.
            fetch_k: First-stage candidates per query (default: the pipeline's ``first_k``, 100).
            **pipeline_kwargs: Further :meth:`TwoStageRetriever.from_texts` arguments (``sparse``,
                ``score_threshold``, ``fusion``, ``weights``, ``vector_backend``, ``rerank_fusion``: combine the
                reranker's score with the first stage's, see :class:`jp_rerank.fusion.RerankFusion`; the results
                then carry ``relevance_score`` (combined) and ``rerank_score`` (the cross-encoder's)...).

        Models named by alias, hub id or path are the engines every adapter configured alike shares
        (:func:`jp_rerank.engines.shared_engine`).

        Raises:
            ValueError: No texts, no first stage, duplicate or empty ids, empty metadata keys, or lengths that
                differ.
            TypeError: A metadata key that is not a ``str``, or a value that cannot be written as JSON.
        """
        if isinstance(reranker, JapaneseReranker):
            reranker = reranker.reranker
        elif reranker is not None and not isinstance(reranker, Reranker):
            reranker = shared_engine(Reranker, reranker)
        if isinstance(embedder, JapaneseEmbeddings):
            embedder = embedder.embedder
        elif embedder is not None and not isinstance(embedder, Embedder):
            embedder = shared_engine(Embedder, embedder)
        sparse = pipeline_kwargs.get("sparse")
        if sparse is not None and not isinstance(sparse, SparseEmbedder):
            pipeline_kwargs["sparse"] = shared_engine(SparseEmbedder, sparse)
        given = list(metadatas) if metadatas is not None else None
        flat = None if given is None else [storable_metadata(m, name=f"metadatas[{i}]") for i, m in enumerate(given)]
        pipeline = TwoStageRetriever.from_texts(
            texts, ids=ids, metadatas=flat, embedder=embedder, bm25=bm25, reranker=reranker, **pipeline_kwargs
        )
        doc_ids = [str(i) for i in range(len(texts))] if ids is None else list(ids)
        stages = pipeline.first_stages
        if len(stages) == 1 and embedder is None and bm25 is not None:  # BM25 only: fill up to k
            pipeline.first_stages = (_FillToK(stages[0], doc_ids, list(texts), flat or [{}] * len(doc_ids)),)
        retriever = cls(pipeline=pipeline, k=k, fetch_k=fetch_k)
        if given is not None:
            retriever._corpus.metadatas = {i: deepcopy(dict(m or {})) for i, m in zip(doc_ids, given, strict=True)}
        return retriever

    @classmethod
    def from_documents(cls, documents: Iterable[Document], **kwargs: Any) -> JapaneseRetriever:
        """Index LangChain documents (text, metadata and ids) and build the retriever.

        A document without an ``id`` gets its position (``"0"``, ``"1"``...) as id. Metadata is taken as in
        :meth:`from_texts` (any values); ``kwargs`` are those of :meth:`from_texts`.
        """
        docs = list(documents)
        ids = [doc.id if doc.id is not None else str(i) for i, doc in enumerate(docs)]
        return cls.from_texts([d.page_content for d in docs], [d.metadata for d in docs], ids, **kwargs)

    def _search(self, query: str, k: int | None, fetch_k: int | None) -> list[Document]:
        passages = self.pipeline.retrieve(
            query, top_n=self.k if k is None else k, first_k=self.fetch_k if fetch_k is None else fetch_k
        )
        given = self._corpus.metadatas
        fused = self.pipeline.reranker is not None and self.pipeline.rerank_fusion.active
        out = []
        for p in passages:
            metadata = {
                **(deepcopy(given[p.id]) if p.id in given else p.metadata),
                "relevance_score": p.score,
                "first_stage_score": p.first_stage_score,
            }
            if fused:
                metadata["rerank_score"] = p.rerank_score
            out.append(Document(page_content=p.text, id=p.id, metadata=metadata))
        return out

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        fetch_k: int | None = None,
    ) -> list[Document]:
        return self._search(query, k, fetch_k)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        fetch_k: int | None = None,
    ) -> list[Document]:
        return await asyncio.to_thread(self._search, query, k, fetch_k)
