"""Japanese lexical retrieval: BM25 (built on ``bm25s``) with MeCab, Sudachi or character n-gram tokens.

Importing this package is cheap: fugashi, sudachipy and bm25s are imported when first used.

Example:
    >>> from jp_rerank.lexical import BM25Index
    >>> index = BM25Index().index(["東京は日本の首都です。", "大阪はたこ焼きで有名です。"])
    >>> index.search("たこ焼きの街")[0].id
    '1'
"""

from __future__ import annotations

from jp_rerank.lexical.bm25 import DEFAULT_B, DEFAULT_K1, DEFAULT_METHOD, DEFAULT_TOKENIZER, BM25Index
from jp_rerank.lexical.bm25_scoring import BM25Method
from jp_rerank.lexical.tokenizers import (
    FUNCTION_WORD_POS,
    CharNgramTokenizer,
    MeCabTokenizer,
    SudachiTokenizer,
    Tokenizer,
    get_tokenizer,
    prepare_text,
)

__all__ = [
    "DEFAULT_B",
    "DEFAULT_K1",
    "DEFAULT_METHOD",
    "DEFAULT_TOKENIZER",
    "FUNCTION_WORD_POS",
    "BM25Index",
    "BM25Method",
    "CharNgramTokenizer",
    "MeCabTokenizer",
    "SudachiTokenizer",
    "Tokenizer",
    "get_tokenizer",
    "prepare_text",
]
