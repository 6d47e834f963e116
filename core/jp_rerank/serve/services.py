"""The loaded engines behind their scoring queues: what a route asks for, in the engine's own terms.

Scores are the engine's: a rerank request is scored by ``Reranker.score_many`` (batched with whatever else is
waiting) and ranked, fused or not, by :meth:`jp_rerank.fusion.RerankFusion.rank`, exactly as ``Reranker.rerank``
does. A ``listwise="softmax"`` request is one ``Reranker.rerank`` call of its own, since the normalisation over one
query's list lives in the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from jp_rerank._version import __version__
from jp_rerank.fusion import RerankFusion
from jp_rerank.hits import RerankResult, rank_scores
from jp_rerank.serve.batching import SOLO, BatchQueue, Ticket
from jp_rerank.serve.config import ServeConfig
from jp_rerank.serve.metrics import Metrics
from jp_rerank.serve.schemas import RerankRequest, TeiRerankRequest
from jp_rerank.types import Side

if TYPE_CHECKING:
    from jp_rerank.embed import Embedder
    from jp_rerank.rerank import Reranker

__all__ = ["EmbedService", "RerankService", "ServerState", "served_name"]

logger = logging.getLogger(__name__)

Wait = Callable[[Ticket], Awaitable[Any]]
"""How a route waits for its ticket (watching its client meanwhile)."""


def served_name(engine: Reranker | Embedder) -> str:
    """The name a model is served under: its hub id, or a local folder's name (never the server's path).

    Example:
        >>> from jp_rerank import Reranker
        >>> served_name(Reranker("xsmall"))
        'hotchpotch/japanese-reranker-cross-encoder-xsmall-v1'
    """
    source = engine.source
    if not source.is_local:
        return source.model_id
    return source.location.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]


class RerankService:
    """A loaded :class:`~jp_rerank.rerank.Reranker` behind one scoring queue.

    Args:
        reranker: The loaded reranker (the server's only one: requests cannot choose another).
        config: The server's limits and queue settings.
        metrics: Where batch sizes and drops are recorded.

    Example:
        >>> from jp_rerank import Reranker
        >>> service = RerankService(Reranker("xsmall", device="cpu").load(), ServeConfig(), Metrics())
        >>> service.name
        'hotchpotch/japanese-reranker-cross-encoder-xsmall-v1'
    """

    def __init__(self, reranker: Reranker, config: ServeConfig, metrics: Metrics) -> None:
        self.reranker = reranker
        self.config = config
        self.name = config.reranker_name or served_name(reranker)
        self.queue = BatchQueue(
            "reranker",
            self._run_batch,
            max_queue=config.queue_size,
            max_items=config.max_batch_pairs,
            max_requests=config.max_batch_requests,
            metrics=metrics,
        )

    def _run_batch(self, group: Hashable, payloads: Sequence[Any]) -> list[np.ndarray]:
        activation: Literal["none"] | None = "none" if group == "none" else None
        queries = [query for query, _ in payloads]
        documents = [docs for _, docs in payloads]
        return self.reranker.score_many(queries, documents, activation=activation)

    def submit_scores(self, query: str, documents: Sequence[str], *, raw: bool = False) -> Ticket:
        """Queue the scoring of one query's documents (``raw``: logits, activation ``"none"``)."""
        payload = (query, list(documents))
        group = "none" if raw else "auto"
        return self.queue.submit(payload, size=len(documents), group=group, max_wait_s=self.config.max_wait_s)

    def submit_call(self, call: Callable[[], Any], size: int) -> Ticket:
        """Queue one engine call that runs on its own (list-wise requests)."""
        return self.queue.submit(call, size=size, group=SOLO, max_wait_s=self.config.max_wait_s)

    async def rerank(self, req: RerankRequest, wait: Wait) -> list[RerankResult]:
        """Rank the request's documents as ``Reranker.rerank`` would (see the module notes)."""
        if not req.documents:
            return []
        fusion = RerankFusion.of(req.fusion, weight=req.fusion_weight)
        first = list(req.first_stage_scores) if req.first_stage_scores is not None else None
        if (req.listwise or self.reranker.listwise) == "softmax":
            reranker, documents = self.reranker, list(req.documents)

            def call() -> list[RerankResult]:
                return reranker.rerank(
                    req.query,
                    documents,
                    top_n=req.top_n,
                    score_threshold=req.score_threshold,
                    listwise="softmax",
                    first_stage_scores=first,
                    fusion=fusion,
                )

            return await wait(self.submit_call(call, len(documents)))
        scores = await wait(self.submit_scores(req.query, req.documents))
        return fusion.rank(scores, first, top_n=req.top_n, score_threshold=req.score_threshold)

    async def rerank_tei(self, req: TeiRerankRequest, wait: Wait) -> list[RerankResult]:
        """Score every text (TEI returns them all, best first); ``raw_scores`` gives the logits."""
        if not req.texts:
            return []
        scores = await wait(self.submit_scores(req.query, req.texts, raw=req.raw_scores))
        return rank_scores(scores)

    def info(self) -> dict[str, Any]:
        """What ``/info`` says about the reranker (no paths)."""
        plan = self.reranker.scoring_plan
        return {
            "model": self.name,
            "backend": plan.backend,
            "precision": plan.precision,
            "max_length": self.reranker.max_length,
            "overflow": self.reranker.overflow,
            "listwise": self.reranker.listwise,
        }


class EmbedService:
    """A loaded :class:`~jp_rerank.embed.Embedder` behind one queue (requests of one prompt side are combined).

    Args:
        embedder: The loaded embedder.
        config: The server's limits, queue settings and default prompt side.
        metrics: Where batch sizes and drops are recorded.

    Example:
        >>> from jp_rerank import Embedder
        >>> service = EmbedService(Embedder("me5-small", device="cpu").load(), ServeConfig(), Metrics())
        >>> service.side(None)
        'document'
    """

    def __init__(self, embedder: Embedder, config: ServeConfig, metrics: Metrics) -> None:
        self.embedder = embedder
        self.config = config
        self.name = config.embedder_name or served_name(embedder)
        self.dim = embedder.dim
        self.queue = BatchQueue(
            "embedder",
            self._run_batch,
            max_queue=config.queue_size,
            max_items=config.max_batch_pairs,
            max_requests=config.max_batch_requests,
            metrics=metrics,
        )

    def side(self, asked: Side | None) -> Side:
        """The prompt side of a request: the one it asked for, else the server's default."""
        return asked or self.config.embed_input_type

    def _run_batch(self, group: Hashable, payloads: Sequence[Any]) -> list[np.ndarray]:
        flat = [text for texts in payloads for text in texts]
        embed = self.embedder.embed_queries if group == "query" else self.embedder.embed_documents
        vectors = embed(flat)
        out, start = [], 0
        for texts in payloads:
            out.append(vectors[start : start + len(texts)])
            start += len(texts)
        return out

    async def embed(self, texts: Sequence[str], side: Side, wait: Wait) -> np.ndarray:
        """Embed ``texts`` with the prompt of ``side``; float32 ``(len(texts), dim)``."""
        ticket = self.queue.submit(list(texts), size=len(texts), group=side, max_wait_s=self.config.max_wait_s)
        result: np.ndarray = await wait(ticket)
        return result

    def info(self) -> dict[str, Any]:
        """What ``/info`` says about the embedder (no paths)."""
        return {
            "model": self.name,
            "dim": self.dim,
            "default_input_type": self.config.embed_input_type,
            "query_prefix": self.embedder.prefix("query"),
            "document_prefix": self.embedder.prefix("document"),
        }


class ServerState:
    """The server's engines, their queues and its readiness (``/health``).

    Args:
        reranker: The cross-encoder (loaded here if it is not yet), or ``None``.
        embedder: The embedder, or ``None``.
        config: Limits and settings.
        metrics: Where requests and batches are counted.

    Example:
        >>> from jp_rerank import Reranker
        >>> state = ServerState(Reranker("xsmall", device="cpu"), None, ServeConfig())
        >>> state.start()
        >>> state.ready, list(state.info()["model_type"])
        (True, ['reranker'])
        >>> state.stop()
    """

    def __init__(
        self,
        reranker: Reranker | None,
        embedder: Embedder | None,
        config: ServeConfig,
        metrics: Metrics | None = None,
    ) -> None:
        if reranker is None and embedder is None:
            raise ValueError("a server needs a reranker or an embedder (or both)")
        self.config = config
        self.metrics = metrics or Metrics()
        self._engines = (reranker, embedder)
        self.rerank: RerankService | None = None
        self.embed: EmbedService | None = None
        self.ready = False

    def start(self) -> None:
        """Load the engines (if needed), build their queues and start the workers."""
        reranker, embedder = self._engines
        if reranker is not None:
            self.rerank = RerankService(reranker.load(), self.config, self.metrics)
            self.rerank.queue.start()
        if embedder is not None:
            self.embed = EmbedService(embedder.load(), self.config, self.metrics)
            self.embed.queue.start()
        self.ready = True

    def stop(self) -> None:
        """Stop taking work; finish what is queued."""
        self.ready = False
        for service in (self.rerank, self.embed):
            if service is not None:
                service.queue.stop()

    def info(self) -> dict[str, Any]:
        """The TEI-like ``/info`` body (``model_type`` says reranker when one is loaded, else embedding)."""
        config = self.config
        main = self.rerank or self.embed
        body: dict[str, Any] = {
            "model_id": main.name if main else None,
            "model_sha": None,
            "model_dtype": self.rerank.reranker.scoring_plan.precision if self.rerank else "float32",
            "model_type": (
                {"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}}
                if self.rerank
                else {"embedding": {"pooling": "mean"}}
            ),
            "max_concurrent_requests": config.queue_size,
            "max_input_length": self.rerank.reranker.max_length if self.rerank else 512,
            "max_batch_tokens": config.max_batch_pairs,
            "max_client_batch_size": config.max_documents,
            "max_chars": config.max_chars,
            "tokenization_workers": 1,
            "version": __version__,
            "router": "jp-rerank",
        }
        body["reranker"] = self.rerank.info() if self.rerank else None
        body["embedder"] = self.embed.info() if self.embed else None
        return body
