"""Random-weight models built in code, with the same architecture classes as the real presets.

**These models have random weights: their scores and embeddings mean nothing.** Every builder saves a folder
that loads through the ordinary public paths (``sentence_transformers.CrossEncoder``, ``SentenceTransformer``,
``SparseEncoder``, ``transformers.AutoTokenizer`` / ``AutoModelForSequenceClassification``) and returns its path.
Builds are deterministic for a given ``seed`` and do not disturb the caller's torch random state.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from jp_rerank.testing.shapes import DEFAULT_PROMPTS, MODEL_MAX_LENGTH, Arch, ModelShape, ShapeName, resolve_shape
from jp_rerank.testing.tokenizers import build_mecab_tokenizer, train_unigram_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "build_bert_ja_cross_encoder",
    "build_dense_embedder",
    "build_splade_encoder",
    "build_static_embedder",
    "build_xlmr_cross_encoder",
]


def _prepare_dir(path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"model path exists and is not a folder: {out}")
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch inside the block without changing the caller's random state afterwards."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# ------------------------------------------------------------------------------------------ models


def _encoder_config(arch: Arch, shape: ModelShape, tokenizer_size: int, **extra: Any) -> Any:
    vocab_size = max(shape.vocab_size or 0, tokenizer_size)
    common: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": shape.hidden_size,
        "num_hidden_layers": shape.num_layers,
        "num_attention_heads": shape.num_heads,
        "intermediate_size": shape.intermediate_size,
        **extra,
    }
    if arch == "xlm-roberta":
        from transformers import XLMRobertaConfig

        return XLMRobertaConfig(
            max_position_embeddings=MODEL_MAX_LENGTH + 2,
            type_vocab_size=1,
            layer_norm_eps=1e-5,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            **common,
        )
    from transformers import BertConfig

    return BertConfig(max_position_embeddings=MODEL_MAX_LENGTH, type_vocab_size=2, pad_token_id=0, **common)


def _tokenizer_for(arch: Arch, texts: Sequence[str] | None) -> PreTrainedTokenizerBase:
    return train_unigram_tokenizer(texts) if arch == "xlm-roberta" else build_mecab_tokenizer(texts)


def _save_hf(
    path: Path,
    arch: Arch,
    head: Literal["classification", "encoder", "mlm"],
    shape: str,
    seed: int,
    texts: Sequence[str] | None,
) -> int:
    """Build and save a transformers model + tokenizer into ``path``; return the model's vocab size."""
    import transformers

    spec = resolve_shape(shape)
    tokenizer = _tokenizer_for(arch, texts)
    extra: dict[str, Any] = {"num_labels": 1} if head == "classification" else {}
    config = _encoder_config(arch, spec, len(tokenizer), **extra)
    prefix = "XLMRoberta" if arch == "xlm-roberta" else "Bert"
    suffix = {"classification": "ForSequenceClassification", "encoder": "Model", "mlm": "ForMaskedLM"}[head]
    model_cls = getattr(transformers, prefix + suffix)
    with _seeded(seed):
        model = model_cls(config)
    model.eval()
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return int(config.vocab_size)


def _build_cross_encoder(
    path: str | os.PathLike[str], arch: Arch, shape: str, seed: int, texts: Sequence[str] | None
) -> Path:
    """Save a one-label sequence-classification model of ``arch`` (a cross-encoder) into ``path``."""
    out = _prepare_dir(path)
    _save_hf(out, arch, "classification", shape, seed, texts)
    return out


def build_xlmr_cross_encoder(
    path: str | os.PathLike[str],
    *,
    shape: ShapeName = "tiny",
    seed: int = 0,
    texts: Sequence[str] | None = None,
) -> Path:
    """Save a random-weight ``XLMRobertaForSequenceClassification`` (one label) with a Unigram tokenizer.

    Same layout as hotchpotch/japanese-reranker-cross-encoder-xsmall/small-v1 and bge-reranker-v2-m3: a plain
    transformers folder that ``sentence_transformers.CrossEncoder`` loads (sigmoid activation by default).

    Args:
        path: Folder to write (created if needed; files of the same name are overwritten).
        shape: A key of :data:`SHAPES`.
        seed: Torch seed for the random weights.
        texts: Tokenizer training texts; ``None`` uses the bundled demo texts.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: If ``shape`` is unknown.

    Example:
        >>> import tempfile
        >>> p = build_xlmr_cross_encoder(tempfile.mkdtemp())
        >>> (p / "config.json").is_file()
        True
    """
    return _build_cross_encoder(path, "xlm-roberta", shape, seed, texts)


def build_bert_ja_cross_encoder(
    path: str | os.PathLike[str],
    *,
    shape: ShapeName = "tiny",
    seed: int = 0,
    texts: Sequence[str] | None = None,
) -> Path:
    """Save a random-weight ``BertForSequenceClassification`` (one label) with a MeCab BertJapaneseTokenizer.

    Same layout as hotchpotch/japanese-reranker-cross-encoder-base/large-v1 and cl-nagoya/ruri-reranker.

    Args:
        path: Folder to write (created if needed; files of the same name are overwritten).
        shape: A key of :data:`SHAPES`.
        seed: Torch seed for the random weights.
        texts: Vocabulary texts; ``None`` uses the bundled demo texts.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: If ``shape`` is unknown.

    Example:
        >>> import tempfile
        >>> p = build_bert_ja_cross_encoder(tempfile.mkdtemp())
        >>> (p / "vocab.txt").is_file()
        True
    """
    return _build_cross_encoder(path, "bert", shape, seed, texts)


def build_dense_embedder(
    path: str | os.PathLike[str],
    *,
    shape: ShapeName = "tiny",
    seed: int = 0,
    prompts: Mapping[str, str] | None = DEFAULT_PROMPTS,
    arch: Arch = "xlm-roberta",
    texts: Sequence[str] | None = None,
) -> Path:
    """Save a sentence-transformers embedder: Transformer → mean Pooling → Normalize, random weights.

    Like intfloat/multilingual-e5 (``arch="xlm-roberta"``) or cl-nagoya/ruri (``arch="bert"``, MeCab
    tokenizer). ``prompts`` are saved in ``config_sentence_transformers.json``, so
    ``SentenceTransformer(path).encode_query`` prepends ``prompts["query"]``.

    Args:
        path: Folder to write (created if needed; files of the same name are overwritten).
        shape: A key of :data:`SHAPES`.
        seed: Torch seed for the random weights.
        prompts: Prompts by name (``"query"``, ``"document"``); ``None`` saves a model without prompts.
        arch: Encoder architecture and matching tokenizer.
        texts: Tokenizer training texts; ``None`` uses the bundled demo texts.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: If ``shape`` or ``arch`` is unknown.

    Example:
        >>> import tempfile
        >>> from sentence_transformers import SentenceTransformer
        >>> m = SentenceTransformer(str(build_dense_embedder(tempfile.mkdtemp())))
        >>> m.prompts["query"]
        'query: '
    """
    if arch not in ("xlm-roberta", "bert"):
        raise ValueError(f"unknown arch {arch!r}; expected 'xlm-roberta' or 'bert'")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    out = _prepare_dir(path)
    with tempfile.TemporaryDirectory(prefix="jp-rerank-dense-") as tmp:
        _save_hf(Path(tmp), arch, "encoder", shape, seed, texts)
        transformer = Transformer(tmp, max_seq_length=MODEL_MAX_LENGTH)
        pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
        model = SentenceTransformer(
            modules=[transformer, pooling, Normalize()],
            prompts=dict(prompts) if prompts is not None else None,
            similarity_fn_name="cosine",
            device="cpu",
        )
        model.save(str(out))
    return out


def build_static_embedder(
    path: str | os.PathLike[str], *, dim: int = 64, seed: int = 0, texts: Sequence[str] | None = None
) -> Path:
    """Save a sentence-transformers ``StaticEmbedding`` model over the Unigram tokenizer, random weights.

    Like hotchpotch/static-embedding-japanese: one embedding row per token, averaged; no transformer.

    Args:
        path: Folder to write (created if needed; files of the same name are overwritten).
        dim: Embedding dimension.
        seed: Torch seed for the random weights.
        texts: Tokenizer training texts; ``None`` uses the bundled demo texts.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: If ``dim`` is not positive.

    Example:
        >>> import tempfile
        >>> from sentence_transformers import SentenceTransformer
        >>> SentenceTransformer(str(build_static_embedder(tempfile.mkdtemp()))).encode(["東京"]).shape
        (1, 64)
    """
    if dim <= 0:
        raise ValueError(f"dim must be positive, got {dim}")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    out = _prepare_dir(path)
    tokenizer = train_unigram_tokenizer(texts)
    with _seeded(seed):
        static = StaticEmbedding(tokenizer.backend_tokenizer, embedding_dim=dim)
    model = SentenceTransformer(modules=[static], similarity_fn_name="cosine", device="cpu")
    model.save(str(out))
    return out


def build_splade_encoder(
    path: str | os.PathLike[str],
    *,
    shape: ShapeName = "tiny",
    seed: int = 0,
    texts: Sequence[str] | None = None,
) -> Path:
    """Save a sentence-transformers ``SparseEncoder``: ``BertForMaskedLM`` (MeCab tokenizer) + SpladePooling.

    Like hotchpotch/japanese-splade-v2. Random weights: the sparse vectors are arbitrary.

    Args:
        path: Folder to write (created if needed; files of the same name are overwritten).
        shape: A key of :data:`SHAPES`.
        seed: Torch seed for the random weights.
        texts: Vocabulary texts; ``None`` uses the bundled demo texts.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: If ``shape`` is unknown.

    Example:
        >>> import tempfile
        >>> from sentence_transformers import SparseEncoder
        >>> enc = SparseEncoder(str(build_splade_encoder(tempfile.mkdtemp())))
        >>> enc.encode(["東京"]).shape[0]
        1
    """
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import SpladePooling, Transformer

    out = _prepare_dir(path)
    with tempfile.TemporaryDirectory(prefix="jp-rerank-splade-") as tmp:
        vocab_size = _save_hf(Path(tmp), "bert", "mlm", shape, seed, texts)
        transformer = Transformer(tmp, transformer_task="fill-mask", max_seq_length=MODEL_MAX_LENGTH)
        pooling = SpladePooling(pooling_strategy="max", activation_function="relu", embedding_dimension=vocab_size)
        model = SparseEncoder(modules=[transformer, pooling], device="cpu")
        model.save(str(out))
    return out
