"""jp-rerank: Japanese retrieval for RAG — cross-encoder reranking, Japanese embedders and BM25, indexes, fusion.

Importing this package is cheap: torch, transformers, faiss, chromadb, LangChain and LlamaIndex are imported only
when a model or backend is first used.

Example:
    >>> from jp_rerank import Reranker, normalize_text
    >>> normalize_text("ﾃｽﾄ　ＡＢＣ")
    'テスト ABC'
"""

from __future__ import annotations

from jp_rerank._version import __version__
from jp_rerank.embed import Embedder, SparseEmbedder
from jp_rerank.errors import IndexCorruptedError, IndexMismatchError, JpRerankError, ModelLoadError
from jp_rerank.hits import FirstStage, RerankResult, SearchHit
from jp_rerank.index import SparseIndex
from jp_rerank.lexical import BM25Index
from jp_rerank.pipeline import DenseRetriever, TwoStageRetriever
from jp_rerank.presets import (
    DEFAULT_EMBEDDER,
    DEFAULT_RERANKER,
    DEFAULT_SPARSE,
    ModelPreset,
    get_preset,
    list_presets,
)
from jp_rerank.rerank import Reranker
from jp_rerank.text import normalize_text
from jp_rerank.training import train  # light: torch, transformers and datasets load when it runs

__all__ = [
    "DEFAULT_EMBEDDER",
    "DEFAULT_RERANKER",
    "DEFAULT_SPARSE",
    "BM25Index",
    "DenseRetriever",
    "Embedder",
    "FirstStage",
    "IndexCorruptedError",
    "IndexMismatchError",
    "JpRerankError",
    "ModelLoadError",
    "ModelPreset",
    "RerankResult",
    "Reranker",
    "SearchHit",
    "SparseEmbedder",
    "SparseIndex",
    "TwoStageRetriever",
    "__version__",
    "get_preset",
    "list_presets",
    "normalize_text",
    "train",
]
