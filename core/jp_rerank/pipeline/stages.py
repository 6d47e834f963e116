"""First-stage retrievers for :class:`~jp_rerank.pipeline.TwoStageRetriever`: dense, sparse (SPLADE) and BM25.

A first stage is any object with a ``name`` and a ``search_many(queries, k)`` method returning, per query, hits
that carry ``id``, ``score``, ``text`` and ``metadata`` (best first). The classes here adapt the engine's indexes
to that shape; pass your own object to the retriever to plug in another backend.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from jp_rerank._validate import check_positive_int, check_texts

if TYPE_CHECKING:
    from jp_rerank.embed.sparse import SparseIndex
    from jp_rerank.lexical import BM25Index

__all__ = ["BM25Stage", "Candidate", "FirstStage", "SparseStage", "StageHit"]


class StageHit(Protocol):
    """What a first stage returns per passage (read-only attributes)."""

    @property
    def id(self) -> str:
        """Passage id."""
        ...

    @property
    def score(self) -> float:
        """First-stage score (higher is better)."""
        ...

    @property
    def text(self) -> str:
        """Passage text (what the reranker reads)."""
        ...

    @property
    def metadata(self) -> Mapping[str, Any]:
        """Passage metadata."""
        ...


@runtime_checkable
class FirstStage(Protocol):
    """A first-stage retriever: finds up to ``k`` candidate passages per query, best first."""

    @property
    def name(self) -> str:
        """Short unique name (``"dense"``, ``"sparse"``, ``"bm25"``...), used as the timing key."""
        ...

    def search_many(self, queries: Sequence[str], k: int) -> Sequence[Sequence[StageHit]]:
        """Return, for each query, at most ``k`` hits sorted by descending score."""
        ...


@dataclass(frozen=True)
class Candidate:
    """A first-stage hit built by the stages of this module.

    Attributes:
        id: Passage id.
        score: First-stage score (a plain float).
        text: Passage text.
        metadata: The passage's metadata (the stage's own copy; the retriever copies it again for callers).
    """

    id: str
    score: float
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


def _copy_metadatas(metadatas: Sequence[Mapping[str, Any]] | None, n: int) -> list[dict[str, Any]]:
    """Deep-copy one metadata mapping per passage (empty dicts when ``None``)."""
    if metadatas is None:
        return [{} for _ in range(n)]
    if isinstance(metadatas, Mapping) or not isinstance(metadatas, Sequence):
        raise TypeError(f"metadatas must be a sequence of mappings, got {type(metadatas).__name__}")
    if len(metadatas) != n:
        raise ValueError(f"got {n} texts but {len(metadatas)} metadatas")
    out = []
    for i, meta in enumerate(metadatas):
        if not isinstance(meta, Mapping):
            raise TypeError(f"metadatas[{i}] must be a mapping, got {type(meta).__name__}")
        out.append(copy.deepcopy(dict(meta)))
    return out


class BM25Stage:
    """BM25 first stage over a :class:`~jp_rerank.lexical.BM25Index` (which keeps ids, not texts).

    Args:
        index: The built BM25 index.
        texts: Passage texts in index order (``index.ids`` order).
        metadatas: One mapping per passage (copied), default empty.
        name: Stage name.

    Example:
        >>> from jp_rerank.lexical import BM25Index
        >>> texts = ["富士山は日本一高い山です。", "京都には寺が多い。"]
        >>> stage = BM25Stage(BM25Index().index(texts, ids=["fuji", "kyoto"]), texts)
        >>> stage.search_many(["京都の寺"], k=1)[0][0].id
        'kyoto'
    """

    def __init__(
        self,
        index: BM25Index,
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        *,
        name: str = "bm25",
    ) -> None:
        items = check_texts(texts, name="texts")
        if len(items) != len(index):
            raise ValueError(f"the BM25 index holds {len(index)} passages but {len(items)} texts were given")
        self.index = index
        self._name = name
        self._texts = items
        self._metadatas = _copy_metadatas(metadatas, len(items))

    @property
    def name(self) -> str:
        """Stage name."""
        return self._name

    def __repr__(self) -> str:
        return f"BM25Stage(name={self._name!r}, index={self.index!r})"

    def search_many(self, queries: Sequence[str], k: int) -> list[list[Candidate]]:
        """BM25 search; only passages sharing a token with the query are returned."""
        check_positive_int(k, name="k")
        return [
            [
                Candidate(id=hit.id, score=hit.score, text=self._texts[hit.index], metadata=self._metadatas[hit.index])
                for hit in hits
            ]
            for hits in self.index.search_many(queries, k=k)
        ]


class SparseStage:
    """SPLADE first stage over a :class:`~jp_rerank.embed.SparseIndex` that has an embedder.

    Example:
        >>> from jp_rerank.embed import SparseEmbedder, SparseIndex
        >>> index = SparseIndex(SparseEmbedder("splade-ja"))  # doctest: +SKIP
        >>> index.add(["富士山は日本一高い山です。"], ids=["fuji"])  # doctest: +SKIP
        ['fuji']
        >>> SparseStage(index).search_many(["日本一の山"], k=1)[0][0].id  # doctest: +SKIP
        'fuji'
    """

    def __init__(self, index: SparseIndex, *, name: str = "sparse") -> None:
        if index.embedder is None:
            raise ValueError("SparseStage needs a SparseIndex built with an embedder (to encode queries)")
        self.index = index
        self._name = name

    @property
    def name(self) -> str:
        """Stage name."""
        return self._name

    def __repr__(self) -> str:
        return f"SparseStage(name={self._name!r}, index={self.index!r})"

    def search_many(self, queries: Sequence[str], k: int) -> Sequence[Sequence[StageHit]]:
        """Encode the queries once and return the best ``k`` passages by dot product (score > 0 only)."""
        return self.index.search_many(list(queries), k=k)
