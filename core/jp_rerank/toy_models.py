"""Small random-weight models built in code, with the same architecture classes as the real presets.

**These models have random weights: their scores and embeddings mean nothing.** They exist so that tests
and examples run offline (the Hugging Face Hub is never contacted) and so that speed benchmarks can measure
real-size architectures without downloading weights. Every builder saves a folder that loads through the
ordinary public paths (``sentence_transformers.CrossEncoder``, ``SentenceTransformer``, ``SparseEncoder``,
``transformers.AutoTokenizer`` / ``AutoModelForSequenceClassification``) and returns its path.

Tokenizers are trained on the bundled Japanese demo corpus (:mod:`jp_rerank.data`) and mirror the real ones:

* an XLM-R-style SentencePiece Unigram tokenizer (``▁`` metaspace, ``<s> <pad> </s> <unk> <mask>`` at ids
  0-4, pair template ``<s> A </s></s> B </s>``), as used by hotchpotch/japanese-reranker-cross-encoder-xsmall
  and -small-v1, bge-reranker-v2-m3 and multilingual-e5. Its normaliser is SentencePiece's compiled
  ``nmt_nfkc`` map, like XLM-R's: full-width ASCII and half-width kana are folded, but a half-width voiced
  mark (``ﾃﾞ``) becomes ``テ`` + a combining mark rather than ``デ``, so NFKC-normalise text first when that
  matters;
* a MeCab (unidic-lite) + WordPiece ``BertJapaneseTokenizer``, configured like cl-tohoku/bert-base-japanese-v3
  and hotchpotch/japanese-reranker-cross-encoder-base/large-v1.

Sizes come from :data:`SHAPES`: ``"tiny"`` for tests, the others are real-size shapes for benchmarks.
Builds are deterministic for a given ``seed`` and do not disturb the caller's torch random state.

Example:
    >>> import tempfile
    >>> from sentence_transformers import CrossEncoder
    >>> from jp_rerank.toy_models import build_xlmr_cross_encoder
    >>> path = build_xlmr_cross_encoder(tempfile.mkdtemp() + "/ce")
    >>> len(CrossEncoder(str(path)).predict([("富士山の高さは？", "富士山は3776メートルです。")]))
    1
"""

from __future__ import annotations

import io
import os
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from transformers import BertJapaneseTokenizer, PreTrainedTokenizerBase, XLMRobertaTokenizer

    from jp_rerank.embed import Embedder
    from jp_rerank.rerank import Reranker

__all__ = [
    "DEFAULT_PROMPTS",
    "MECAB_KWARGS",
    "SHAPES",
    "XLMR_SPECIAL_TOKENS",
    "Arch",
    "ModelShape",
    "ShapeName",
    "build_bert_ja_cross_encoder",
    "build_dense_embedder",
    "build_mecab_tokenizer",
    "build_mecab_wordpiece_vocab",
    "build_splade_encoder",
    "build_static_embedder",
    "build_xlmr_cross_encoder",
    "load_or_toy_engines",
    "train_unigram_tokenizer",
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

_KANA_AND_ASCII = (
    "".join(chr(c) for c in range(0x3041, 0x3097))  # hiragana
    + "".join(chr(c) for c in range(0x30A1, 0x30FB))  # katakana
    + "ー・「」『』、。！？（）"
    + "".join(chr(c) for c in range(0x21, 0x7F))  # printable ASCII
)


# ---------------------------------------------------------------------------------------------- helpers


def _resolve_texts(texts: Sequence[str] | None) -> tuple[str, ...]:
    """Return ``texts`` as a tuple, or the bundled demo texts when ``None``."""
    if texts is None:
        from jp_rerank.data import demo_texts

        return tuple(demo_texts())
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string")
    resolved = tuple(texts)
    if not resolved:
        raise ValueError("texts must contain at least one string to train a tokenizer on")
    for text in resolved:
        if not isinstance(text, str):
            raise TypeError(f"texts must contain only strings, got {type(text).__name__}")
    return resolved


def _resolve_shape(shape: str) -> ModelShape:
    try:
        return SHAPES[shape]
    except KeyError:
        raise ValueError(f"unknown shape {shape!r}; known shapes: {sorted(SHAPES)}") from None


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


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _proto_fields(buf: bytes) -> Iterator[tuple[int, bytes | int]]:
    """Yield ``(field number, value)`` of a serialized protobuf message (enough to read one bytes field)."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        value: bytes | int
        if wire_type == 0:
            value, pos = _read_varint(buf, pos)
        elif wire_type == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire_type == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        elif wire_type == 2:
            length, pos = _read_varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        yield number, value


@cache
def _nfkc_charsmap() -> bytes:
    """Return SentencePiece's compiled ``nmt_nfkc`` normalisation map (what XLM-R's tokenizer uses).

    transformers' XLM-R tokenizer keeps only a ``Precompiled`` normaliser when it reloads a folder, so the
    map is taken from a throwaway SentencePiece model rather than a plain NFKC normaliser that would be lost.
    """
    import sentencepiece

    buf = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(["charsmap"]),
        model_writer=buf,
        model_type="char",
        vocab_size=8,
        hard_vocab_limit=False,
        normalization_rule_name="nmt_nfkc",
        minloglevel=2,
        num_threads=1,
    )
    normalizer_spec = next(v for n, v in _proto_fields(buf.getvalue()) if n == 3)  # ModelProto.normalizer_spec
    assert isinstance(normalizer_spec, bytes)
    charsmap = next(v for n, v in _proto_fields(normalizer_spec) if n == 2)  # NormalizerSpec.precompiled_charsmap
    assert isinstance(charsmap, bytes)
    return charsmap


@lru_cache(maxsize=8)
def _train_unigram_json(texts: tuple[str, ...], vocab_size: int) -> str:
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import Unigram
    from tokenizers.trainers import UnigramTrainer

    tokenizer = Tokenizer(Unigram())
    tokenizer.normalizer = normalizers.Precompiled(_nfkc_charsmap())
    # The same pre-tokenizer transformers' XLMRobertaTokenizer rebuilds at load time.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=list(XLMR_SPECIAL_TOKENS),
        unk_token="<unk>",
        initial_alphabet=sorted(set(unicodedata.normalize("NFKC", _KANA_AND_ASCII))),
        max_piece_length=8,
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    return str(tokenizer.to_str())


@lru_cache(maxsize=8)
def _mecab_vocab(texts: tuple[str, ...]) -> tuple[str, ...]:
    from transformers.models.bert_japanese.tokenization_bert_japanese import MecabTokenizer

    word_tokenizer = MecabTokenizer(do_lower_case=False, normalize_text=True, **MECAB_KWARGS)
    counts: Counter[str] = Counter()
    chars = set(unicodedata.normalize("NFKC", _KANA_AND_ASCII))
    for text in texts:
        normalized = unicodedata.normalize("NFKC", text)
        chars.update(ch for ch in normalized if not ch.isspace())
        counts.update(word_tokenizer.tokenize(normalized))
    single = sorted(chars)
    words = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))
    vocab = [*BERT_SPECIAL_TOKENS, *single, *(f"##{ch}" for ch in single), *words]
    return tuple(dict.fromkeys(vocab))


# ------------------------------------------------------------------------------------------ tokenizers


def train_unigram_tokenizer(
    texts: Sequence[str] | None = None, *, vocab_size: int = DEFAULT_UNIGRAM_VOCAB
) -> XLMRobertaTokenizer:
    """Train an XLM-R-style SentencePiece Unigram tokenizer with the ``tokenizers`` library.

    Args:
        texts: Training texts; ``None`` uses the bundled demo corpus and questions. Kana and printable ASCII
            are always in the alphabet, so text outside the corpus is not all ``<unk>``.
        vocab_size: Requested vocabulary size (an upper bound: a small corpus yields fewer pieces).

    Returns:
        A transformers ``XLMRobertaTokenizer`` (``model_max_length`` 512) wrapping the trained tokenizer.

    Raises:
        ValueError: If ``texts`` is empty or ``vocab_size`` is too small for the special tokens.
        TypeError: If ``texts`` is a single string or holds non-strings.

    Example:
        >>> tok = train_unigram_tokenizer()
        >>> tok.convert_ids_to_tokens(tok("東京", "京都")["input_ids"])[:1]
        ['<s>']
    """
    if vocab_size <= len(XLMR_SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be larger than {len(XLMR_SPECIAL_TOKENS)}, got {vocab_size}")
    from tokenizers import Tokenizer
    from transformers import XLMRobertaTokenizer

    backend = Tokenizer.from_str(_train_unigram_json(_resolve_texts(texts), vocab_size))
    return XLMRobertaTokenizer(tokenizer_object=backend, model_max_length=MODEL_MAX_LENGTH)


def build_mecab_wordpiece_vocab(texts: Sequence[str] | None = None) -> list[str]:
    """Build a WordPiece vocabulary for a MeCab (unidic-lite) ``BertJapaneseTokenizer``.

    The vocabulary is ``[PAD] [UNK] [CLS] [SEP] [MASK]`` (ids 0..4), every single character of the
    NFKC-normalised texts plus kana and ASCII, the same characters with a ``##`` prefix, then the
    multi-character MeCab words of the texts, most frequent first.

    Args:
        texts: Texts to collect words from; ``None`` uses the bundled demo corpus and questions.

    Returns:
        The vocabulary, one token per id.

    Example:
        >>> vocab = build_mecab_wordpiece_vocab()
        >>> vocab[:5], "富士" in vocab
        (['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'], True)
    """
    return list(_mecab_vocab(_resolve_texts(texts)))


def build_mecab_tokenizer(texts: Sequence[str] | None = None) -> BertJapaneseTokenizer:
    """Build a MeCab (unidic-lite) + WordPiece ``BertJapaneseTokenizer`` over the demo-text vocabulary.

    Args:
        texts: Texts to build the vocabulary from; ``None`` uses the bundled demo texts.

    Returns:
        The tokenizer (``model_max_length`` 512), configured like cl-tohoku/bert-base-japanese-v3.

    Example:
        >>> build_mecab_tokenizer().tokenize("富士山の高さ")
        ['富士', '山', 'の', '高', 'さ']
    """
    from transformers import BertJapaneseTokenizer

    vocab = build_mecab_wordpiece_vocab(texts)
    with tempfile.TemporaryDirectory(prefix="jp-rerank-vocab-") as tmp:
        vocab_file = Path(tmp) / "vocab.txt"
        vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
        return BertJapaneseTokenizer(
            vocab_file=str(vocab_file),
            do_lower_case=False,
            word_tokenizer_type="mecab",
            subword_tokenizer_type="wordpiece",
            mecab_kwargs=dict(MECAB_KWARGS),
            model_max_length=MODEL_MAX_LENGTH,
        )


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

    spec = _resolve_shape(shape)
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


def load_or_toy_engines(reranker: str, embedder: str) -> tuple[Reranker, Embedder, str | None]:
    """Load a reranker and an embedder, or build tiny random-weight stand-ins when either cannot be had.

    For examples that must run anywhere: on an offline machine without the models, everything still runs but
    the ranking is meaningless, and the third item says why the stand-ins were used (``None`` when the real
    models loaded).

    Example:
        >>> rr, emb, why = load_or_toy_engines("xsmall", "static-ja")  # doctest: +SKIP
        >>> why is None  # doctest: +SKIP
        True
    """
    from jp_rerank.embed import Embedder
    from jp_rerank.errors import ModelLoadError
    from jp_rerank.rerank import Reranker

    try:
        return Reranker(reranker).load(), Embedder(embedder).load(), None
    except ModelLoadError as exc:
        root = Path(tempfile.mkdtemp(prefix="jp-rerank-toy-"))
        return (
            Reranker(build_xlmr_cross_encoder(root / "reranker")).load(),
            Embedder(build_dense_embedder(root / "embedder")).load(),
            str(exc),
        )
