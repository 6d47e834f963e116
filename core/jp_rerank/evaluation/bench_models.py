"""The cross-encoders ``jp-rerank bench`` times: the real preset when cached, else a same-shape local model.

Same-shape models are random-weight models of a preset's exact architecture and size, built once with
:mod:`jp_rerank.testing`: their speed is the real model's, their scores are not.

Example:
    >>> "xsmall-v2" in RERANK_SHAPES
    True
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from jp_rerank.extras import is_available

__all__ = ["RERANK_SHAPES", "cached_preset", "same_shape_cross_encoder"]

logger = logging.getLogger(__name__)

RERANK_SHAPES = (
    "xsmall",
    "small",
    "base",
    "large",
    "tiny-v2",
    "xsmall-v2",
    "small-v2",
    "base-v2",
    "ruri-v3-reranker-310m",
)
"""Reranker shapes :func:`same_shape_cross_encoder` builds (sizes from :data:`jp_rerank.testing.SHAPES`): the v1
XLM-R / BERT rerankers and the ModernBERT generation (japanese-reranker-*-v2, ruri-v3-reranker-310m)."""


def cached_preset(alias: str) -> str | None:
    """Local snapshot folder of a preset if it is in the Hugging Face cache (never contacts the hub)."""
    from jp_rerank.presets import find_preset

    preset = find_preset(alias)
    if preset is None or not is_available("huggingface_hub"):
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(preset.model_id, "config.json")
    return str(Path(found).parent) if isinstance(found, str) else None


def same_shape_cross_encoder(
    shape: str, models_dir: Path, *, tokenizer_json: str | os.PathLike[str] | None = None
) -> tuple[str, str]:
    """Return (path, note) of the model for a shape: the cached real preset, else a same-shape local model.

    Same-shape models are built once into ``models_dir`` with :mod:`jp_rerank.testing`. ``tokenizer_json``
    replaces the XLM-R and ModernBERT shapes' demo tokenizer with a real one (e.g. multilingual-e5's
    ``tokenizer.json``), so that pair lengths, and with them the speeds, are those of real text; a ModernBERT shape
    then keeps that tokenizer's own special tokens and pair template (give the same file to every shape to time
    the architectures on the same token counts).
    """
    from jp_rerank import testing

    real = cached_preset(shape)
    if real is not None:
        return real, f"real preset {shape} (from the local Hugging Face cache)"
    arch = testing.SHAPES[shape].arch
    real_tok = arch in ("xlm-roberta", "modernbert") and tokenizer_json is not None
    suffix = "-xlmr-tokenizer" if arch == "xlm-roberta" else "-real-tokenizer"
    folder = models_dir / (shape + suffix if real_tok else shape)
    if not (folder / "config.json").is_file():
        logger.info("building a same-shape %s cross-encoder in %s", shape, folder)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        if arch == "modernbert":
            testing.build_modernbert_cross_encoder(
                tmp,
                shape=shape,  # type: ignore[arg-type]
                tokenizer_json=tokenizer_json if real_tok else None,
            )
        elif arch == "xlm-roberta":
            testing.build_xlmr_cross_encoder(tmp, shape=shape)  # type: ignore[arg-type]
            if real_tok and tokenizer_json is not None:
                shutil.copy2(tokenizer_json, tmp / "tokenizer.json")
        else:
            testing.build_bert_ja_cross_encoder(tmp, shape=shape)  # type: ignore[arg-type]
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    like = testing.SHAPES[shape].like
    tok = "the given real tokenizer" if real_tok else "a tokenizer trained on the bundled demo corpus"
    return str(folder), f"same-shape random-weight model ({like}) with {tok}; the real preset was not reachable"
