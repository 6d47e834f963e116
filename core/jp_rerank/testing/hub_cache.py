"""Put model folders into a Hugging Face cache under hub ids, so code that names hub models runs offline.

With ``HF_HUB_OFFLINE=1`` the Hugging Face libraries resolve ``org/name`` from the cache alone:
``<cache>/models--org--name/refs/main`` names a commit and ``snapshots/<commit>/`` holds the files. Writing that
layout around a tiny model lets tests (and a team's own CI) exercise the real hub-id loading path —
``Reranker("xsmall")``, ``Embedder("me5-small")`` — without network and without the real weights.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jp_rerank.presets import ModelPreset
    from jp_rerank.testing.shapes import Arch

__all__ = ["FAKE_COMMIT", "TINY_HUB_MODELS", "install_in_hf_cache", "install_tiny_hub"]

FAKE_COMMIT = "0" * 40
"""Commit hash recorded for installed folders (any 40 hex digits work)."""


def _cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def install_in_hf_cache(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    commit: str = FAKE_COMMIT,
) -> Path:
    """Copy a model folder into the Hugging Face cache as if ``repo_id`` had been downloaded.

    Args:
        folder: A model folder (what ``save_pretrained`` / ``SentenceTransformer.save`` writes).
        repo_id: Hub id to install it under, e.g. ``"intfloat/multilingual-e5-small"``.
        cache_dir: The hub cache (default: ``huggingface_hub``'s, i.e. ``$HF_HOME/hub``).
        commit: Commit hash that ``refs/main`` points at.

    Returns:
        The snapshot folder now holding the files.

    Raises:
        NotADirectoryError: If ``folder`` is not a folder.
        ValueError: If ``repo_id`` is not of the form ``org/name``.

    Example:
        >>> import tempfile
        >>> src, cache = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
        >>> _ = (src / "config.json").write_text("{}")
        >>> install_in_hf_cache(src, "org/tiny", cache_dir=cache).relative_to(cache).as_posix()
        'models--org--tiny/snapshots/0000000000000000000000000000000000000000'
    """
    source = Path(folder)
    if not source.is_dir():
        raise NotADirectoryError(f"not a model folder: {source}")
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"repo_id must look like 'org/name', got {repo_id!r}")
    repo = _cache_root(cache_dir) / f"models--{parts[0]}--{parts[1]}"
    snapshot = repo / "snapshots" / commit
    if snapshot.exists():
        shutil.rmtree(snapshot)
    shutil.copytree(source, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    return snapshot


def _builder_for(preset: ModelPreset) -> Callable[[Path], Path]:
    """The tiny builder standing in for a preset: its kind, and for cross-encoders its architecture.

    Raises:
        ValueError: If no tiny model of the preset's cross-encoder architecture can be built.
    """
    from jp_rerank.testing.models import (
        build_bert_ja_cross_encoder,
        build_dense_embedder,
        build_modernbert_cross_encoder,
        build_splade_encoder,
        build_static_embedder,
        build_xlmr_cross_encoder,
    )

    if preset.kind == "cross-encoder":
        by_arch: dict[str, Callable[[Path], Path]] = {
            "xlm-roberta": build_xlmr_cross_encoder,
            "bert": build_bert_ja_cross_encoder,
            "modernbert": build_modernbert_cross_encoder,
        }
        if preset.architecture not in by_arch:
            raise ValueError(
                f"no tiny stand-in for preset {preset.alias!r}: its architecture {preset.architecture!r} has no "
                f"builder (known: {', '.join(by_arch)})"
            )
        return by_arch[preset.architecture]
    if preset.kind == "dense":
        # Saved without prompts, as the real multilingual-e5 uploads are: the preset must supply the prefixes.
        arch: Arch = "modernbert" if preset.architecture == "modernbert" else "xlm-roberta"
        return lambda path: build_dense_embedder(path, prompts=None, arch=arch)
    if preset.kind == "static":
        return lambda path: build_static_embedder(path, dim=preset.dims or 1024)  # static-japanese's 1024 dims
    return build_splade_encoder


TINY_HUB_MODELS: tuple[str, ...] = ("xsmall", "xsmall-v2", "me5-small", "static-ja", "splade-ja")
"""Presets :func:`install_tiny_hub` stands in for by default: the defaults (the reranker ``xsmall-v2``, a
ModernBERT) and the docs' examples (``xsmall``, the v1 XLM-R reranker)."""


def install_tiny_hub(
    cache_dir: str | os.PathLike[str] | None = None,
    aliases: Iterable[str] = TINY_HUB_MODELS,
    *,
    work_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """Install tiny random-weight stand-ins for presets into a Hugging Face cache, under the presets' hub ids.

    Each stand-in has the architecture class of its preset: cross-encoders of the preset's architecture (XLM-R,
    BERT/MeCab or ModernBERT), dense embedders without saved prompts (ModernBERT for Ruri v3, else XLM-R),
    StaticEmbedding, SPLADE. **Their outputs mean nothing**; they exist so that code written for
    the real models runs offline, end to end, through the real loading path.

    Args:
        cache_dir: The hub cache to write (default: ``huggingface_hub``'s). Point ``HF_HOME`` at a temporary
            folder first so a developer's real cache is never touched.
        aliases: Preset aliases or hub ids (cross-encoder, dense, static or sparse presets).
        work_dir: Where the models are built before they are copied (default: a temporary folder).

    Returns:
        Hub id → snapshot folder.

    Raises:
        KeyError: If an alias is not a known preset.
        ValueError: If a cross-encoder preset's architecture has no tiny builder (e.g. DistilBERT).

    Example:
        >>> import tempfile
        >>> installed = install_tiny_hub(tempfile.mkdtemp(), ["xsmall"])
        >>> list(installed)
        ['hotchpotch/japanese-reranker-cross-encoder-xsmall-v1']
    """
    import tempfile

    from jp_rerank.presets import get_preset

    root = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="jp-rerank-tiny-hub-"))
    out: dict[str, Path] = {}
    for alias in aliases:
        preset = get_preset(alias)
        built = _builder_for(preset)(root / preset.alias)
        out[preset.model_id] = install_in_hf_cache(built, preset.model_id, cache_dir=cache_dir)
    return out
