"""The dense first stage: an :class:`~jp_rerank.embed.Embedder` and a vector index, searched by query text.

:class:`DenseRetriever` is where the embed and index layers meet: queries get the embedder's query prompt,
passages its document prompt, and the vector index keeps their text and metadata. Like
:class:`~jp_rerank.lexical.BM25Index` and :class:`~jp_rerank.index.SparseIndex` it is a
:class:`~jp_rerank.hits.FirstStage` (``name``, ``search``, ``search_many``, ``add``, ``save``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jp_rerank.checks import check_ids, check_metadatas, check_positive_int, check_query, check_texts
from jp_rerank.defaults import DEFAULT_K
from jp_rerank.errors import IndexMismatchError
from jp_rerank.hits import SearchHit
from jp_rerank.index import Record, VectorIndex, ingest, load_index, make_index
from jp_rerank.types import MetadataValue

if TYPE_CHECKING:
    from jp_rerank.embed import Embedder
    from jp_rerank.index import IndexBackend

__all__ = ["DenseRetriever"]


def check_name(name: object) -> str:
    """Return a first stage's name if it is a non-empty string.

    Raises:
        ValueError: If it is not.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a first stage name must be a non-empty str, got {name!r}")
    return name


class DenseRetriever:
    """Dense first stage: queries embedded by an :class:`~jp_rerank.embed.Embedder`, searched in a vector index.

    Args:
        index: Vector index holding the passages (embedded with the same model, document prompt).
        embedder: Embeds queries (query prompt) and new passages (document prompt).
        name: Stage name.

    Raises:
        IndexMismatchError: The index records another embedder id, or its dimension differs from the embedder's.

    Example:
        >>> from jp_rerank.embed import Embedder
        >>> texts = ["富士山は日本一高い山です。", "京都には寺が多い。"]
        >>> dense = DenseRetriever.from_texts(texts, embedder=Embedder("me5-small"), ids=["fuji", "kyoto"])
        >>> sorted(h.id for h in dense.search("日本一の山", k=2))
        ['fuji', 'kyoto']
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
        self._name = check_name(name)

    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        *,
        embedder: Embedder,
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, MetadataValue] | None] | None = None,
        backend: IndexBackend | str = "exact",
        batch_size: int = 256,
        name: str = "dense",
        **index_options: Any,
    ) -> DenseRetriever:
        """Embed ``texts`` (document prompt) into a new index of ``backend`` and return a retriever over it.

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
        index = make_index(backend, embedder.dim, embedder_id=embedder.model_id, **index_options)
        retriever = cls(index, embedder, name=name)
        retriever.add(texts, ids, metadatas, batch_size=batch_size)
        return retriever

    @property
    def name(self) -> str:
        """Stage name."""
        return self._name

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"DenseRetriever(name={self._name!r}, index={self.index!r}, embedder={self.embedder!r})"

    def add(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, MetadataValue] | None] | None = None,
        *,
        batch_size: int = 256,
    ) -> list[str]:
        """Embed passages (document prompt) and add them; returns their ids.

        Args:
            texts: Passages.
            ids: One unique id per passage (default: continuing ``"0"``, ``"1"``... from the current size).
            metadatas: One flat mapping per passage.
            batch_size: Passages embedded and written at a time.
        """
        items = check_texts(texts, name="texts")
        start = len(self.index)
        doc_ids = [str(start + i) for i in range(len(items))] if ids is None else check_ids(ids)
        if len(doc_ids) != len(items):
            raise ValueError(f"got {len(items)} texts but {len(doc_ids)} ids")
        metas = check_metadatas(metadatas, len(items))
        records = [Record(i, t, m) for i, t, m in zip(doc_ids, items, metas, strict=True)]
        ingest(self.index, records, self.embedder.embed_documents, batch_size=batch_size, progress=False)
        return doc_ids

    def search(self, query: str, k: int = DEFAULT_K) -> list[SearchHit]:
        """Embed one query and return its ``k`` nearest passages."""
        return self.search_many([check_query(query)], k)[0]

    def search_many(self, queries: Sequence[str], k: int = DEFAULT_K) -> list[list[SearchHit]]:
        """Embed the queries in one batch and return each one's ``k`` nearest passages."""
        check_positive_int(k, name="k")
        items = check_texts(queries, name="queries")
        if not items:
            return []
        return self.index.search_many(self.embedder.embed_queries(items), k=k)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save the vector index as an atomic snapshot (its manifest records the embedder id)."""
        return self.index.save(Path(path))

    @classmethod
    def load(cls, path: str | os.PathLike[str], embedder: Embedder, *, name: str = "dense") -> DenseRetriever:
        """Load a vector index saved by :meth:`save` (any backend) and query it with ``embedder``.

        Raises:
            IndexMismatchError: The index was built with another embedder or dimension.
        """
        return cls(load_index(path, embedder_id=embedder.model_id), embedder, name=name)
