"""LangChain integration of jp-rerank: Japanese embeddings, reranking compressor, cross-encoder and retriever.

Only ``langchain_core`` is imported (``pip install "jp-rerank[langchain]"``); models load on first use, so
importing this package does not import torch.

Example:
    >>> from langchain_jp_rerank import JapaneseReranker
    >>> JapaneseReranker(top_n=3).top_n
    3
"""

from __future__ import annotations

from jp_rerank.extras import require

require("langchain_core", "langchain")

from langchain_jp_rerank.cross_encoders import JapaneseCrossEncoder  # noqa: E402
from langchain_jp_rerank.embeddings import JapaneseEmbeddings  # noqa: E402
from langchain_jp_rerank.rerank import JapaneseReranker  # noqa: E402
from langchain_jp_rerank.retrievers import JapaneseRetriever  # noqa: E402

__all__ = ["JapaneseCrossEncoder", "JapaneseEmbeddings", "JapaneseReranker", "JapaneseRetriever"]
