"""Random-weight models built in code, with the same architecture classes as the real presets.

**These models have random weights: their scores and embeddings mean nothing.** Every builder saves a folder
that loads through the ordinary public paths (``sentence_transformers.CrossEncoder``, ``SentenceTransformer``,
``SparseEncoder``, ``transformers.AutoTokenizer`` / ``AutoModelForSequenceClassification``) and returns its path.
Builds are deterministic for a given ``seed`` and do not disturb the caller's torch random state.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from jp_rerank.testing.shapes import (
    DEFAULT_PROMPTS,
    MODEL_MAX_LENGTH,
    MODERNBERT_MAX_LENGTH,
    MODERNBERT_SPECIAL_TOKENS,
    Arch,
    ModelShape,
    ShapeName,
    resolve_shape,
)
from jp_rerank.testing.tokenizers import build_mecab_tokenizer, train_modernbert_tokenizer, train_unigram_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "build_bert_ja_cross_encoder",
    "build_dense_embedder",
    "build_modernbert_cross_encoder",
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
    if arch == "modernbert":
        from transformers import ModernBertConfig

        _unk, bos, eos, pad, sep, _mask, cls = range(len(MODERNBERT_SPECIAL_TOKENS))
        ids = {"pad_token_id": pad, "bos_token_id": bos, "eos_token_id": eos, "cls_token_id": cls, "sep_token_id": sep}
        every = 3  # ModernBERT-Ja's global_attn_every_n_layers: layers 0, 3, 6... attend globally
        return ModernBertConfig(
            max_position_embeddings=MODERNBERT_MAX_LENGTH,
            local_attention=shape.local_attention,
            layer_types=["sliding_attention" if i % every else "full_attention" for i in range(shape.num_layers)],
            classifier_pooling="cls",
            **{**ids, **common},
        )
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


def _tokenizer_for(
    arch: Arch, texts: Sequence[str] | None, tokenizer_json: str | os.PathLike[str] | None = None
) -> PreTrainedTokenizerBase:
    if tokenizer_json is not None:
        return _tokenizer_from_json(tokenizer_json)
    if arch == "modernbert":
        return train_modernbert_tokenizer(texts)
    return train_unigram_tokenizer(texts) if arch == "xlm-roberta" else build_mecab_tokenizer(texts)


_ROLE_CANDIDATES: dict[str, tuple[str, ...]] = {
    "unk_token": ("<unk>", "[UNK]"),
    "bos_token": ("<s>", "[CLS]"),
    "eos_token": ("</s>", "[SEP]"),
    "pad_token": ("<pad>", "[PAD]"),
    "sep_token": ("<sep>", "</s>", "[SEP]"),
    "mask_token": ("<mask>", "[MASK]"),
    "cls_token": ("<cls>", "<s>", "[CLS]"),
}


def _tokenizer_from_json(path: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    """A given ``tokenizer.json`` as is (its own pair template), special tokens found by their usual names."""
    from tokenizers import Tokenizer
    from transformers import TokenizersBackend

    backend = Tokenizer.from_file(os.fspath(path))
    vocab = backend.get_vocab(with_added_tokens=True)
    roles = {role: next((t for t in names if t in vocab), None) for role, names in _ROLE_CANDIDATES.items()}
    missing = [role for role in ("unk_token", "bos_token", "eos_token", "pad_token") if roles[role] is None]
    if missing:
        raise ValueError(f"tokenizer {os.fspath(path)!r} has no token for {', '.join(missing)}")
    return TokenizersBackend(
        tokenizer_object=backend,
        model_max_length=MODERNBERT_MAX_LENGTH,
        model_input_names=["input_ids", "attention_mask"],
        **{role: token for role, token in roles.items() if token is not None},
    )


def _special_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """Config ids of a tokenizer's special tokens (what ``config.json`` records for ModernBERT)."""
    ids = {}
    for role in ("pad", "bos", "eos", "cls", "sep"):
        value = getattr(tokenizer, f"{role}_token_id", None)
        if value is not None:
            ids[f"{role}_token_id"] = int(value)
    return ids


def _hub_like_modernbert_tokenizer_config(folder: Path) -> None:
    """Make ``tokenizer_config.json`` declare what ModernBERT-Ja uploads declare.

    The published files name ``LlamaTokenizer`` (not the class that reads their ``tokenizer.json``) and ask for
    bos/eos around each segment. transformers 5 loads ``model_type`` ``"modernbert"`` folders with
    ``TokenizersBackend`` whatever the file says, so a wrong class name must not matter: keeping it tests that.
    """
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(tokenizer_class="LlamaTokenizer", add_bos_token=True, add_eos_token=True)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _save_hf(
    path: Path,
    arch: Arch,
    head: Literal["classification", "encoder", "mlm"],
    shape: str,
    seed: int,
    texts: Sequence[str] | None,
    **options: Any,
) -> int:
    """Build and save a transformers model + tokenizer into ``path``; return the model's vocab size.

    ``options`` (ModernBERT only): ``local_attention``, ``initializer_range``, ``tokenizer_json``.
    """
    import dataclasses

    import transformers

    spec = resolve_shape(shape)
    if options.get("local_attention") is not None:
        spec = dataclasses.replace(spec, local_attention=options["local_attention"])
    tokenizer = _tokenizer_for(arch, texts, options.get("tokenizer_json"))
    extra: dict[str, Any] = {"num_labels": 1} if head == "classification" else {}
    if arch == "modernbert":
        extra.update(_special_ids(tokenizer))
        if options.get("initializer_range") is not None:
            extra["initializer_range"] = options["initializer_range"]
    config = _encoder_config(arch, spec, len(tokenizer), **extra)
    prefix = {"xlm-roberta": "XLMRoberta", "bert": "Bert", "modernbert": "ModernBert"}[arch]
    suffix = {"classification": "ForSequenceClassification", "encoder": "Model", "mlm": "ForMaskedLM"}[head]
    model_cls = getattr(transformers, prefix + suffix)
    with _seeded(seed):
        model = model_cls(config)
    model.eval()
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    if arch == "modernbert" and options.get("tokenizer_json") is None:
        _hub_like_modernbert_tokenizer_config(path)
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


def build_modernbert_cross_encoder(
    path: str | os.PathLike[str],
    *,
    shape: ShapeName = "tiny",
    seed: int = 0,
    texts: Sequence[str] | None = None,
    local_attention: int | None = None,
    initializer_range: float | None = None,
    tokenizer_json: str | os.PathLike[str] | None = None,
) -> Path:
    """Save a random-weight ``ModernBertForSequenceClassification`` (one label) with a ModernBERT-Ja-style tokenizer.

    Same layout as hotchpotch/japanese-reranker-{tiny,xsmall,small,base}-v2 and cl-nagoya/ruri-v3-reranker-310m: a
    ``config.json`` (``model_type`` ``"modernbert"``, RoPE, 8192 positions, local attention with a global layer
    every third, CLS pooling), the weights, and a ``tokenizer.json`` with no vocab file and no token type ids
    (:func:`~jp_rerank.testing.train_modernbert_tokenizer`). ``sentence_transformers.CrossEncoder`` loads it with no
    extra argument. The ``"tiny"`` shape has a local window of 16 tokens, so test inputs longer than that run
    through both attention kinds.

    Args:
        path: Folder to write (created if needed; files of the same name are overwritten).
        shape: A key of :data:`SHAPES` (``"tiny"`` or a ModernBERT shape such as ``"xsmall-v2"``).
        seed: Torch seed for the random weights.
        texts: Tokenizer training texts; ``None`` uses the bundled demo texts.
        local_attention: Local attention window (default: the shape's; must be even).
        initializer_range: Standard deviation of the random weights (default: ModernBERT's 0.02). A larger one
            (e.g. 0.3) spreads random scores apart, so rank agreement between precisions means something.
        tokenizer_json: Use this ``tokenizer.json`` as is (its own special tokens and pair template) instead of
            training one, e.g. a real tokenizer for realistic pair lengths in speed benchmarks.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: If ``shape`` is unknown, belongs to another architecture, or ``local_attention`` is odd or not
            positive.

    Example:
        >>> import tempfile
        >>> p = build_modernbert_cross_encoder(tempfile.mkdtemp())
        >>> sorted(f.name for f in p.iterdir() if f.name.startswith("tokenizer"))
        ['tokenizer.json', 'tokenizer_config.json']
    """
    spec = resolve_shape(shape)
    if spec.arch not in (None, "modernbert"):
        raise ValueError(f"shape {shape!r} is a {spec.arch} shape, not a ModernBERT one")
    if local_attention is not None and (
        isinstance(local_attention, bool)
        or not isinstance(local_attention, int)
        or local_attention < 2
        or local_attention % 2
    ):
        raise ValueError(f"local_attention must be an even int >= 2 (half of it each side), got {local_attention!r}")
    out = _prepare_dir(path)
    _save_hf(
        out,
        "modernbert",
        "classification",
        shape,
        seed,
        texts,
        local_attention=local_attention,
        initializer_range=initializer_range,
        tokenizer_json=tokenizer_json,
    )
    return out


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

    Like intfloat/multilingual-e5 (``arch="xlm-roberta"``), cl-nagoya/ruri (``arch="bert"``, MeCab tokenizer) or
    cl-nagoya/ruri-v3 (``arch="modernbert"``: ``ModernBertModel``, ModernBERT-Ja-style ``tokenizer.json``, 8192
    tokens; pass ``prompts=RURI_PROMPTS`` for its 検索クエリ/検索文書 prompts). ``prompts`` are saved in
    ``config_sentence_transformers.json``, so ``SentenceTransformer(path).encode_query`` prepends
    ``prompts["query"]``.

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
    if arch not in ("xlm-roberta", "bert", "modernbert"):
        raise ValueError(f"unknown arch {arch!r}; expected 'xlm-roberta', 'bert' or 'modernbert'")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    out = _prepare_dir(path)
    with tempfile.TemporaryDirectory(prefix="jp-rerank-dense-") as tmp:
        _save_hf(Path(tmp), arch, "encoder", shape, seed, texts)
        limit = MODERNBERT_MAX_LENGTH if arch == "modernbert" else MODEL_MAX_LENGTH
        transformer = Transformer(tmp, max_seq_length=limit)
        pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
        model = SentenceTransformer(
            modules=[transformer, pooling, Normalize()],
            prompts=dict(prompts) if prompts is not None else None,
            similarity_fn_name="cosine",
            device="cpu",
        )
        model.save(str(out))
    if arch == "modernbert":
        _hub_like_modernbert_tokenizer_config(out)
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
