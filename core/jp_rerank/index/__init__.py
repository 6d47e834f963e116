"""Vector indexes with documents and metadata beside them: exact (numpy), faiss, Chroma; persistence; ingestion.

Every backend implements :class:`VectorIndex` (add / upsert / delete by string id, ``search`` and
``search_batch`` with an optional ``where`` equality filter, ``save`` / ``load``), and the tests check each one
against :class:`ExactIndex`. faiss and chromadb are imported only when a :class:`FaissIndex` or
:class:`ChromaIndex` is built.

Example:
    >>> from jp_rerank.index import ExactIndex
    >>> index = ExactIndex(2)
    >>> index.add(["a", "b"], [[1.0, 0.0], [0.0, 1.0]], ["犬", "猫"], [{"lang": "ja"}, {"lang": "ja"}])
    >>> [h.id for h in index.search([0.9, 0.1], k=1, where={"lang": "ja"})]
    ['a']
"""

from __future__ import annotations

from jp_rerank.errors import IndexMismatchError
from jp_rerank.index.base import (
    IndexCorruptedError,
    Metadata,
    MetadataValue,
    Metric,
    Record,
    SearchHit,
    VectorIndex,
    Where,
)
from jp_rerank.index.chroma_index import ChromaIndex
from jp_rerank.index.exact import ExactIndex
from jp_rerank.index.factory import BACKENDS, BackendName, make_index
from jp_rerank.index.faiss_index import FaissIndex, FaissKind, FaissRefine
from jp_rerank.index.ingest import EmbedDocuments, IngestReport, RecordLike, ingest
from jp_rerank.index.persist import load_index, read_snapshot

__all__ = [
    "BACKENDS",
    "BackendName",
    "ChromaIndex",
    "EmbedDocuments",
    "ExactIndex",
    "FaissIndex",
    "FaissKind",
    "FaissRefine",
    "IndexCorruptedError",
    "IndexMismatchError",
    "IngestReport",
    "Metadata",
    "MetadataValue",
    "Metric",
    "Record",
    "RecordLike",
    "SearchHit",
    "VectorIndex",
    "Where",
    "ingest",
    "load_index",
    "make_index",
    "read_snapshot",
]
