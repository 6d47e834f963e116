"""The one registry of known models: kind, alias, prompts, max length, activation, dimensions, requirements.

Every default in jp-rerank (the default reranker, embedder and sparse encoder) is defined here and imported by the
engine and the LangChain / LlamaIndex adapters. Any other hub id or local path also works; it is configured from
the model's own files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "DEFAULT_EMBEDDER",
    "DEFAULT_RERANKER",
    "DEFAULT_SPARSE",
    "PRESETS",
    "ModelKind",
    "ModelPreset",
    "find_preset",
    "get_preset",
    "list_presets",
    "prefix_family",
    "recognize_preset",
]

ModelKind = Literal["cross-encoder", "dense", "static", "sparse"]
Activation = Literal["sigmoid", "softmax", "none"]

_MECAB = ("fugashi", "unidic_lite")


@dataclass(frozen=True)
class ModelPreset:
    """What jp-rerank knows about a published model.

    Attributes:
        model_id: Hugging Face hub id.
        alias: Short name accepted wherever a model is named (e.g. ``"xsmall"``).
        kind: ``"cross-encoder"``, ``"dense"``, ``"static"`` or ``"sparse"``.
        architecture: transformers architecture family (``"xlm-roberta"``, ``"bert"``, ``"modernbert"``, ``"static"``).
        max_length: Token limit used for inputs (pairs for cross-encoders).
        activation: Score activation for cross-encoders (``"sigmoid"`` for single-logit rerankers).
        query_prefix: Text put before queries (retrieval embedders such as E5 / Ruri).
        document_prefix: Text put before documents.
        dims: Output dimension of embedders.
        matryoshka_dims: Dimensions the model was trained to be truncated to (``truncate_dim``).
        requires: Python modules the tokenizer needs besides transformers (e.g. fugashi + unidic-lite for MeCab).
        languages: ISO codes of the languages the model targets.
        params_millions: Approximate parameter count, for ``jp-rerank models``.
        trust_remote_code: Whether the hub repository needs custom code.
        notes: One line on what the model is.

    Example:
        >>> get_preset("xsmall").model_id
        'hotchpotch/japanese-reranker-cross-encoder-xsmall-v1'
    """

    model_id: str
    alias: str
    kind: ModelKind
    architecture: str
    max_length: int | None
    activation: Activation = "sigmoid"
    query_prefix: str = ""
    document_prefix: str = ""
    dims: int | None = None
    matryoshka_dims: tuple[int, ...] = ()
    requires: tuple[str, ...] = ()
    languages: tuple[str, ...] = ("ja",)
    params_millions: float | None = None
    trust_remote_code: bool = False
    notes: str = ""
    extras: dict[str, str] = field(default_factory=dict)


def _ce(model_id: str, alias: str, arch: str, params: float, notes: str, **kw: object) -> ModelPreset:
    return ModelPreset(
        model_id=model_id,
        alias=alias,
        kind="cross-encoder",
        architecture=arch,
        max_length=kw.pop("max_length", 512),  # type: ignore[arg-type]
        params_millions=params,
        notes=notes,
        **kw,  # type: ignore[arg-type]
    )


_HOTCH = "hotchpotch/japanese-reranker-cross-encoder"
_V2 = "hotchpotch/japanese-reranker"

# ModernBERT rerankers (ModernBertForSequenceClassification, one logit read through a sigmoid as their cards do).
# max_length 8192 is the models' own limit: ModernBERT-Ja's config.json has max_position_embeddings 8192 and RoPE
# positions start at 0 (no RoPE offset to subtract, unlike XLM-R's 514 - 2). Layers x hidden: the v2 model cards.
# Sizes: the hub's parameter counts (tiny 29.4M, xsmall 36.8M, small 70.2M, base "0.1B", i.e. ~132M from the
# 19 x 512 shape with the 102,400-token vocabulary; ruri-v3-reranker-310m ~315M like ruri-v3-310m). nDCG: the v2
# cards' average over JQaRA / JaCWIR / MIRACL / JSQuAD (v1 xsmall 0.8131, large 0.8661 on the same average).
_MODERNBERT_RERANKERS: tuple[tuple[str, str, float, str], ...] = (
    (
        f"{_V2}-tiny-v2",
        "tiny-v2",
        29.4,
        "ModernBERT-Ja, 3 layers x 256; nDCG avg 0.8138 (= xsmall-v1) at 1/10 its cost",
    ),
    (
        f"{_V2}-xsmall-v2",
        "xsmall-v2",
        36.8,
        "ModernBERT-Ja, 10 layers x 256; nDCG avg 0.8699 (> large-v1); the default: best quality per CPU cost",
    ),
    (f"{_V2}-small-v2", "small-v2", 70.2, "ModernBERT-Ja, 13 layers x 384; nDCG avg 0.8856"),
    (f"{_V2}-base-v2", "base-v2", 132, "ModernBERT-Ja, 19 layers x 512; nDCG avg 0.8930"),
    ("cl-nagoya/ruri-v3-reranker-310m", "ruri-v3-reranker-310m", 315, "Ruri v3 reranker, ModernBERT-Ja 25 x 768"),
)

PRESETS: tuple[ModelPreset, ...] = (
    # --- Japanese cross-encoder rerankers -------------------------------------------------------------------------
    _ce(f"{_HOTCH}-xsmall-v1", "xsmall", "xlm-roberta", 107, "6 layers, hidden 384; fastest Japanese reranker"),
    _ce(f"{_HOTCH}-small-v1", "small", "xlm-roberta", 118, "12 layers, hidden 384"),
    _ce(f"{_HOTCH}-base-v1", "base", "bert", 111, "BERT base, MeCab/unidic-lite tokenizer", requires=_MECAB),
    _ce(f"{_HOTCH}-large-v1", "large", "bert", 337, "BERT large, MeCab/unidic-lite tokenizer", requires=_MECAB),
    *(
        _ce(model_id, alias, "modernbert", params, notes, max_length=8192)
        for model_id, alias, params, notes in _MODERNBERT_RERANKERS
    ),
    _ce(
        "hotchpotch/japanese-bge-reranker-v2-m3-v1",
        "bge-ja",
        "xlm-roberta",
        568,
        "bge-reranker-v2-m3 fine-tuned for Japanese",
        max_length=1024,
    ),
    _ce(
        "BAAI/bge-reranker-v2-m3",
        "bge-reranker-v2-m3",
        "xlm-roberta",
        568,
        "multilingual reranker",
        max_length=1024,
        languages=("multilingual", "ja", "ko", "en", "zh"),
    ),
    _ce(
        "cl-nagoya/ruri-reranker-small",
        "ruri-reranker-small",
        "distilbert",
        68,
        "Ruri reranker (small)",
        requires=(*_MECAB, "sentencepiece"),
    ),
    _ce(
        "cl-nagoya/ruri-reranker-base",
        "ruri-reranker-base",
        "bert",
        111,
        "Ruri reranker (base)",
        requires=_MECAB,
    ),
    _ce(
        "cl-nagoya/ruri-reranker-large",
        "ruri-reranker-large",
        "bert",
        337,
        "Ruri reranker (large)",
        requires=_MECAB,
    ),
    _ce(
        "Dongjin-kr/ko-reranker",
        "ko-reranker",
        "xlm-roberta",
        560,
        "Korean reranker (bge-reranker-large fine-tune)",
        languages=("ko",),
    ),
    # --- embedders ---------------------------------------------------------------------------------------------------
    ModelPreset(
        model_id="hotchpotch/static-embedding-japanese",
        alias="static-ja",
        kind="static",
        architecture="static",
        max_length=None,
        dims=1024,
        matryoshka_dims=(32, 64, 128, 256, 512, 1024),
        params_millions=103,
        notes="StaticEmbedding (no attention): very fast on CPU; Matryoshka 32-1024",
    ),
    *(
        ModelPreset(
            model_id=f"cl-nagoya/ruri-v3-{size}",
            alias=f"ruri-v3-{size}",
            kind="dense",
            architecture="modernbert",
            max_length=8192,
            query_prefix="検索クエリ: ",
            document_prefix="検索文書: ",
            dims=dims,
            params_millions=params,
            requires=("sentencepiece",),
            notes="Ruri v3 Japanese embedder; 検索クエリ/検索文書 prefixes",
        )
        for size, dims, params in (("30m", 256, 37), ("70m", 384, 70), ("130m", 512, 132), ("310m", 768, 315))
    ),
    *(
        ModelPreset(
            model_id=f"intfloat/multilingual-e5-{size}",
            alias=f"me5-{size}",
            kind="dense",
            architecture=arch,
            max_length=512,
            query_prefix="query: ",
            document_prefix="passage: ",
            dims=dims,
            params_millions=params,
            languages=("multilingual", "ja"),
            notes="multilingual E5; 'query: ' / 'passage: ' prefixes",
        )
        for size, arch, dims, params in (
            ("small", "bert", 384, 118),
            ("base", "xlm-roberta", 768, 278),
            ("large", "xlm-roberta", 1024, 560),
        )
    ),
    ModelPreset(
        model_id="BAAI/bge-m3",
        alias="bge-m3",
        kind="dense",
        architecture="xlm-roberta",
        max_length=8192,
        dims=1024,
        params_millions=568,
        languages=("multilingual", "ja", "ko"),
        notes="BGE-M3 dense embeddings (no prefixes)",
    ),
    ModelPreset(
        model_id="hotchpotch/japanese-splade-v2",
        alias="splade-ja",
        kind="sparse",
        architecture="bert",
        max_length=512,
        requires=_MECAB,
        params_millions=111,
        notes="Japanese SPLADE sparse encoder",
    ),
)

DEFAULT_RERANKER = "xsmall-v2"
"""Alias of the default cross-encoder: japanese-reranker-xsmall-v2, the best published quality per CPU cost
(README "Models (presets)"). ``"xsmall"`` keeps meaning the v1 model it always named."""
DEFAULT_EMBEDDER = "static-ja"
"""Alias of the default dense embedder (StaticEmbedding: fast on CPU)."""
DEFAULT_SPARSE = "splade-ja"
"""Alias of the default sparse encoder."""

_BY_NAME: dict[str, ModelPreset] = {}
for _p in PRESETS:
    for _key in (_p.alias, _p.model_id):
        if _key in _BY_NAME:
            raise RuntimeError(f"duplicate preset name {_key!r}")
        _BY_NAME[_key] = _p


def find_preset(name: str) -> ModelPreset | None:
    """Return the preset for an alias or hub id, or ``None`` if unknown (case-insensitive on hub ids).

    Example:
        >>> find_preset("me5-small").query_prefix
        'query: '
        >>> find_preset("/some/local/dir") is None
        True
    """
    preset = _BY_NAME.get(name)
    if preset is None:
        lowered = name.lower()
        preset = next((p for p in PRESETS if p.model_id.lower() == lowered), None)
    return preset


def get_preset(name: str) -> ModelPreset:
    """Return the preset for an alias or hub id.

    Raises:
        KeyError: If the name is not a known alias or hub id (the message suggests close aliases and lists all).

    Example:
        >>> get_preset("small").architecture
        'xlm-roberta'
    """
    preset = find_preset(name)
    if preset is None:
        raise KeyError(unknown_preset_message(name))
    return preset


def unknown_preset_message(name: str) -> str:
    """The error text for a name that is no preset: the closest aliases ("did you mean") and the full list.

    Example:
        >>> unknown_preset_message("xsmal").split(";")[0]
        "unknown model preset 'xsmal' (did you mean 'xsmall' or 'small' or 'xsmall-v2'?)"
    """
    import difflib

    aliases = [p.alias for p in PRESETS]
    close = difflib.get_close_matches(name, aliases, n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return f"unknown model preset {name!r}{hint}; known aliases: {', '.join(aliases)}"


def _repo_names(folder: Path) -> list[str]:
    """Names a local model folder may carry of the hub repository it came from (most reliable first)."""
    names: list[str] = []
    for part in folder.parts:  # a Hugging Face cache snapshot: .../models--org--name/snapshots/<commit>
        if part.startswith("models--") and part.count("--") >= 2:
            names.append(part.removeprefix("models--").replace("--", "/", 1))
    for config in ("config.json", "config_sentence_transformers.json"):
        try:
            data = json.loads((folder / config).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        value = data.get("_name_or_path") if isinstance(data, dict) else None
        if isinstance(value, str) and value and not value.startswith((".", "/", "~")):
            names.append(value)
    names.append(folder.name)
    return names


def recognize_preset(folder: str | os.PathLike[str]) -> ModelPreset | None:
    """The preset a local model folder is a copy of, when its files or name say so (else ``None``).

    Looked at, in order: a Hugging Face cache path (``models--org--name``), the ``_name_or_path`` recorded in
    ``config.json``, and the folder's name, compared with each preset's hub id, repository name and alias. A
    folder named like ``multilingual-e5-small`` (as ``hf download ... --local-dir`` creates) is recognised.

    Example:
        >>> recognize_preset("/models/multilingual-e5-small").alias
        'me5-small'
        >>> recognize_preset("/models/my-own-model") is None
        True
    """
    for name in _repo_names(Path(folder)):
        lowered = name.lower().rstrip("/")
        for preset in PRESETS:
            repo = preset.model_id.lower()
            if lowered in (repo, repo.split("/")[-1], preset.alias.lower()):
                return preset
    return None


def list_presets(kind: ModelKind | None = None) -> list[ModelPreset]:
    """Return the presets, optionally only those of one kind.

    Example:
        >>> [p.alias for p in list_presets("cross-encoder")][:6]
        ['xsmall', 'small', 'base', 'large', 'tiny-v2', 'xsmall-v2']
    """
    return [p for p in PRESETS if kind is None or p.kind == kind]


_PREFIX_FAMILIES: tuple[tuple[str, str, str], ...] = (
    # (pattern in a model id or path, family name, a preset of that family)
    ("multilingual-e5", "multilingual-E5", "me5-small"),
    ("e5-", "E5", "me5-small"),
    ("ruri-v3", "Ruri v3", "ruri-v3-30m"),
    ("ruri", "Ruri", "ruri-v3-30m"),
)


def prefix_family(model_id: str) -> tuple[str, str] | None:
    """``(family, example preset)`` when a model's id or path names a family trained with query/passage prefixes.

    Used to warn when such a model ends up with no prefix (it would silently lose quality).

    Example:
        >>> prefix_family("/models/multilingual-e5-small-q4dq")
        ('multilingual-E5', 'me5-small')
        >>> prefix_family("hotchpotch/static-embedding-japanese") is None
        True
    """
    lowered = model_id.lower()
    for pattern, family, example in _PREFIX_FAMILIES:
        if pattern in lowered and "reranker" not in lowered:
            return family, example
    return None
