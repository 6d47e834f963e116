"""Turning a base model into a trainable single-logit cross-encoder.

The base may be a cross-encoder (an alias such as ``"xsmall"``, a hub id or a local folder), a
sentence-transformers embedder folder, or a plain encoder without a classification head. A fresh head is
added where there is none (sentence-transformers converts an embedder folder on load).

**Mean-pooled bases.** An embedding model trained with mean pooling (multilingual-e5, most Japanese embedders)
never trained its first token, so its [CLS] state barely changes with the input, and a cross-encoder head on
[CLS] hardly moves in training. :func:`add_cls_mean_layer` appends one standard encoder layer that hands every
position the mean of all tokens: attention queries and keys zero (uniform attention over the real tokens),
values and attention output the identity, the feed-forward output zero, and the last layer's output
LayerNorm, so [CLS] starts as ``LayerNorm(mean + [CLS])``, in the same space as the base's outputs. It is an
ordinary layer of the same architecture (``num_hidden_layers`` + 1), so the saved folder loads anywhere with no
custom code. With ``cls_mean_layer="auto"`` it is added when the base is a sentence-transformers folder whose
pooling is not CLS, or a headless encoder whose [CLS] state is measured to be nearly input-invariant (its spread
over sample inputs under a quarter of the mean-pooled state's).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

__all__ = ["BaseInfo", "ClsMeanOption", "add_cls_mean_layer", "cls_spread_ratio", "keep_first_layers", "load_base"]

logger = logging.getLogger(__name__)

ClsMeanOption = Literal["auto", "on", "off"]
"""Whether to add the "[CLS] gets the mean" layer: detect (``"auto"``), always, never."""

CLS_SPREAD_THRESHOLD = 0.25
"""``auto`` adds the layer to a headless encoder whose [CLS] spread is under this fraction of the mean's."""


@dataclass(frozen=True)
class BaseInfo:
    """What the base model was and what was done to it.

    Attributes:
        name: What the caller passed.
        location: Resolved hub id or local folder.
        kind: ``"cross-encoder"`` (had a classification head), ``"sentence-transformer"`` (an embedder folder)
            or ``"encoder"`` (a plain encoder without a head).
        model_type: transformers ``model_type`` (``"bert"``, ``"xlm-roberta"``...).
        pooling: Pooling mode of a sentence-transformers base (``"mean"``, ``"cls"``...), else ``None``.
        base_layers: Encoder layers of the base.
        kept_layers: Layers kept by ``keep_layers`` (``None``: all).
        cls_mean_layer: Whether the mean layer was added.
        cls_spread_ratio: Measured [CLS] spread / mean-pooled spread (``None`` when not measured).
        frozen: What was frozen (``"embeddings"``, ``"layers 0-1"``...).
        trainable_parameters: Parameters that train.
        total_parameters: All parameters.
        max_length: Token limit of a pair in training (and saved with the model).

    Example:
        >>> _, info = load_base("multilingual-e5-small-folder", keep_layers=6)  # doctest: +SKIP
        >>> info.kind, info.pooling, info.cls_mean_layer  # doctest: +SKIP
        ('sentence-transformer', 'mean', True)
    """

    name: str
    location: str
    kind: str
    model_type: str
    pooling: str | None
    base_layers: int
    kept_layers: int | None
    cls_mean_layer: bool
    cls_spread_ratio: float | None
    frozen: tuple[str, ...]
    trainable_parameters: int
    total_parameters: int
    max_length: int

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        out = asdict(self)
        out["frozen"] = list(self.frozen)
        return out

    @property
    def modified(self) -> bool:
        """Whether the model that training starts from differs from the base as published."""
        return self.kind != "cross-encoder" or self.cls_mean_layer or self.kept_layers is not None


def _read_json(location: str, name: str, *, is_local: bool) -> dict[str, Any] | None:
    """Read a small JSON file of a local folder or a hub repository (cache / hub); ``None`` when absent."""
    try:
        if is_local:
            path = Path(location) / name
            return dict(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None
        from huggingface_hub import hf_hub_download

        from jp_rerank.loading import hub_offline

        file = hf_hub_download(location, name, local_files_only=hub_offline())
        return dict(json.loads(Path(file).read_text(encoding="utf-8")))
    except Exception:  # absent file, unreachable hub, not JSON: the caller falls back
        return None


def _read_modules(location: str, *, is_local: bool) -> list[Any]:
    """The ``modules.json`` list of a sentence-transformers folder or repository (empty when absent)."""
    try:
        if is_local:
            path = Path(location) / "modules.json"
            value = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
        else:
            from huggingface_hub import hf_hub_download

            from jp_rerank.loading import hub_offline

            file = hf_hub_download(location, "modules.json", local_files_only=hub_offline())
            value = json.loads(Path(file).read_text(encoding="utf-8"))
    except Exception:  # absent file, unreachable hub, not JSON: not a sentence-transformers folder
        return []
    return value if isinstance(value, list) else []


def _pooling_mode(location: str, *, is_local: bool) -> str | None:
    modules = _read_modules(location, is_local=is_local)
    for module in modules:
        if isinstance(module, dict) and str(module.get("type", "")).endswith("Pooling"):
            cfg = _read_json(location, f"{module.get('path', '')}/config.json".lstrip("/"), is_local=is_local) or {}
            if "pooling_mode" in cfg:
                return str(cfg["pooling_mode"])
            for flag, mode in (
                ("pooling_mode_cls_token", "cls"),
                ("pooling_mode_mean_tokens", "mean"),
                ("pooling_mode_max_tokens", "max"),
                ("pooling_mode_lasttoken", "lasttoken"),
                ("pooling_mode_weightedmean_tokens", "weightedmean"),
            ):
                if cfg.get(flag):
                    return mode
            return "mean"
    return None


def _layers(model: Any) -> Any:
    """The ``ModuleList`` of encoder layers of a BERT-style model, or ``None``."""
    backbone = getattr(model, "base_model", model)
    encoder = getattr(backbone, "encoder", None)
    layers = getattr(encoder, "layer", None)
    import torch

    return layers if isinstance(layers, torch.nn.ModuleList) else None


def keep_first_layers(model: Any, n: int) -> None:
    """Keep only the first ``n`` encoder layers (a smaller, faster reranker; updates the config).

    Raises:
        ValueError: If the architecture has no BERT-style layer list or ``n`` is out of range.
    """
    import torch

    layers = _layers(model)
    if layers is None:
        raise ValueError(f"keep_layers supports BERT-style encoders; {type(model).__name__} has no encoder.layer list")
    if not 1 <= n <= len(layers):
        raise ValueError(f"keep_layers must be in [1, {len(layers)}], got {n}")
    backbone = getattr(model, "base_model", model)
    backbone.encoder.layer = torch.nn.ModuleList(list(layers)[:n])
    model.config.num_hidden_layers = n


def add_cls_mean_layer(model: Any) -> None:
    """Append a layer that gives the first position the mean of all token states (see the module notes).

    Raises:
        ValueError: If the architecture is not a BERT-style encoder (BERT, XLM-R, RoBERTa, ELECTRA...).
    """
    import copy

    import torch

    layers = _layers(model)
    last = layers[-1] if layers is not None and len(layers) else None
    attention = getattr(last, "attention", None)
    self_attn = getattr(attention, "self", None)
    needed = (
        getattr(self_attn, "query", None),
        getattr(self_attn, "key", None),
        getattr(self_attn, "value", None),
        getattr(getattr(attention, "output", None), "dense", None),
        getattr(getattr(attention, "output", None), "LayerNorm", None),
        getattr(getattr(last, "output", None), "dense", None),
        getattr(getattr(last, "output", None), "LayerNorm", None),
    )
    if last is None or any(m is None for m in needed):
        raise ValueError(
            f"the [CLS]-mean layer supports BERT-style encoders (bert, xlm-roberta, roberta, electra); "
            f"got {getattr(model.config, 'model_type', type(model).__name__)!r}"
        )
    if getattr(model.config, "position_embedding_type", "absolute") not in ("absolute", None):
        raise ValueError("the [CLS]-mean layer needs absolute position embeddings")
    new = copy.deepcopy(last)
    att = new.attention
    hidden = att.self.value.weight.shape[0]
    with torch.no_grad():
        for lin in (att.self.query, att.self.key):
            lin.weight.zero_()
            lin.bias.zero_()
        eye = torch.eye(hidden, dtype=att.self.value.weight.dtype)
        for lin in (att.self.value, att.output.dense):
            lin.weight.copy_(eye)
            lin.bias.zero_()
        att.output.LayerNorm.weight.fill_(1.0)
        att.output.LayerNorm.bias.zero_()
        new.output.dense.weight.zero_()
        new.output.dense.bias.zero_()
        # output LayerNorm stays the copy of the last layer's: LN_out(norm(mean + h)) = last layer's output space
    if hasattr(new, "layer_idx"):
        new.layer_idx = len(layers)
    if hasattr(att.self, "layer_idx"):
        att.self.layer_idx = len(layers)
    layers.append(new)
    model.config.num_hidden_layers = len(layers)


def cls_spread_ratio(model: Any, tokenizer: Any, pairs: list[tuple[str, str]], *, max_length: int = 128) -> float:
    """How much the final [CLS] state varies over inputs, relative to the mean-pooled state.

    Returns:
        Mean distance of [CLS] states from their centroid divided by the same for mean-pooled states
        (near 0: [CLS] ignores the input; around 1: it varies as much as the mean).
    """
    import torch

    backbone = getattr(model, "base_model", model)
    queries, passages = zip(*pairs, strict=True)
    enc = tokenizer(
        list(queries), list(passages), truncation=True, max_length=max_length, padding=True, return_tensors="pt"
    )
    enc = {k: v.to(next(model.parameters()).device) for k, v in enc.items()}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        hidden = backbone(**enc).last_hidden_state.float()
    model.train(was_training)
    mask = enc["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    cls = hidden[:, 0]

    def spread(v: torch.Tensor) -> float:
        centre = v.mean(0, keepdim=True)
        return float((v - centre).norm(dim=-1).mean() / centre.norm().clamp(min=1e-12))

    mean_spread = spread(mean)
    ratio = spread(cls) / mean_spread if mean_spread > 0 else 1.0
    logger.info("[CLS] spread / mean-pooled spread of the base: %.3f", ratio)
    return ratio


def _base_kind(source: Any) -> tuple[str, str | None]:
    """``(kind, pooling)`` of a resolved base: a cross-encoder, a sentence-transformers embedder or an encoder.

    Raises:
        ValueError: On a cross-encoder with more than one output label.
    """
    config = _read_json(source.location, "config.json", is_local=source.is_local) or {}
    architectures = [str(a) for a in config.get("architectures") or []]
    has_head = any(a.endswith("ForSequenceClassification") for a in architectures)
    pooling = _pooling_mode(source.location, is_local=source.is_local)
    if has_head:
        labels = int(config.get("num_labels") or len(config.get("id2label") or {}) or 1)
        if labels != 1:
            raise ValueError(
                f"base {source.name!r} has {labels} output labels; training supports single-logit rerankers"
            )
        return "cross-encoder", pooling
    return ("sentence-transformer" if pooling else "encoder"), pooling


def _add_cls_mean_layer_if_wanted(
    model: Any, option: ClsMeanOption, *, kind: str, pooling: str | None, ratio: float | None
) -> bool:
    """Add the [CLS]-mean layer when ``option`` asks for it (``"auto"``: see the module notes); return whether."""
    if option == "auto":
        wanted = (kind == "sentence-transformer" and pooling != "cls") or (
            kind == "encoder" and ratio is not None and ratio < CLS_SPREAD_THRESHOLD
        )
        if wanted and _layers(model) is None:
            logger.warning("not adding the [CLS]-mean layer: %s is not a BERT-style encoder", model.config.model_type)
            return False
    else:
        wanted = option == "on"
    if wanted:
        add_cls_mean_layer(model)
        logger.info(
            "added a layer that hands [CLS] the mean of all tokens (base pooling: %s%s)",
            pooling or "none",
            f", [CLS] spread ratio {ratio:.3f}" if ratio is not None else "",
        )
    return wanted


def _freeze(model: Any, *, embeddings: bool, layers: int) -> tuple[str, ...]:
    """Freeze the embeddings and the lowest ``layers`` encoder layers; return what was frozen, for the card."""
    frozen: list[str] = []
    backbone = getattr(model, "base_model", model)
    if embeddings and getattr(backbone, "embeddings", None) is not None:
        backbone.embeddings.requires_grad_(False)
        frozen.append("embeddings")
    if layers:
        current = _layers(model)
        if current is None:
            raise ValueError("freeze_layers supports BERT-style encoders only")
        if not 0 <= layers < len(current):
            raise ValueError(f"freeze_layers must be in [0, {len(current) - 1}], got {layers}")
        for layer in list(current)[:layers]:
            layer.requires_grad_(False)
        frozen.append(f"layers 0-{layers - 1}" if layers > 1 else "layer 0")
    return tuple(frozen)


def load_base(
    base: str | os.PathLike[str],
    *,
    max_length: int = 256,
    cls_mean_layer: ClsMeanOption = "auto",
    keep_layers: int | None = None,
    freeze_embeddings: bool = True,
    freeze_layers: int = 0,
    probe_pairs: list[tuple[str, str]] | None = None,
    device: str | None = None,
) -> tuple[CrossEncoder, BaseInfo]:
    """Load ``base`` as a single-logit sentence-transformers ``CrossEncoder`` ready to train.

    Args:
        base: Alias, hub id or local folder: a cross-encoder, a sentence-transformers embedder or an encoder.
        max_length: Token limit of a (query, passage) pair.
        cls_mean_layer: ``"auto"``, ``"on"`` or ``"off"`` (see the module notes).
        keep_layers: Keep only the first N encoder layers (before the mean layer is added).
        freeze_embeddings: Do not train the embedding matrices (much faster on CPU with a large vocabulary).
        freeze_layers: Do not train the lowest N encoder layers.
        probe_pairs: A few (query, passage) pairs to measure the [CLS] spread on (``auto`` with a headless base).
        device: Device string (default: CUDA when available).

    Returns:
        The model and what was done.

    Raises:
        ModelLoadError: If the base cannot be loaded (offline without a cached copy, missing folder...).
        ValueError: On a multi-label base or an option the architecture does not support.
    """
    from sentence_transformers import CrossEncoder

    from jp_rerank.loading import load_st_model, resolve_model
    from jp_rerank.runtime import resolve_device

    if cls_mean_layer not in ("auto", "on", "off"):
        raise ValueError(f"cls_mean_layer must be 'auto', 'on' or 'off', got {cls_mean_layer!r}")
    source = resolve_model(base)
    kind, pooling = _base_kind(source)
    ce = load_st_model(CrossEncoder, source, device=resolve_device(device), num_labels=1, max_length=max_length)
    model = ce.model
    if model is None:
        raise ValueError(f"base {source.name!r} did not load as a sequence-classification model")
    layers = _layers(model)
    base_layers = len(layers) if layers is not None else int(getattr(model.config, "num_hidden_layers", 0) or 0)
    if keep_layers is not None:
        keep_first_layers(model, keep_layers)
    ratio = None
    if kind != "cross-encoder" and probe_pairs:  # a headless base: does its [CLS] state follow the input?
        ratio = cls_spread_ratio(model, ce.tokenizer, probe_pairs[:16], max_length=min(max_length, 256))
    add = _add_cls_mean_layer_if_wanted(model, cls_mean_layer, kind=kind, pooling=pooling, ratio=ratio)
    frozen = _freeze(model, embeddings=freeze_embeddings, layers=freeze_layers)
    info = BaseInfo(
        name=str(base),
        location=source.location,
        kind=kind,
        model_type=str(getattr(model.config, "model_type", "")),
        pooling=pooling,
        base_layers=base_layers,
        kept_layers=keep_layers,
        cls_mean_layer=add,
        cls_spread_ratio=ratio,
        frozen=frozen,
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total_parameters=sum(p.numel() for p in model.parameters()),
        max_length=max_length,
    )
    logger.info(
        "base %s (%s, %s): %d layers%s%s; %.1fM of %.1fM parameters train",
        source.name,
        kind,
        info.model_type,
        len(_layers(model) or []) or base_layers,
        f" (first {keep_layers} kept)" if keep_layers else "",
        " + [CLS]-mean layer" if add else "",
        info.trainable_parameters / 1e6,
        info.total_parameters / 1e6,
    )
    return ce, info
