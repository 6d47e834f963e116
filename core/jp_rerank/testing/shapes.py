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
    "SHAPES",
    "XLMR_SPECIAL_TOKENS",
    "Arch",
    "ModelShape",
    "ShapeName",
    "resolve_shape",
]

ShapeName = Literal["tiny", "xsmall", "small", "base", "large", "e5-small"]
"""Names of the model sizes in :data:`SHAPES`."""

Arch = Literal["xlm-roberta", "bert"]
"""Encoder architectures a dense embedder can be built with."""

XLMR_SPECIAL_TOKENS: tuple[str, ...] = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
"""Special tokens of the Unigram tokenizer, at ids 0..4 in this order."""

BERT_SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
"""Special tokens of the MeCab WordPiece vocabulary, at ids 0..4 in this order (as bert-base-japanese-v3)."""

MECAB_KWARGS: Mapping[str, str] = MappingProxyType({"mecab_dic": "unidic_lite"})
"""``mecab_kwargs`` of the MeCab tokenizer, as configured by cl-tohoku/bert-base-japanese-v3."""

DEFAULT_PROMPTS: Mapping[str, str] = MappingProxyType({"query": "query: ", "document": "passage: "})
"""multilingual-e5 style prompts saved into dense embedders by default."""

MODEL_MAX_LENGTH = 512
"""Tokenizer ``model_max_length`` of every toy model (the real presets' 512-token limit)."""

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

    Example:
        >>> SHAPES["tiny"].hidden_size
        32
    """

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int | None
    like: str


SHAPES: Mapping[str, ModelShape] = MappingProxyType(
    {
        "tiny": ModelShape(32, 2, 2, 64, None, "tests only"),
        "xsmall": ModelShape(384, 6, 12, 1536, 250002, "XLM-R: hotchpotch/japanese-reranker-cross-encoder-xsmall-v1"),
        "small": ModelShape(384, 12, 12, 1536, 250002, "XLM-R: hotchpotch/japanese-reranker-cross-encoder-small-v1"),
        "base": ModelShape(768, 12, 12, 3072, 32768, "BERT: hotchpotch/japanese-reranker-cross-encoder-base-v1"),
        "large": ModelShape(1024, 24, 16, 4096, 32768, "BERT: hotchpotch/japanese-reranker-cross-encoder-large-v1"),
        "e5-small": ModelShape(384, 12, 12, 1536, 250002, "dense: intfloat/multilingual-e5-small"),
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
