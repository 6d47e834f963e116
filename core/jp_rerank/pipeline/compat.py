"""Deprecated first-stage wrappers of jp-rerank 0.1, kept for one release.

:class:`~jp_rerank.lexical.BM25Index` and :class:`~jp_rerank.index.SparseIndex` are first stages by themselves
now (they keep texts and metadata and have a ``name``); pass them to the pipeline directly.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

from jp_rerank.checks import check_metadatas, check_positive_int, check_texts
from jp_rerank.defaults import DEFAULT_K
from jp_rerank.hits import SearchHit
from jp_rerank.index import SparseIndex
from jp_rerank.lexical import BM25Index
from jp_rerank.pipeline.dense import check_name
from jp_rerank.types import MetadataValue

__all__ = ["BM25Stage", "SparseStage"]


class BM25Stage:
    """Deprecated: a BM25 index with texts and metadata given beside it (use the :class:`BM25Index` itself).

    Example:
        >>> import warnings
        >>> warnings.simplefilter("ignore", DeprecationWarning)
        >>> stage = BM25Stage(BM25Index().index(["京都には寺が多い。"], ids=["kyoto"]), ["京都には寺が多い。"])
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
        warnings.warn("BM25Stage is deprecated; pass the BM25Index itself as a first stage", DeprecationWarning, 2)
        items = check_texts(texts, name="texts")
        if len(items) != len(index):
            raise ValueError(f"the BM25 index holds {len(index)} passages but {len(items)} texts were given")
        self.index = index
        self._name = check_name(name)
        self._texts = items
        self._metadatas = check_metadatas(metadatas, len(items))
        self._position = {doc_id: i for i, doc_id in enumerate(index.ids)}

    @property
    def name(self) -> str:
        """Stage name."""
        return self._name

    def search(self, query: str, k: int = DEFAULT_K) -> list[SearchHit]:
        """BM25 search of one query."""
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int = DEFAULT_K) -> list[list[SearchHit]]:
        """BM25 search; texts and metadata come from the lists given to the constructor."""
        check_positive_int(k, name="k")
        if len(self.index) != len(self._texts):
            raise ValueError(
                f"the BM25 index now holds {len(self.index)} passages but this stage has {len(self._texts)} texts; "
                "build a new BM25Stage after changing the index"
            )
        out = []
        for hits in self.index.search_many(queries, k=k):
            rows = [self._position[h.id] for h in hits]
            out.append(
                [
                    SearchHit(h.id, h.score, self._texts[r], dict(self._metadatas[r]))
                    for h, r in zip(hits, rows, strict=True)
                ]
            )
        return out


def SparseStage(index: SparseIndex, *, name: str = "sparse") -> SparseIndex:  # noqa: N802 - was a class
    """Deprecated: return ``index`` (a :class:`SparseIndex` with an embedder is a first stage by itself)."""
    warnings.warn("SparseStage is deprecated; pass the SparseIndex itself as a first stage", DeprecationWarning, 2)
    if index.embedder is None:
        raise ValueError("SparseStage needs a SparseIndex built with an embedder (to encode queries)")
    if name != index.name:
        index._name = check_name(name)
    return index
