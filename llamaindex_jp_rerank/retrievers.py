"""LlamaIndex retriever for Japanese BM25 / hybrid first-stage retrieval (and optional reranking)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager
from llama_index.core.ingestion import run_transformations
from llama_index.core.node_parser import TextSplitter
from llama_index.core.schema import BaseNode, Document, MetadataMode, NodeWithScore, QueryBundle, TransformComponent

from jp_rerank.checks import check_positive_int
from jp_rerank.defaults import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE
from jp_rerank.embed import Embedder, SparseEmbedder
from jp_rerank.engines import shared_engine
from jp_rerank.hits import SearchHit
from jp_rerank.pipeline import TwoStageRetriever
from jp_rerank.rerank import Reranker
from jp_rerank.text import chunk_text
from llamaindex_jp_rerank.embeddings import JapaneseEmbedding
from llamaindex_jp_rerank.postprocessor import JapaneseRerank, RerankedNode

__all__ = ["JapaneseRetriever"]


def _by_id(nodes: Sequence[BaseNode]) -> dict[str, BaseNode]:
    out: dict[str, BaseNode] = {}
    for node in nodes:
        if node.node_id in out:
            raise ValueError(f"duplicate node id {node.node_id!r}")
        out[node.node_id] = node
    return out


class _JapaneseChunker(TextSplitter):
    """Node parser over :func:`jp_rerank.text.chunk_text` (sentence-packed character chunks)."""

    chunk_size: int = Field(default=DEFAULT_CHUNK_SIZE, description="Most characters per chunk.", gt=0)
    chunk_overlap: int = Field(
        default=DEFAULT_CHUNK_OVERLAP, description="Characters shared by windows of a long sentence.", ge=0
    )

    @classmethod
    def class_name(cls) -> str:
        """Name used by LlamaIndex serialisation."""
        return "JapaneseChunker"

    def split_text(self, text: str) -> list[str]:
        """Split one text into chunks."""
        return chunk_text(text, size=self.chunk_size, overlap=self.chunk_overlap)


class JapaneseRetriever(BaseRetriever):
    """Japanese first-stage retrieval for LlamaIndex: MeCab BM25, dense, SPLADE or their fusion, optional rerank.

    LlamaIndex's own BM25 retriever tokenises for space-separated languages and scores Japanese text as zero;
    this one tokenises with MeCab (or Sudachi / character n-grams) through
    :class:`jp_rerank.pipeline.TwoStageRetriever`.
    Returned nodes are the caller's node objects (not copies) wrapped in new ``NodeWithScore`` objects; with a
    reranker they are :class:`~llamaindex_jp_rerank.RerankedNode` with the fused first-stage score kept.
    ``similarity_top_k`` is the number of nodes returned, as for LlamaIndex's own retrievers. Models named in
    :meth:`from_nodes` by alias, hub id or path are the engines every adapter configured alike shares
    (:func:`jp_rerank.engines.shared_engine`).

    Args:
        retriever: A built :class:`~jp_rerank.pipeline.TwoStageRetriever` whose passage ids are the node ids.
        nodes: The indexed nodes (unique ``node_id``).
        similarity_top_k: Nodes returned per query (default: the pipeline's ``top_n``).
        first_k: Candidates per first stage (default: the pipeline's ``first_k``).
        callback_manager: LlamaIndex callback manager.
        verbose: LlamaIndex's verbose flag.

    Example:
        >>> from llama_index.core.schema import TextNode
        >>> nodes = [TextNode(text="富士山は日本一高い山です。"), TextNode(text="京都には寺が多い。")]
        >>> retriever = JapaneseRetriever.from_nodes(nodes, similarity_top_k=1)
        >>> retriever.retrieve("京都の寺")[0].node.get_content()
        '京都には寺が多い。'
    """

    def __init__(
        self,
        retriever: TwoStageRetriever,
        nodes: Sequence[BaseNode],
        *,
        similarity_top_k: int | None = None,
        first_k: int | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        if not isinstance(retriever, TwoStageRetriever):
            raise TypeError(f"retriever must be a jp_rerank TwoStageRetriever, got {type(retriever).__name__}")
        self._nodes = _by_id(nodes)
        self.pipeline = retriever
        top_k = similarity_top_k
        self.top_n = None if top_k is None else check_positive_int(top_k, name="similarity_top_k")
        self.first_k = None if first_k is None else check_positive_int(first_k, name="first_k")
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @classmethod
    def class_name(cls) -> str:
        """Name of this retriever class."""
        return "JapaneseRetriever"

    @property
    def similarity_top_k(self) -> int | None:
        """Nodes returned per query (``None``: the pipeline's ``top_n``)."""
        return self.top_n

    @classmethod
    def from_nodes(
        cls,
        nodes: Sequence[BaseNode],
        *,
        metadata_mode: MetadataMode = MetadataMode.EMBED,
        similarity_top_k: int | None = None,
        callback_manager: CallbackManager | None = None,
        **pipeline_kwargs: Any,
    ) -> JapaneseRetriever:
        """Index nodes (their ``metadata_mode`` view) and build a retriever over them.

        Args:
            nodes: Nodes to index (unique ``node_id``); they are not modified.
            metadata_mode: Which view of a node is indexed and reranked (default: the embedding view).
            similarity_top_k: Nodes returned per query (default: ``top_n`` if given, else 10).
            callback_manager: LlamaIndex callback manager.
            **pipeline_kwargs: Passed to :meth:`TwoStageRetriever.from_texts`: ``bm25`` (tokenizer spec or
                ``None``, default ``"mecab"``), ``embedder``, ``sparse`` and ``reranker`` (engines, names, or this
                package's ``JapaneseEmbedding`` / ``JapaneseRerank`` whose models are then shared), ``top_n``,
                ``first_k``, ``score_threshold``, ``fusion``, ``weights``, ``vector_backend``, ``rerank_fusion``
                (combine the reranker's score with the first stage's: ``score`` is then the combined score and
                ``RerankedNode.rerank_score`` the cross-encoder's)...

        Raises:
            ValueError: No nodes, duplicate node ids, or no first stage chosen.
        """
        for key, wrapper, attr, engine in (
            ("embedder", JapaneseEmbedding, "embedder", Embedder),
            ("reranker", JapaneseRerank, "reranker", Reranker),
            ("sparse", None, "", SparseEmbedder),
        ):
            value = pipeline_kwargs.get(key)
            if wrapper is not None and isinstance(value, wrapper):
                pipeline_kwargs[key] = getattr(value, attr)  # share the adapter's loaded model
            elif value is not None and not isinstance(value, engine):
                pipeline_kwargs[key] = shared_engine(engine, value)
        items = list(_by_id(nodes).values())  # fails fast on duplicate ids, before any indexing
        texts = [node.get_content(metadata_mode=MetadataMode(metadata_mode)) for node in items]
        ids = [node.node_id for node in items]
        pipeline = TwoStageRetriever.from_texts(texts, ids=ids, **pipeline_kwargs)
        return cls(pipeline, items, similarity_top_k=similarity_top_k, callback_manager=callback_manager)

    @classmethod
    def from_documents(
        cls,
        documents: Sequence[Document],
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
        transformations: Sequence[TransformComponent] | None = None,
        **kwargs: Any,
    ) -> JapaneseRetriever:
        """Split documents into nodes and index them (see :meth:`from_nodes` for ``kwargs``).

        Args:
            documents: LlamaIndex documents (not modified).
            chunk_size: Most characters per node (:func:`jp_rerank.text.chunk_text`, sentence-packed).
            chunk_overlap: Characters shared by the windows of a sentence longer than ``chunk_size``.
            transformations: Your own node parsers instead (e.g. ``[SentenceSplitter()]``).
            **kwargs: Passed to :meth:`from_nodes`.
        """
        steps = list(transformations or [_JapaneseChunker(chunk_size=chunk_size, chunk_overlap=chunk_overlap)])
        nodes = run_transformations(list(documents), steps, in_place=False)
        return cls.from_nodes(nodes, **kwargs)

    def _to_nodes(self, passages: list[SearchHit]) -> list[NodeWithScore]:
        out: list[NodeWithScore] = []
        for p in passages:
            node = self._nodes.get(p.id)
            if node is None:
                raise KeyError(f"the pipeline returned passage id {p.id!r}, which is not one of the nodes")
            if p.rerank_score is None:
                out.append(NodeWithScore(node=node, score=p.score))
            else:
                fused = self.pipeline.rerank_fusion.active
                out.append(
                    RerankedNode(
                        node=node,
                        score=p.score,
                        retrieval_score=p.first_stage_score,
                        rerank_score=p.rerank_score if fused else None,
                    )
                )
        return out

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        passages = self.pipeline.retrieve(query_bundle.query_str, top_n=self.top_n, first_k=self.first_k)
        return self._to_nodes(passages)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)
