"""LlamaIndex node postprocessor that reranks retrieved nodes with a Japanese cross-encoder."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import BaseNode, MetadataMode, NodeWithScore, QueryBundle

from jp_rerank.defaults import DEFAULT_TOP_N
from jp_rerank.engines import build_engine
from jp_rerank.fusion import RerankFusion, as_first_stage_score
from jp_rerank.hits import check_ranking
from jp_rerank.presets import DEFAULT_RERANKER
from jp_rerank.rerank import Reranker, RerankResult
from jp_rerank.rerank.scoring import Listwise
from llamaindex_jp_rerank._common import PlainPickle

__all__ = ["JapaneseRerank", "RerankedNode"]

dispatcher = get_dispatcher(__name__)


class RerankedNode(NodeWithScore):
    """A reranked node: ``score`` is the cross-encoder score, ``retrieval_score`` the first-stage one.

    The retrieval score lives on this wrapper, not in ``node.metadata``, so it never leaks into embedded or
    LLM text. With fusion after the rerank (``rerank_fusion``), ``score`` is the combined score and
    ``rerank_score`` the cross-encoder's.

    Example:
        >>> from llama_index.core.schema import TextNode
        >>> RerankedNode(node=TextNode(text="富士山"), score=0.9, retrieval_score=0.4).retrieval_score
        0.4
    """

    retrieval_score: float | None = Field(
        default=None, description="Score the node had before reranking (None if it had none)."
    )
    rerank_score: float | None = Field(
        default=None, description="The cross-encoder's score when `score` combines it with the first stage's."
    )

    @classmethod
    def class_name(cls) -> str:
        """Name used by LlamaIndex serialisation."""
        return "RerankedNode"


class JapaneseRerank(PlainPickle, BaseNodePostprocessor):
    """Rerank nodes with a Japanese cross-encoder (:class:`jp_rerank.Reranker`).

    Returns new :class:`RerankedNode` objects sorted by descending score; the input list, its
    ``NodeWithScore`` objects and their nodes are left untouched. The first-stage score is kept on
    ``RerankedNode.retrieval_score`` and, as ``SentenceTransformerRerank``'s ``keep_retrieval_score`` does, in
    ``metadata["retrieval_score"]`` of a *copy* of the node, with the key excluded from the embedded and the LLM
    text (``excluded_embed_metadata_keys`` / ``excluded_llm_metadata_keys``). Each call emits
    LlamaIndex's ``ReRankStartEvent`` / ``ReRankEndEvent`` and a ``RERANKING`` callback event.

    Fusion with the first stage (``rerank_fusion``, default ``None``: rerank only): ``"zscore"``, ``"minmax"``,
    ``"rrf"`` or a :class:`jp_rerank.fusion.RerankFusion` with the reranker's weight ranks the nodes by a per-query
    combination of the cross-encoder's score and the ``NodeWithScore.score`` each node arrived with. A node whose
    score is ``None`` (or not a finite number) counts as the first stage's last (tied with it under ``zscore`` /
    ``minmax``, no first-stage share under ``rrf``); when no node has one, their
    order is taken as the first stage's ranking. ``score`` is then the combined score (``top_n`` and
    ``score_threshold`` apply to it) and ``RerankedNode.rerank_score`` the cross-encoder's.

    List-wise normalisation (``listwise``, default ``None``: the engine's setting, itself ``"none"`` unless built
    with ``Reranker(listwise=...)``): ``"softmax"`` turns one query's raw cross-encoder logits into shares of
    relevance, ``exp(x - max) / sum(exp(x - max))`` over the nodes given (they sum to 1); ``score``, ``top_n`` and
    ``score_threshold`` then use the shares. With ``rerank_fusion`` the shares are the cross-encoder scores that are
    fused (``rerank_score``); ``"rrf"`` ranks the same either way, ``"zscore"`` / ``"minmax"`` see the shares.

    Configuration, in the names of LlamaIndex's ``SentenceTransformerRerank``: the model, ``device``,
    ``trust_remote_code``, and ``cross_encoder_kwargs`` for any other :class:`jp_rerank.Reranker` argument
    (``max_length``, ``batch_size``, ``overflow``, ``num_threads``...). Or pass ``reranker=`` to use an engine you
    built. Postprocessors configured alike share
    one engine and one loaded model, with each other and with the LangChain adapters. A pickled postprocessor
    loads the model again on first use.

    Args:
        model: Alias, hub id or local directory of the cross-encoder (default
            :data:`jp_rerank.DEFAULT_RERANKER`).
        top_n: Keep the best ``top_n`` nodes (``None``: all).
        score_threshold: Drop nodes scoring below this (the combined score with ``rerank_fusion``).
        metadata_mode: Which view of a node is scored (default the embedding view, as LlamaIndex embeds it).
        keep_retrieval_score: Keep each node's first-stage score on ``RerankedNode.retrieval_score`` and in the
            copied node's ``metadata["retrieval_score"]`` (default ``True``; ``False`` leaves the node as it came).
        rerank_fusion: Combine the cross-encoder's score with each node's first-stage score (see above);
            ``None`` / ``"none"``: rerank only.
        listwise: ``"softmax"``: scores are one query's shares of relevance (see above); ``"none"``: per-node
            scores; ``None``: the engine's setting.
        reranker: An already-built :class:`jp_rerank.Reranker` to share (then leave the model options unset).
        device: Device (default: CUDA when available).
        trust_remote_code: Allow custom code from the hub repository.
        cross_encoder_kwargs: Every other :class:`jp_rerank.Reranker` argument (``max_length``, ``preset``,
            ``cache_folder``, ``local_files_only``, ``batch_size``, ``overflow``...), under the name
            ``SentenceTransformerRerank`` gives it.
        callback_manager: LlamaIndex callback manager.

    Example:
        >>> from llama_index.core.schema import NodeWithScore, TextNode
        >>> rerank = JapaneseRerank("xsmall", top_n=1, device="cpu")
        >>> nodes = [NodeWithScore(node=TextNode(text=t), score=0.5) for t in ["京都の寺", "富士山は3776m"]]
        >>> best = rerank.postprocess_nodes(nodes, query_str="富士山の高さ")
        >>> len(best), type(best[0].score), best[0].retrieval_score
        (1, <class 'float'>, 0.5)
        >>> best[0].text  # the real xsmall model  # doctest: +SKIP
        '富士山は3776m'
    """

    model: str = Field(description="Hub id or local path of the cross-encoder.")
    top_n: int | None = Field(default=DEFAULT_TOP_N, description="Number of nodes to return (None: all), best first.")
    score_threshold: float | None = Field(default=None, description="Minimum reranker score a node must reach.")
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED,
        description="Node view passed to the cross-encoder (node.get_content mode).",
    )
    keep_retrieval_score: bool = Field(
        default=True,
        description="Keep the first-stage score on RerankedNode.retrieval_score and in a node copy's metadata.",
    )
    rerank_fusion: RerankFusion = Field(
        default_factory=RerankFusion,
        description="Combine the reranker's score with the node's first-stage score (method 'none': rerank only).",
    )
    listwise: Listwise | None = Field(
        default=None,
        description="'softmax': one query's shares of relevance (softmax of raw logits over the nodes), which "
        "top_n / score_threshold / fusion use; 'none': per-node scores; None: the engine's setting.",
    )
    _engine: Reranker = PrivateAttr()

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        top_n: int | None = DEFAULT_TOP_N,
        score_threshold: float | None = None,
        metadata_mode: MetadataMode = MetadataMode.EMBED,
        keep_retrieval_score: bool = True,
        rerank_fusion: RerankFusion | str | None = None,
        listwise: Listwise | None = None,
        reranker: Reranker | None = None,
        device: str | None = None,
        trust_remote_code: bool | None = None,
        cross_encoder_kwargs: dict[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        check_ranking(top_n, score_threshold)
        options = {"device": device, "trust_remote_code": trust_remote_code}
        engine = build_engine(
            Reranker, reranker, model, DEFAULT_RERANKER, options, cross_encoder_kwargs, where="cross_encoder_kwargs"
        )
        super().__init__(
            model=engine.model_id,
            top_n=top_n,
            score_threshold=score_threshold,
            metadata_mode=MetadataMode(metadata_mode),
            keep_retrieval_score=keep_retrieval_score,
            rerank_fusion=RerankFusion.of(rerank_fusion),
            listwise=listwise,
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
        for i, node in enumerate(nodes):
            if not isinstance(node, NodeWithScore):
                hint = " (wrap it: NodeWithScore(node=node))" if isinstance(node, BaseNode) else ""
                raise TypeError(f"nodes[{i}] must be a NodeWithScore, got {type(node).__name__}{hint}")
        dispatcher.event(
            ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=self.top_n or len(nodes), model_name=self.model)
        )
        return query_bundle.query_str, [n.node.get_content(metadata_mode=self.metadata_mode) for n in nodes]

    def _rerank(self, query: str, texts: list[str], nodes: list[NodeWithScore]) -> list[RerankResult]:
        return self._engine.rerank(
            query,
            texts,
            top_n=self.top_n,
            score_threshold=self.score_threshold,
            listwise=self.listwise,
            first_stage_scores=[as_first_stage_score(n.score) for n in nodes] if self.rerank_fusion.active else None,
            fusion=self.rerank_fusion,
        )

    def _payload(self, nodes: list[NodeWithScore], query: str) -> dict[str, object]:
        return {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.model,
            EventPayload.QUERY_STR: query,
            EventPayload.TOP_K: self.top_n,
        }

    def _wrap(self, nodes: list[NodeWithScore], results: list[RerankResult]) -> list[NodeWithScore]:
        keep = self.keep_retrieval_score
        out: list[NodeWithScore] = [
            RerankedNode(
                node=_with_retrieval_score(nodes[r.index]) if keep else nodes[r.index].node,
                score=r.score,
                retrieval_score=nodes[r.index].score if keep else None,
                rerank_score=r.rerank_score,
            )
            for r in results
        ]
        dispatcher.event(ReRankEndEvent(nodes=out))
        return out

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        nodes = list(nodes)
        query, texts = self._query(nodes, query_bundle)
        with self.callback_manager.event(CBEventType.RERANKING, payload=self._payload(nodes, query)) as event:
            out = self._wrap(nodes, self._rerank(query, texts, nodes))
            event.on_end(payload={EventPayload.NODES: out})
        return out

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        nodes = list(nodes)
        query, texts = self._query(nodes, query_bundle)
        with self.callback_manager.event(CBEventType.RERANKING, payload=self._payload(nodes, query)) as event:
            out = self._wrap(nodes, await asyncio.to_thread(self._rerank, query, texts, nodes))
            event.on_end(payload={EventPayload.NODES: out})
        return out


_RETRIEVAL_SCORE = "retrieval_score"


def _with_retrieval_score(item: NodeWithScore) -> BaseNode:
    """A copy of the node with ``metadata["retrieval_score"]`` (as ``SentenceTransformerRerank`` sets it).

    The key is excluded from the embedded and the LLM text, so the score never leaks into either; the caller's node
    is left as it was.
    """
    node = item.node
    if item.score is None:
        return node
    copy = node.model_copy()
    copy.metadata = {**node.metadata, _RETRIEVAL_SCORE: item.score}
    for name in ("excluded_embed_metadata_keys", "excluded_llm_metadata_keys"):
        keys = list(getattr(node, name))
        setattr(copy, name, keys if _RETRIEVAL_SCORE in keys else [*keys, _RETRIEVAL_SCORE])
    return copy
