"""LlamaIndex integration of jp-rerank: Japanese reranking postprocessor, embedding model and retriever.

Example:
    >>> from llamaindex_jp_rerank import JapaneseEmbedding, JapaneseRerank
    >>> JapaneseRerank.class_name()
    'JapaneseRerank'
"""

from __future__ import annotations

from jp_rerank.extras import require

require("llama_index.core", "llamaindex")

from llamaindex_jp_rerank.embeddings import JapaneseEmbedding  # noqa: E402
from llamaindex_jp_rerank.postprocessor import JapaneseRerank, RerankedNode  # noqa: E402
from llamaindex_jp_rerank.retrievers import JapaneseRetriever  # noqa: E402

__all__ = ["JapaneseEmbedding", "JapaneseRerank", "JapaneseRetriever", "RerankedNode"]
