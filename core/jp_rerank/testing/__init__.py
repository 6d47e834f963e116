"""Tiny offline models and data for tests — yours and ours (as ``numpy.testing`` is for numpy).

**Every model built here has random weights: its scores and embeddings mean nothing.** What is real is the
architecture class, the tokenizer type and the folder layout, which match the published models jp-rerank
presets name (XLM-R, BERT/MeCab and ModernBERT cross-encoders, dense sentence-transformers embedders with or
without saved prompts, StaticEmbedding, SPLADE). Use them to run code that loads models — jp-rerank's engines,
the LangChain and LlamaIndex adapters, your own pipeline — on a machine or CI runner that cannot reach the
Hugging Face Hub:

* ``build_*`` functions save a model folder and return its path (load it by path);
* :func:`install_tiny_hub` puts stand-ins under the presets' hub ids into a Hugging Face cache, so code that
  says ``Reranker("xsmall")`` runs offline with ``HF_HUB_OFFLINE=1``;
* :class:`GaussianMixture` makes clustered vectors for index tests (uniform random vectors have no neighbours
  worth finding).

Importing this module is light: torch, transformers and sentence-transformers are imported by the builders.

Example:
    >>> import tempfile
    >>> from jp_rerank import Reranker
    >>> from jp_rerank.testing import build_xlmr_cross_encoder
    >>> path = build_xlmr_cross_encoder(tempfile.mkdtemp() + "/ce")
    >>> scores = Reranker(path, device="cpu").score("富士山の高さは？", ["富士山は3776メートルです。", "京都の寺"])
    >>> scores.shape
    (2,)
"""

from __future__ import annotations

from jp_rerank.testing.hub_cache import TINY_HUB_MODELS, install_in_hf_cache, install_tiny_hub
from jp_rerank.testing.models import (
    build_bert_ja_cross_encoder,
    build_dense_embedder,
    build_modernbert_cross_encoder,
    build_splade_encoder,
    build_static_embedder,
    build_xlmr_cross_encoder,
)
from jp_rerank.testing.shapes import (
    DEFAULT_PROMPTS,
    MECAB_KWARGS,
    MODERNBERT_SPECIAL_TOKENS,
    RURI_PROMPTS,
    SHAPES,
    TINY_LOCAL_ATTENTION,
    XLMR_SPECIAL_TOKENS,
    Arch,
    ModelShape,
    ShapeName,
)
from jp_rerank.testing.synthetic import GaussianMixture
from jp_rerank.testing.tokenizers import (
    build_mecab_tokenizer,
    build_mecab_wordpiece_vocab,
    train_modernbert_tokenizer,
    train_unigram_tokenizer,
)

__all__ = [
    "DEFAULT_PROMPTS",
    "MECAB_KWARGS",
    "MODERNBERT_SPECIAL_TOKENS",
    "RURI_PROMPTS",
    "SHAPES",
    "TINY_HUB_MODELS",
    "TINY_LOCAL_ATTENTION",
    "XLMR_SPECIAL_TOKENS",
    "Arch",
    "GaussianMixture",
    "ModelShape",
    "ShapeName",
    "build_bert_ja_cross_encoder",
    "build_dense_embedder",
    "build_mecab_tokenizer",
    "build_mecab_wordpiece_vocab",
    "build_modernbert_cross_encoder",
    "build_splade_encoder",
    "build_static_embedder",
    "build_xlmr_cross_encoder",
    "install_in_hf_cache",
    "install_tiny_hub",
    "train_modernbert_tokenizer",
    "train_unigram_tokenizer",
]
