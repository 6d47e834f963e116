"""Indexes that keep passages (text and metadata) beside their vectors: exact (numpy), faiss, Chroma, sparse.

Every vector backend implements :class:`VectorIndex` (add / upsert / delete by string id, ``search`` and
``search_many`` with an optional ``where`` equality filter, ``save`` / ``load``), and the tests check each one
against :class:`ExactIndex`. :class:`SparseIndex` stores SPLADE rows and is a first stage by itself. Hits are
:class:`~jp_rerank.hits.SearchHit` objects ordered by one rule (score descending, ties by ascending id).
faiss and chromadb are imported only when a :class:`FaissIndex` or :class:`ChromaIndex` is built.

Example:
    >>> from jp_rerank.index import ExactIndex
    >>> index = ExactIndex(2)
    >>> index.add(["a", "b"], [[1.0, 0.0], [0.0, 1.0]], ["犬", "猫"], [{"lang": "ja"}, {"lang": "ja"}])
    >>> [h.id for h in index.search([0.9, 0.1], k=1, where={"lang": "ja"})]
    ['a']
"""

from __future__ import annotations

from jp_rerank.errors import IndexCorruptedError, IndexMismatchError
from jp_rerank.hits import SearchHit
from jp_rerank.index.base import Record, VectorIndex
from jp_rerank.index.chroma_index import ChromaIndex
from jp_rerank.index.exact import ExactIndex
from jp_rerank.index.faiss_codes import EncodedBatch
from jp_rerank.index.faiss_index import FaissIndex
from jp_rerank.index.faiss_kinds import FaissKind, FaissRefine
from jp_rerank.index.ingest import EmbedDocuments, IngestReport, RecordLike, ingest
from jp_rerank.index.registry import BACKENDS, IndexBackend, load_index, make_index
from jp_rerank.index.sparse import SparseIndex
from jp_rerank.index.vectors import Metric
from jp_rerank.snapshots import read_snapshot
from jp_rerank.types import Metadata, MetadataValue, Where

__all__ = [
    "BACKENDS",
    "ChromaIndex",
    "EmbedDocuments",
    "EncodedBatch",
    "ExactIndex",
    "FaissIndex",
    "FaissKind",
    "FaissRefine",
    "IndexBackend",
    "IndexCorruptedError",
    "IndexMismatchError",
    "IngestReport",
    "Metadata",
    "MetadataValue",
    "Metric",
    "Record",
    "RecordLike",
    "SearchHit",
    "SparseIndex",
    "VectorIndex",
    "Where",
    "ingest",
    "load_index",
    "make_index",
    "read_snapshot",
]
