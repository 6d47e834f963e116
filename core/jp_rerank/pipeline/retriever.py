"""The two-stage retriever: first stage(s) → fusion → cross-encoder rerank → top passages."""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

from jp_rerank._pickling import FreshOnCopy
from jp_rerank.checks import check_ids, check_metadatas, check_positive_int, check_query, check_texts
from jp_rerank.defaults import DEFAULT_BM25_TOKENIZER, DEFAULT_FIRST_K
from jp_rerank.embed import Embedder, SparseEmbedder
from jp_rerank.fusion import (
    Normalization,
    RerankFusion,
    check_weights,
    reciprocal_rank_fusion,
    weighted_score_fusion,
)
from jp_rerank.hits import FIRST_STAGE, RERANK, FirstStage, SearchHit, check_ranking, rank
from jp_rerank.index import IndexBackend, SparseIndex
from jp_rerank.lexical import BM25Index
from jp_rerank.pipeline.dense import DenseRetriever
from jp_rerank.rerank import Reranker
from jp_rerank.types import MetadataValue

__all__ = ["FusionMethod", "TwoStageRetriever"]

FusionMethod = Literal["rrf", "weighted"]


class TwoStageRetriever(FreshOnCopy):
    """Retrieve ``first_k`` candidates with one or more first stages, fuse them, rerank, keep ``top_n``.

    With several first stages (hybrid), their rankings are fused per query by reciprocal rank fusion
    (``fusion="rrf"``) or a weighted sum of normalised scores (``fusion="weighted"``; see :mod:`jp_rerank.fusion`),
    and the best ``first_k`` fused candidates go on. The reranker (``Reranker.rerank_many``, batches shared across
    queries) scores every candidate; the ``top_n`` best come back, dropping those under ``score_threshold``.
    Without a reranker the first-stage order is the answer and the threshold applies to the first-stage score.

    Results are :class:`~jp_rerank.hits.SearchHit` objects: ``score`` is the ranking score (the reranker's, else the
    first stage's), ``scores`` holds ``"first_stage"`` (the fused score with several stages), ``"rerank"`` (with a
    reranker) and each stage's own score by stage name; ``first_stage_score`` / ``rerank_score`` read them.
    Equal scores are ordered by ascending id (the engine's one rule). A candidate's text and metadata come from
    the first stage (in ``first_stages`` order) that returned it.

    ``last_timings`` holds the seconds spent in the most recent finished call (from any thread): one key per first
    stage name (query encoding included), ``"fusion"`` (several stages only), ``"rerank"`` (with a reranker) and
    ``"total"``. Concurrent ``retrieve`` calls are safe; each replaces ``last_timings`` whole when it finishes.

    Args:
        first_stages: The first-stage retrievers (see :class:`~jp_rerank.hits.FirstStage`), unique names.
        reranker: Cross-encoder applied to the candidates; ``None`` for first stage only.
        first_k: Candidates per first stage, and fused candidates handed to the reranker.
        top_n: Passages returned per query.
        score_threshold: Drop passages whose ``score`` is below it.
        fusion: ``"rrf"`` or ``"weighted"``.
        rrf_k: The rank offset of reciprocal rank fusion.
        weights: Per-stage fusion weights, by stage name (mapping) or in ``first_stages`` order; default all 1.
        normalization: Score normalisation of weighted fusion: ``"minmax"`` or ``"zscore"``.
        rerank_fusion: Combine the reranker's score with the (fused) first-stage score per query: ``None`` /
            ``"none"`` (default: rerank only), ``"zscore"``, ``"minmax"``, ``"rrf"`` (weight 0.5) or a
            :class:`~jp_rerank.fusion.RerankFusion` with its weight. ``score`` is then the combined score (the
            threshold applies to it); ``scores["rerank"]`` keeps the reranker's own.

    Example:
        >>> from jp_rerank.data import load_demo_corpus
        >>> docs = load_demo_corpus()
        >>> retriever = TwoStageRetriever.from_texts([d["text"] for d in docs], ids=[d["id"] for d in docs], top_n=2)
        >>> [p.id for p in retriever.retrieve("富士山の標高は何メートル？")][0]
        'doc-001'
    """

    _fresh_on_copy: ClassVar[dict[str, Callable[[], Any]]] = {"_timings_lock": threading.Lock}

    def __init__(
        self,
        *,
        first_stages: Sequence[FirstStage],
        reranker: Reranker | None = None,
        first_k: int = DEFAULT_FIRST_K,
        top_n: int = 10,
        score_threshold: float | None = None,
        fusion: FusionMethod = "rrf",
        rrf_k: int = 60,
        weights: Mapping[str, float] | Sequence[float] | None = None,
        normalization: Normalization = "minmax",
        rerank_fusion: RerankFusion | str | None = None,
    ) -> None:
        if _is_first_stage(first_stages) or not isinstance(first_stages, Sequence):
            raise TypeError("first_stages must be a sequence of first-stage retrievers")
        stages = tuple(first_stages)
        if not stages:
            raise ValueError("first_stages is empty; give at least one first-stage retriever")
        for i, stage in enumerate(stages):
            if not _is_first_stage(stage):
                raise TypeError(f"first_stages[{i}] has no name and search_many(queries, k): {type(stage).__name__}")
        names = [stage.name for stage in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"first stage names must be unique, got {names}")
        if fusion not in ("rrf", "weighted"):
            raise ValueError(f"fusion must be 'rrf' or 'weighted', got {fusion!r}")
        if normalization not in ("minmax", "zscore"):
            raise ValueError(f"normalization must be 'minmax' or 'zscore', got {normalization!r}")
        if isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 0:
            raise ValueError(f"rrf_k must be an int >= 0, got {rrf_k!r}")
        self.first_stages: tuple[FirstStage, ...] = stages
        self.reranker = reranker
        self.first_k = check_positive_int(first_k, name="first_k")
        self.top_n = check_positive_int(top_n, name="top_n")
        _, self.score_threshold = check_ranking(score_threshold=score_threshold)
        self.fusion: FusionMethod = fusion
        self.rrf_k = rrf_k
        self.normalization: Normalization = normalization
        self.weights: tuple[float, ...] | None = _stage_weights(weights, names)
        self.rerank_fusion = RerankFusion.of(rerank_fusion)
        self._timings_lock = threading.Lock()
        self._last_timings: dict[str, float] = {}

    def __repr__(self) -> str:
        names = [stage.name for stage in self.first_stages]
        return (
            f"TwoStageRetriever(first_stages={names}, reranker={self.reranker!r}, first_k={self.first_k}, "
            f"top_n={self.top_n}, fusion={self.fusion!r})"
        )

    @property
    def last_timings(self) -> dict[str, float]:
        """Seconds per stage of the most recent finished call (a copy; empty before the first call)."""
        with self._timings_lock:
            return dict(self._last_timings)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, MetadataValue] | None] | None = None,
        embedder: Embedder | str | os.PathLike[str] | None = None,
        bm25: str | None = DEFAULT_BM25_TOKENIZER,
        sparse: SparseEmbedder | str | os.PathLike[str] | None = None,
        reranker: Reranker | str | os.PathLike[str] | None = None,
        vector_backend: IndexBackend | str = "exact",
        vector_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> TwoStageRetriever:
        """Index passages with the chosen first stages and build a retriever over them.

        First stages are built in the order dense (``embedder``), sparse (``sparse``), BM25 (``bm25``), for those
        that are set; that order is the order of ``weights`` given as a sequence and of fusion tie-breaks.

        Args:
            texts: Passages.
            ids: One unique id per passage (default ``"0"``, ``"1"``...).
            metadatas: One flat mapping per passage (``str`` keys; ``str``, ``int``, finite ``float`` or ``bool``
                values, as the vector indexes require), checked and copied; default empty.
            embedder: Dense embedder (object, alias, hub id or local path); ``None`` for no dense stage.
            bm25: BM25 tokenizer spec (``"mecab"``, ``"char2"``, ``"sudachi"``...); ``None`` for no BM25 stage.
            sparse: SPLADE encoder (object, alias, hub id or local path); ``None`` for no sparse stage.
            reranker: Cross-encoder (object, alias, hub id or local path); ``None`` for first stage only.
            vector_backend: Vector index of the dense stage: ``"exact"``, ``"faiss-flat"``, ``"faiss-hnsw"``,
                ``"faiss-ivfpq"`` or ``"chroma"`` (see :func:`jp_rerank.index.make_index`).
            vector_options: Options of that index (e.g. ``{"ef_search": 64}``).
            **kwargs: Passed to the constructor (``first_k``, ``top_n``, ``score_threshold``, ``fusion``...).

        Raises:
            ValueError: No first stage chosen, no texts, duplicate ids, or lengths that differ.
        """
        items = check_texts(texts, name="texts")
        if not items:
            raise ValueError("texts is empty; give at least one passage to index")
        if embedder is None and bm25 is None and sparse is None:
            raise ValueError("no first stage: set at least one of embedder, sparse or bm25")
        doc_ids = [str(i) for i in range(len(items))] if ids is None else check_ids(ids)
        if len(doc_ids) != len(items):
            raise ValueError(f"got {len(items)} texts but {len(doc_ids)} ids")
        metas = check_metadatas(metadatas, len(items))
        stages: list[FirstStage] = []
        if embedder is not None:
            dense = embedder if isinstance(embedder, Embedder) else Embedder(embedder)
            options = dict(vector_options or {})
            stages.append(
                DenseRetriever.from_texts(
                    items, ids=doc_ids, metadatas=metas, embedder=dense, backend=vector_backend, **options
                )
            )
        if sparse is not None:
            encoder = sparse if isinstance(sparse, SparseEmbedder) else SparseEmbedder(sparse)
            sparse_index = SparseIndex(encoder)
            sparse_index.add(items, doc_ids, metas)
            stages.append(sparse_index)
        if bm25 is not None:
            stages.append(BM25Index(bm25).index(items, doc_ids, metas))
        cross: Reranker | None = None
        if reranker is not None:
            cross = reranker if isinstance(reranker, Reranker) else Reranker(reranker)
        return cls(first_stages=stages, reranker=cross, **kwargs)

    # ------------------------------------------------------------------ retrieval
    def retrieve(self, query: str, *, top_n: int | None = None, first_k: int | None = None) -> list[SearchHit]:
        """Return the best passages for one query, by descending ``score``.

        At most ``top_n`` passages come back, and never more than the ``first_k`` candidates the first stage(s)
        handed on.

        Args:
            query: The question (non-empty).
            top_n: Passages to return (default: the retriever's ``top_n``).
            first_k: Candidates per first stage (default: the retriever's ``first_k``).

        Raises:
            ValueError: Empty or whitespace query; ``top_n`` or ``first_k`` not positive; a first stage that
                returned one id twice for the query.
            TypeError: A non-string query.
        """
        check_query(query)
        return self.retrieve_many([query], top_n=top_n, first_k=first_k)[0]

    def retrieve_many(
        self, queries: Sequence[str], *, top_n: int | None = None, first_k: int | None = None
    ) -> list[list[SearchHit]]:
        """Retrieve for several queries at once: batched first stages and one shared rerank.

        Returns:
            One list per query, each equal to ``retrieve(query)``.
        """
        items = check_texts(queries, name="queries")
        for i, q in enumerate(items):
            check_query(q, name=f"queries[{i}]" if len(items) > 1 else "query")
        n = self.top_n if top_n is None else check_positive_int(top_n, name="top_n")
        k = self.first_k if first_k is None else check_positive_int(first_k, name="first_k")
        if not items:
            return []
        timings: dict[str, float] = {}
        start = time.perf_counter()
        per_stage: list[Sequence[Sequence[SearchHit]]] = []
        for stage in self.first_stages:
            t0 = time.perf_counter()
            results = stage.search_many(items, k)
            timings[stage.name] = time.perf_counter() - t0
            if len(results) != len(items):
                raise ValueError(
                    f"first stage {stage.name!r} returned {len(results)} result lists for {len(items)} queries"
                )
            per_stage.append(results)
        t0 = time.perf_counter()
        candidates = [self._fuse([results[qi] for results in per_stage], k) for qi in range(len(items))]
        if len(per_stage) > 1:
            timings["fusion"] = time.perf_counter() - t0
        if self.reranker is None:
            out = [self._ranked(cands, [c.score for c in cands], n, reranked=False) for cands in candidates]
        else:
            t0 = time.perf_counter()
            scores = self.reranker.score_many(items, [[c.text for c in cands] for cands in candidates])
            timings["rerank"] = time.perf_counter() - t0
            out = [
                self._ranked(cands, values.tolist(), n, reranked=True)
                for cands, values in zip(candidates, scores, strict=True)
            ]
        timings["total"] = time.perf_counter() - start
        with self._timings_lock:
            self._last_timings = timings
        return out

    def _fuse(self, rankings: list[Sequence[SearchHit]], k: int) -> list[SearchHit]:
        """Merge one query's stage rankings into at most ``k`` candidates, best first."""
        by_id: dict[str, SearchHit] = {}
        for stage, hits in zip(self.first_stages, rankings, strict=True):
            seen: set[str] = set()
            for hit in hits:
                if hit.id in seen:
                    raise ValueError(f"first stage {stage.name!r} returned id {hit.id!r} more than once for one query")
                seen.add(hit.id)
                by_id.setdefault(hit.id, hit)
        names = [stage.name for stage in self.first_stages]
        if len(rankings) == 1:
            return [
                SearchHit(h.id, float(h.score), h.text, dict(h.metadata), {names[0]: float(h.score)})
                for h in list(rankings[0])[:k]
            ]
        if self.fusion == "rrf":
            fused = reciprocal_rank_fusion(rankings, k=self.rrf_k, weights=self.weights, top_n=k, names=names)
        else:
            fused = weighted_score_fusion(
                rankings, weights=self.weights, normalization=self.normalization, top_n=k, names=names
            )
        return [SearchHit(f.id, f.score, by_id[f.id].text, dict(by_id[f.id].metadata), dict(f.scores)) for f in fused]

    def _ranked(
        self, candidates: list[SearchHit], scores: list[float], top_n: int, *, reranked: bool
    ) -> list[SearchHit]:
        """The ``top_n`` candidates by ``scores`` (ties: ascending id) at or above the threshold, as results.

        With a reranker and ``rerank_fusion``, the candidates are ranked by the combined score.
        """
        final = self.rerank_fusion.fuse(scores, [c.score for c in candidates]) if reranked else list(scores)
        best = rank(final, top_n, ids=[c.id for c in candidates], min_score=self.score_threshold)
        out = []
        for i in best:
            cand = candidates[i]
            stage_scores = {**cand.scores, FIRST_STAGE: float(cand.score)}
            if reranked:
                stage_scores[RERANK] = float(scores[i])
            meta = copy.deepcopy(dict(cand.metadata))
            out.append(SearchHit(cand.id, float(final[i]), cand.text, meta, stage_scores))
        return out


def _is_first_stage(stage: object) -> bool:
    """What the pipeline needs of a first stage: a ``name`` and ``search_many(queries, k)``."""
    return isinstance(getattr(stage, "name", None), str) and callable(getattr(stage, "search_many", None))


def _stage_weights(weights: Mapping[str, float] | Sequence[float] | None, names: list[str]) -> tuple[float, ...] | None:
    if weights is None:
        return None
    if isinstance(weights, Mapping):
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise ValueError(f"weights name unknown first stages {unknown}; stages are {names}")
        values: list[float] = [weights.get(name, 1.0) for name in names]
    else:
        values = list(weights)
    return tuple(check_weights(values, len(names)))
