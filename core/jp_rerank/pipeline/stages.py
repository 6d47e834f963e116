"""First-stage retrievers for :class:`~jp_rerank.pipeline.TwoStageRetriever`: dense, sparse (SPLADE) and BM25.

A first stage is any object with a ``name`` and a ``search_many(queries, k)`` method returning, per query, hits
that carry ``id``, ``score``, ``text`` and ``metadata`` (best first). The classes here adapt the engine's indexes
to that shape; pass your own object to the retriever to plug in another backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from jp_rerank._validate import check_positive_int, check_texts
from jp_rerank.errors import IndexMismatchError
from jp_rerank.index.base import MetadataValue, check_ids, check_metadatas

if TYPE_CHECKING:
    from jp_rerank.embed import Embedder, SparseIndex
    from jp_rerank.index import BackendName, VectorIndex
    from jp_rerank.lexical import BM25Index

__all__ = ["BM25Stage", "Candidate", "DenseStage", "FirstStage", "SparseStage", "StageHit", "check_metadatas"]


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


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a first stage name must be a non-empty str, got {name!r}")
    return name


class BM25Stage:
    """BM25 first stage over a :class:`~jp_rerank.lexical.BM25Index` (which keeps ids, not texts).

    Args:
        index: The built BM25 index.
        texts: Passage texts in index order (``index.ids`` order).
        metadatas: One flat mapping per passage (checked and copied, see :func:`check_metadatas`), default empty.
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
        metadatas: Sequence[Mapping[str, MetadataValue] | None] | None = None,
        *,
        name: str = "bm25",
    ) -> None:
        items = check_texts(texts, name="texts")
        if len(items) != len(index):
            raise ValueError(f"the BM25 index holds {len(index)} passages but {len(items)} texts were given")
        self.index = index
        self._name = _check_name(name)
        self._texts = items
        self._metadatas = check_metadatas(metadatas, len(items))

    @property
    def name(self) -> str:
        """Stage name."""
        return self._name

    def __repr__(self) -> str:
        return f"BM25Stage(name={self._name!r}, index={self.index!r})"

    def search_many(self, queries: Sequence[str], k: int) -> list[list[Candidate]]:
        """BM25 search; only passages sharing a token with the query are returned.

        Raises:
            ValueError: The index was changed after this stage was built (its size no longer matches the texts).
        """
        check_positive_int(k, name="k")
        if len(self.index) != len(self._texts):
            raise ValueError(
                f"the BM25 index now holds {len(self.index)} passages but this stage has {len(self._texts)} texts; "
                "build a new BM25Stage after changing the index"
            )
        return [
            [
                Candidate(
                    id=hit.id, score=hit.score, text=self._texts[hit.index], metadata=dict(self._metadatas[hit.index])
                )
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
        self._name = _check_name(name)

    @property
    def name(self) -> str:
        """Stage name."""
        return self._name

    def __repr__(self) -> str:
        return f"SparseStage(name={self._name!r}, index={self.index!r})"

    def search_many(self, queries: Sequence[str], k: int) -> Sequence[Sequence[StageHit]]:
        """Encode the queries once and return the best ``k`` passages by dot product (score > 0 only)."""
        return self.index.search_many(list(queries), k=k)


class DenseStage:
    """Dense first stage: queries embedded by an :class:`~jp_rerank.embed.Embedder`, searched in a vector index.

    Args:
        index: Vector index holding the passages (embedded with the same model, document prompt).
        embedder: Embeds the queries (query prompt applied).
        name: Stage name.

    Raises:
        IndexMismatchError: The index records another embedder id, or its dimension differs from the embedder's.

    Example:
        >>> from jp_rerank.embed import Embedder
        >>> emb = Embedder("static-ja")  # doctest: +SKIP
        >>> stage = DenseStage.build(["富士山は日本一高い山です。"], ids=["fuji"], embedder=emb)  # doctest: +SKIP
        >>> stage.search_many(["日本一の山"], k=1)[0][0].id  # doctest: +SKIP
        'fuji'
    """

    def __init__(self, index: VectorIndex, embedder: Embedder, *, name: str = "dense") -> None:
        if index.embedder_id is not None and index.embedder_id != embedder.model_id:
            raise IndexMismatchError(
                f"the vector index was built with embedder {index.embedder_id!r}, not {embedder.model_id!r}"
            )
        if index.dim != embedder.dim:
            raise IndexMismatchError(f"the vector index has dimension {index.dim}, the embedder {embedder.dim}")
        self.index = index
        self.embedder = embedder
        self._name = _check_name(name)

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        *,
        embedder: Embedder,
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, MetadataValue] | None] | None = None,
        backend: BackendName | str = "exact",
        batch_size: int = 256,
        name: str = "dense",
        **index_options: Any,
    ) -> DenseStage:
        """Embed ``texts`` (document prompt) into a new index of ``backend`` and return a stage over it.

        Args:
            texts: Passages.
            embedder: The dense embedder.
            ids: One unique id per passage (default ``"0"``, ``"1"``...).
            metadatas: One flat mapping per passage.
            backend: A name of :data:`jp_rerank.index.BACKENDS` (``"exact"``, ``"faiss-hnsw"``, ``"chroma"``...).
            batch_size: Passages embedded and written at a time.
            name: Stage name.
            **index_options: Passed to :func:`jp_rerank.index.make_index`.
        """
        from jp_rerank.index import Record, ingest, make_index

        items = check_texts(texts, name="texts")
        doc_ids = [str(i) for i in range(len(items))] if ids is None else check_ids(ids)
        if len(doc_ids) != len(items):
            raise ValueError(f"got {len(items)} texts but {len(doc_ids)} ids")
        metas = check_metadatas(metadatas, len(items))
        index = make_index(backend, embedder.dim, embedder_id=embedder.model_id, **index_options)
        records = [Record(i, t, m) for i, t, m in zip(doc_ids, items, metas, strict=True)]
        ingest(index, records, embedder.embed_documents, batch_size=batch_size, progress=False)
        return cls(index, embedder, name=name)

    @property
    def name(self) -> str:
        """Stage name."""
        return self._name

    def __repr__(self) -> str:
        return f"DenseStage(name={self._name!r}, index={self.index!r}, embedder={self.embedder!r})"

    def search_many(self, queries: Sequence[str], k: int) -> Sequence[Sequence[StageHit]]:
        """Embed the queries in one batch and return each one's ``k`` nearest passages."""
        check_positive_int(k, name="k")
        return self.index.search_batch(self.embedder.embed_queries(queries), k=k)
