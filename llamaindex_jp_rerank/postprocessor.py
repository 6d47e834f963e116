"""LlamaIndex node postprocessor that reranks retrieved nodes with a Japanese cross-encoder."""

from __future__ import annotations

import asyncio
import os

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from jp_rerank.presets import DEFAULT_RERANKER
from jp_rerank.rerank import Reranker, RerankResult, rank_scores
from jp_rerank.rerank.cross_encoder import Overflow
from llamaindex_jp_rerank._common import build_engine

__all__ = ["JapaneseRerank", "RerankedNode"]

dispatcher = get_dispatcher(__name__)


class RerankedNode(NodeWithScore):
    """A reranked node: ``score`` is the cross-encoder score, ``retrieval_score`` the first-stage one.

    The retrieval score lives on this wrapper, not in ``node.metadata``, so it never leaks into embedded or
    LLM text.

    Example:
        >>> from llama_index.core.schema import TextNode
        >>> RerankedNode(node=TextNode(text="富士山"), score=0.9, retrieval_score=0.4).retrieval_score
        0.4
    """

    retrieval_score: float | None = Field(
        default=None, description="Score the node had before reranking (None if it had none)."
    )

    @classmethod
    def class_name(cls) -> str:
        """Name used by LlamaIndex serialisation."""
        return "RerankedNode"


class JapaneseRerank(BaseNodePostprocessor):
    """Rerank nodes with a Japanese cross-encoder (:class:`jp_rerank.Reranker`).

    Returns new :class:`RerankedNode` objects sorted by descending score; the input list, its
    ``NodeWithScore`` objects and their nodes are left untouched.

    Args:
        model: Alias, hub id or local directory of the cross-encoder (default
            :data:`jp_rerank.DEFAULT_RERANKER`).
        top_n: Keep the best ``top_n`` nodes (``None``: all).
        score_threshold: Drop nodes scoring below this.
        metadata_mode: Which view of a node is scored (default the embedding view, as LlamaIndex embeds it).
        reranker: An already-built :class:`jp_rerank.Reranker` to share (then leave the model options unset).
        device: Device for a newly built reranker.
        batch_size: Pairs per forward pass for a newly built reranker.
        max_length: Token limit of a (query, passage) pair for a newly built reranker.
        overflow: ``"truncate"`` or ``"window"`` for passages over the limit (newly built reranker).
        local_files_only: Only use local files / the HF cache (newly built reranker).
        callback_manager: LlamaIndex callback manager.

    Example:
        >>> from llama_index.core.schema import NodeWithScore, TextNode
        >>> rerank = JapaneseRerank("xsmall", top_n=1)  # doctest: +SKIP
        >>> nodes = [NodeWithScore(node=TextNode(text=t)) for t in ["京都の寺", "富士山は3776m"]]
        >>> rerank.postprocess_nodes(nodes, query_str="富士山の高さ")[0].text  # doctest: +SKIP
        '富士山は3776m'
    """

    model: str = Field(description="Hub id or local path of the cross-encoder.")
    top_n: int | None = Field(default=3, description="Number of nodes to return (None: all), best first.")
    score_threshold: float | None = Field(default=None, description="Minimum reranker score a node must reach.")
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED,
        description="Node view passed to the cross-encoder (node.get_content mode).",
    )
    _engine: Reranker = PrivateAttr()

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        top_n: int | None = 3,
        score_threshold: float | None = None,
        metadata_mode: MetadataMode = MetadataMode.EMBED,
        reranker: Reranker | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        max_length: int | None = None,
        overflow: Overflow | None = None,
        local_files_only: bool | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        rank_scores([], top_n=top_n, score_threshold=score_threshold)  # the engine's own argument checks
        options = {
            "device": device,
            "batch_size": batch_size,
            "max_length": max_length,
            "overflow": overflow,
            "local_files_only": local_files_only,
        }
        engine = build_engine(Reranker, reranker, model, DEFAULT_RERANKER, options)
        super().__init__(
            model=engine.model_id,
            top_n=top_n,
            score_threshold=score_threshold,
            metadata_mode=MetadataMode(metadata_mode),
            callback_manager=callback_manager or CallbackManager(),
        )
        self._engine = engine

    @classmethod
    def class_name(cls) -> str:
        """Name used by LlamaIndex serialisation."""
        return "JapaneseRerank"

    @property
    def reranker(self) -> Reranker:
        """The underlying engine (share it with the LangChain adapter)."""
        return self._engine

    def _query(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> tuple[str, list[str]]:
        if query_bundle is None:
            raise ValueError("JapaneseRerank needs a query: pass query_str or query_bundle")
        dispatcher.event(
            ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=self.top_n or len(nodes), model_name=self.model)
        )
        return query_bundle.query_str, [n.node.get_content(metadata_mode=self.metadata_mode) for n in nodes]

    def _rerank(self, query: str, texts: list[str]) -> list[RerankResult]:
        return self._engine.rerank(query, texts, top_n=self.top_n, score_threshold=self.score_threshold)

    def _payload(self, nodes: list[NodeWithScore], query: str) -> dict[str, object]:
        return {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.model,
            EventPayload.QUERY_STR: query,
            EventPayload.TOP_K: self.top_n,
        }

    @staticmethod
    def _wrap(nodes: list[NodeWithScore], results: list[RerankResult]) -> list[NodeWithScore]:
        out: list[NodeWithScore] = [
            RerankedNode(node=nodes[r.index].node, score=r.score, retrieval_score=nodes[r.index].score) for r in results
        ]
        dispatcher.event(ReRankEndEvent(nodes=out))
        return out

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        nodes = list(nodes)
        query, texts = self._query(nodes, query_bundle)
        with self.callback_manager.event(CBEventType.RERANKING, payload=self._payload(nodes, query)) as event:
            out = self._wrap(nodes, self._rerank(query, texts))
            event.on_end(payload={EventPayload.NODES: out})
        return out

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        nodes = list(nodes)
        query, texts = self._query(nodes, query_bundle)
        with self.callback_manager.event(CBEventType.RERANKING, payload=self._payload(nodes, query)) as event:
            out = self._wrap(nodes, await asyncio.to_thread(self._rerank, query, texts))
            event.on_end(payload={EventPayload.NODES: out})
        return out
