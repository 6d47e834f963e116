"""Sizes and constants of the tiny (and real-size) random-weight models of :mod:`jp_rerank.testing`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = [
    "BERT_SPECIAL_TOKENS",
    "DEFAULT_PROMPTS",
    "MECAB_KWARGS",
    "MODEL_MAX_LENGTH",
    "MODERNBERT_MAX_LENGTH",
    "MODERNBERT_SPECIAL_TOKENS",
    "RURI_PROMPTS",
    "SHAPES",
    "TINY_LOCAL_ATTENTION",
    "XLMR_SPECIAL_TOKENS",
    "Arch",
    "ModelShape",
    "ShapeName",
    "resolve_shape",
]

ShapeName = Literal[
    "tiny",
    "xsmall",
    "small",
    "base",
    "large",
    "e5-small",
    "tiny-v2",
    "xsmall-v2",
    "small-v2",
    "base-v2",
    "ruri-v3-reranker-310m",
]
"""Names of the model sizes in :data:`SHAPES`."""

Arch = Literal["xlm-roberta", "bert", "modernbert"]
"""Encoder architectures the builders know (a dense embedder can be built with each)."""

XLMR_SPECIAL_TOKENS: tuple[str, ...] = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
"""Special tokens of the Unigram tokenizer, at ids 0..4 in this order."""

BERT_SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
"""Special tokens of the MeCab WordPiece vocabulary, at ids 0..4 in this order (as bert-base-japanese-v3)."""

MECAB_KWARGS: Mapping[str, str] = MappingProxyType({"mecab_dic": "unidic_lite"})
"""``mecab_kwargs`` of the MeCab tokenizer, as configured by cl-tohoku/bert-base-japanese-v3."""

MODERNBERT_SPECIAL_TOKENS: tuple[str, ...] = ("<unk>", "<s>", "</s>", "<pad>", "<sep>", "<mask>", "<cls>")
"""Special tokens of the ModernBERT-Ja-style tokenizer, at ids 0..6 in this order.

As published for sbintuitions/modernbert-ja-* (and the rerankers and Ruri v3 models built on it): its
``config.json`` names bos 1, eos 2, pad 3, sep 4 and cls 6, its ``special_tokens_map.json`` these seven tokens.
"""

DEFAULT_PROMPTS: Mapping[str, str] = MappingProxyType({"query": "query: ", "document": "passage: "})
"""multilingual-e5 style prompts saved into dense embedders by default."""

RURI_PROMPTS: Mapping[str, str] = MappingProxyType({"query": "検索クエリ: ", "document": "検索文書: "})
"""Ruri v3 retrieval prompts (cl-nagoya/ruri-v3-*), for ModernBERT embedders."""

MODEL_MAX_LENGTH = 512
"""Tokenizer ``model_max_length`` of the XLM-R and BERT toy models (the real presets' 512-token limit)."""

MODERNBERT_MAX_LENGTH = 8192
"""``max_position_embeddings`` (and tokenizer ``model_max_length``) of ModernBERT models, as ModernBERT-Ja's."""

TINY_LOCAL_ATTENTION = 16
"""Local attention window of the ``"tiny"`` ModernBERT: shorter than most test inputs, so sliding-window layers
really mask (the real models use 128)."""

DEFAULT_UNIGRAM_VOCAB = 4000
"""Requested Unigram vocabulary size; the bundled corpus supports fewer pieces, so the result is smaller."""


@dataclass(frozen=True)
class ModelShape:
    """Size of a toy transformer encoder.

    Attributes:
        hidden_size: Width of the hidden states.
        num_layers: Number of transformer layers.
        num_heads: Number of attention heads.
        intermediate_size: Width of the feed-forward layers.
        vocab_size: Embedding rows, or ``None`` for exactly the trained tokenizer's size. When larger than the
            tokenizer, the extra rows are simply never used.
        like: The real models this shape mirrors.
        arch: The architecture of those real models (``None``: any; the ``"tiny"`` shape is built in each).
        local_attention: ModernBERT's local attention window (ignored by the other architectures).

    Example:
        >>> SHAPES["tiny"].hidden_size
        32
        >>> SHAPES["xsmall-v2"].arch, SHAPES["xsmall-v2"].num_layers
        ('modernbert', 10)
    """

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int | None
    like: str
    arch: Arch | None = None
    local_attention: int = 128


_V2 = "ModernBERT: hotchpotch/japanese-reranker"
_JA_VOCAB = 102400  # ModernBERT-Ja's vocabulary (config.json "vocab_size")

# ModernBERT shapes. Published configs (sbintuitions/modernbert-ja-30m and -310m config.json): 30m is 10 layers x
# hidden 256, 4 heads, intermediate 1024; 310m is 25 x 768, 12 heads, 3072; both local_attention 128, a global
# layer every 3rd, 8192 positions, vocab 102400. Layers x hidden of the v2 rerankers are their model cards' (tiny
# 3 x 256, xsmall 10 x 256, small 13 x 384, base 19 x 512). Heads (hidden / 64) and intermediate (4 x hidden) follow
# the published 30m/310m configs; they reproduce the hub's parameter counts (29.4M, 36.8M, 70.2M, ~0.13B).
SHAPES: Mapping[str, ModelShape] = MappingProxyType(
    {
        "tiny": ModelShape(32, 2, 2, 64, None, "tests only", local_attention=TINY_LOCAL_ATTENTION),
        "xsmall": ModelShape(
            384, 6, 12, 1536, 250002, "XLM-R: hotchpotch/japanese-reranker-cross-encoder-xsmall-v1", "xlm-roberta"
        ),
        "small": ModelShape(
            384, 12, 12, 1536, 250002, "XLM-R: hotchpotch/japanese-reranker-cross-encoder-small-v1", "xlm-roberta"
        ),
        "base": ModelShape(
            768, 12, 12, 3072, 32768, "BERT: hotchpotch/japanese-reranker-cross-encoder-base-v1", "bert"
        ),
        "large": ModelShape(
            1024, 24, 16, 4096, 32768, "BERT: hotchpotch/japanese-reranker-cross-encoder-large-v1", "bert"
        ),
        "e5-small": ModelShape(384, 12, 12, 1536, 250002, "dense: intfloat/multilingual-e5-small", "xlm-roberta"),
        "tiny-v2": ModelShape(256, 3, 4, 1024, _JA_VOCAB, f"{_V2}-tiny-v2", "modernbert"),
        "xsmall-v2": ModelShape(256, 10, 4, 1024, _JA_VOCAB, f"{_V2}-xsmall-v2", "modernbert"),
        "small-v2": ModelShape(384, 13, 6, 1536, _JA_VOCAB, f"{_V2}-small-v2", "modernbert"),
        "base-v2": ModelShape(512, 19, 8, 2048, _JA_VOCAB, f"{_V2}-base-v2", "modernbert"),
        "ruri-v3-reranker-310m": ModelShape(
            768, 25, 12, 3072, _JA_VOCAB, "ModernBERT: cl-nagoya/ruri-v3-reranker-310m", "modernbert"
        ),
    }
)
"""Model sizes by name: ``"tiny"`` for tests, real-size random-weight shapes for speed benchmarks."""


def resolve_shape(shape: str) -> ModelShape:
    """Return the shape named ``shape``.

    Raises:
        ValueError: If the name is unknown (the message lists the known ones).

    Example:
        >>> resolve_shape("tiny").num_layers
        2
    """
    try:
        return SHAPES[shape]
    except KeyError:
        raise ValueError(f"unknown shape {shape!r}; known shapes: {sorted(SHAPES)}") from None
