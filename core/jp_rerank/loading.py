"""Resolving model names (alias, hub id, local path), devices, and loading sentence-transformers models.

This is where every model is loaded, so offline behaviour, error messages and sharing are decided in one place:

- a local directory is loaded as is, after its small JSON files showed it holds the kind of model asked for (an
  embedder folder is refused as a reranker, a cross-encoder folder as an embedder, a folder that is no model at all
  with a :class:`~jp_rerank.errors.ModelLoadError` saying what it is, see :func:`inspect_model_folder`);
- an alias or hub id goes through the Hugging Face cache; with ``HF_HUB_OFFLINE=1`` (or ``local_files_only=True``)
  only the cache is used. Otherwise the hub is asked once per process, with a short timeout, whether it answers
  (:func:`hub_reachable`); if it does not, every later load uses only the cache (one warning says so) instead of
  spending minutes in download retries per file;
- a model that cannot be had raises :class:`~jp_rerank.errors.ModelLoadError` naming the model, saying whether the
  hub was unreachable or the cache empty, and how to pass a local path instead;
- what engines share (copies, pickles, forks, one engine per configuration) is :mod:`jp_rerank.engines`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from jp_rerank.errors import ModelLoadError
from jp_rerank.presets import ModelPreset, find_preset, get_preset, recognize_preset, unknown_preset_message

__all__ = [
    "HUB_PROBE_TIMEOUT",
    "FolderKind",
    "ModelFolder",
    "ModelRole",
    "ModelSource",
    "cached_folder",
    "check_kind",
    "hub_offline",
    "hub_reachable",
    "inspect_model_folder",
    "load_st_model",
    "resolve_model",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}

FolderKind = Literal["cross-encoder", "dense", "static", "sparse", "masked-lm", "encoder"]
"""What a model folder holds: a cross-encoder, a sentence-transformers dense or static embedder, a sparse (SPLADE)
encoder, or a plain transformers encoder with a masked-language-model head or with no head."""

ModelRole = Literal["reranker", "embedder", "sparse"]
"""What an engine uses a model as."""

_ACCEPTS: dict[ModelRole, frozenset[str]] = {
    "reranker": frozenset({"cross-encoder"}),
    # sentence-transformers mean-pools a plain encoder; the head of a masked-LM checkpoint is unused
    "embedder": frozenset({"dense", "static", "encoder", "masked-lm"}),
    # SPLADE is a masked-LM head max-pooled over the vocabulary: a masked-LM checkpoint is a valid start
    "sparse": frozenset({"sparse", "masked-lm"}),
}
_ROLE_NAMES: dict[ModelRole, str] = {
    "reranker": "a reranker (cross-encoder)",
    "embedder": "a dense embedder",
    "sparse": "a sparse (SPLADE) encoder",
}
_USE_INSTEAD: dict[str, str] = {
    "cross-encoder": "load it with jp_rerank.Reranker",
    "dense": "load it with jp_rerank.Embedder",
    "static": "load it with jp_rerank.Embedder",
    "sparse": "load it with jp_rerank.SparseEmbedder",
    "masked-lm": "its scores would come from a randomly initialised head: use a trained model of that kind",
    "encoder": "its scores would come from a randomly initialised head: use a trained model of that kind",
}


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from.

    Attributes:
        name: What the caller passed (alias, hub id or path).
        location: Hub id or local directory handed to the loader.
        is_local: Whether ``location`` is a local directory.
        preset: The matching preset, if the model is a known one.
    """

    name: str
    location: str
    is_local: bool
    preset: ModelPreset | None

    @property
    def model_id(self) -> str:
        """Identifier recorded in index manifests and results: the hub id, or the resolved local path."""
        return self.preset.model_id if self.preset and not self.is_local else self.location


def resolve_model(name: str | os.PathLike[str], *, preset: str | None = None) -> ModelSource:
    """Resolve an alias, hub id or local path.

    A path that exists is always local (even if it looks like ``org/name``); its preset is the one named by
    ``preset``, else the one its files or name show it is a copy of (:func:`jp_rerank.presets.recognize_preset`).
    An alias maps to its hub id. A string that neither exists nor is a known preset is treated as a hub id.

    Args:
        name: Alias, hub id or local directory.
        preset: Alias or hub id of the preset a local folder is a copy of (its prompts, limits, activation).

    Raises:
        TypeError: If ``name`` is not a string or path.
        ValueError: If ``name`` is empty.
        KeyError: If ``preset`` is not a known preset.
        ModelLoadError: If ``name`` looks like a path that does not exist, or like a mistyped alias (the message
            suggests the close aliases and lists them all).

    Example:
        >>> resolve_model("xsmall").location
        'hotchpotch/japanese-reranker-cross-encoder-xsmall-v1'
    """
    if not isinstance(name, str | os.PathLike):
        raise TypeError(f"model must be an alias, hub id or path, got {type(name).__name__}")
    text = os.fspath(name)
    if not text.strip():
        raise ValueError("model name is empty")
    named = get_preset(preset) if preset is not None else None
    path = Path(text).expanduser()
    if path.is_dir():
        return ModelSource(
            name=text, location=str(path.resolve()), is_local=True, preset=named or recognize_preset(path.resolve())
        )
    looks_like_path = text.startswith((".", "/", "~")) or os.sep in text.strip("/").replace("/", "", 1)
    found = find_preset(text)
    if found is None and looks_like_path:
        raise ModelLoadError(f"model directory {text!r} does not exist")
    if found is None and "/" not in text:  # neither a folder, an alias nor an org/name hub id: likely a typo
        raise ModelLoadError(
            f"{unknown_preset_message(text)}; or give a hub id (org/name) or the path of a local model folder"
        )
    location = found.model_id if found else text
    return ModelSource(name=text, location=location, is_local=False, preset=named or found)


# ---------------------------------------------------------------------------------------------- the hub, once

HUB_PROBE_TIMEOUT = 3.0
"""Seconds :func:`hub_reachable` waits for the hub's answer (a hub that answers at all answers in well under 1 s)."""

_hub_answers: dict[str, bool] = {}
_hub_lock = threading.Lock()


def _probe_hub(endpoint: str, timeout: float) -> str | None:
    """``None`` when ``endpoint`` gives any HTTP answer within ``timeout``, else why it did not."""
    try:
        from huggingface_hub import get_session

        get_session().head(endpoint, timeout=timeout)  # requests or httpx, by huggingface_hub version
    except Exception as exc:  # no answer of any kind (DNS, refused, timeout, proxy, sockets disabled): unreachable
        return f"{type(exc).__name__}: {exc}"
    return None


def _hub_endpoint() -> str:
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def hub_reachable(*, timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """Tell whether the Hugging Face Hub answers, asking it once per process (one HTTP ``HEAD``, ``timeout`` s).

    Any HTTP answer, even an error status, counts as reachable. When the hub does not answer, one warning says
    so and the answer is kept: every later model load of the process uses only the local Hugging Face cache, as
    with ``HF_HUB_OFFLINE=1`` (see :func:`hub_offline`). Proxies and certificates are those the Hugging Face
    libraries use. With ``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``) nothing is asked and the answer is
    ``False``.

    Example:
        >>> hub_offline()  # the tests run with HF_HUB_OFFLINE=1 ...
        True
        >>> hub_reachable()  # ... so the hub is not asked
        False
    """
    if _env_offline():
        return False
    endpoint = _hub_endpoint()
    with _hub_lock:
        known = _hub_answers.get(endpoint)
        if known is not None:
            return known
        reason = _probe_hub(endpoint, timeout)
        _hub_answers[endpoint] = reason is None
    if reason is not None:
        logger.warning(
            "the Hugging Face Hub (%s) cannot be reached (%s; waited at most %g s): loading models from the local "
            "Hugging Face cache only for the rest of this process; set HF_HUB_OFFLINE=1 to skip this check",
            endpoint,
            reason,
            timeout,
        )
    return reason is None


def hub_offline() -> bool:
    """Tell whether models load from the local cache only.

    True when ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set, or when :func:`hub_reachable` found the hub
    unreachable earlier in this process.

    Example:
        >>> isinstance(hub_offline(), bool)
        True
    """
    if _env_offline():
        return True
    if not _hub_answers:
        return False
    return _hub_answers.get(_hub_endpoint()) is False


def _env_offline() -> bool:
    return any(os.environ.get(var, "").strip().lower() in _TRUE for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _offline_message(source: ModelSource, local_files_only: bool, cause: BaseException) -> str:
    if source.is_local:
        return f"could not load model from local directory {source.location!r}: {cause}"
    if _env_offline() or (local_files_only and not hub_offline()):
        reason = "offline mode is on (HF_HUB_OFFLINE / local_files_only) and the model is not in the Hugging Face cache"
    elif local_files_only:
        reason = (
            "the Hugging Face Hub cannot be reached (this process now uses the cache only) and the model is not in it"
        )
    else:
        reason = "the Hugging Face Hub is unreachable or the model is not in the cache"
    return (
        f"could not load model {source.location!r}: {reason} ({type(cause).__name__}: {cause}). "
        "Download it on a connected machine (e.g. `hf download "
        f"{source.location} --local-dir ./models/{source.location.split('/')[-1]}`), copy the folder here and pass "
        "its local path as the model, or set HF_HOME to a populated cache."
    )


def load_st_model(
    cls: type[T],
    source: ModelSource,
    *,
    device: str,
    local_files_only: bool | None = None,
    cache_folder: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool | None = None,
    **kwargs: Any,
) -> T:
    """Load a sentence-transformers model class (``CrossEncoder``, ``SentenceTransformer``, ``SparseEncoder``).

    Args:
        cls: The sentence-transformers class to instantiate.
        source: Result of :func:`resolve_model`.
        device: Device string.
        local_files_only: Only use the local cache (default: ``True`` when ``HF_HUB_OFFLINE`` is set or the hub
            did not answer :func:`hub_reachable`).
        cache_folder: Hugging Face cache folder override.
        revision: Hub revision (branch, tag or commit).
        trust_remote_code: Allow custom code from the hub repository (default: the preset's setting, else False).
        **kwargs: Passed to the class.

    Returns:
        The loaded model.

    Raises:
        ModelLoadError: If the model cannot be found or read (the message says what to do).
    """
    if local_files_only is not None:
        offline = local_files_only
    else:
        offline = hub_offline() or (not source.is_local and not hub_reachable())
    trust = (
        trust_remote_code if trust_remote_code is not None else bool(source.preset and source.preset.trust_remote_code)
    )
    logger.info("loading %s %s on %s", cls.__name__, source.location, device)
    try:
        return cls(  # type: ignore[call-arg]
            source.location,
            device=device,
            local_files_only=offline or source.is_local,
            cache_folder=cache_folder,
            revision=revision,
            trust_remote_code=trust,
            **kwargs,
        )
    except (OSError, ValueError, ConnectionError, TimeoutError) as exc:
        raise ModelLoadError(_offline_message(source, offline, exc)) from exc


# ---------------------------------------------------------------------------------------------- what a folder is


@dataclass(frozen=True)
class ModelFolder:
    """What a model folder holds, read from its small JSON files (no weights are read).

    Attributes:
        path: The folder.
        kind: See :data:`FolderKind`.
        detail: What the files say, e.g. ``"a sentence-transformers embedder (Transformer, Pooling, Normalize)"``.
    """

    path: str
    kind: FolderKind
    detail: str


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelLoadError(f"{path} cannot be read as JSON ({type(exc).__name__}: {exc})") from exc


def inspect_model_folder(folder: str | os.PathLike[str]) -> ModelFolder:
    """Tell what kind of model a folder holds, from its small JSON files (no weights are read, nothing imported).

    ``config_sentence_transformers.json`` and ``modules.json`` tell sentence-transformers folders apart (cross-encoder,
    sparse encoder, dense or static embedder); ``config.json``'s ``architectures`` the plain transformers ones
    (``*ForSequenceClassification`` is a cross-encoder, ``*ForMaskedLM`` a masked-language model, else an encoder).

    Raises:
        ModelLoadError: If the folder holds neither ``config.json`` nor ``modules.json`` (it is not a model folder),
            or one of those files is not valid JSON.

    Example:
        >>> import json, tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"]}))
        >>> inspect_model_folder(folder).kind
        'cross-encoder'
    """
    root = Path(folder)
    modules = _read_json(root / "modules.json")
    config = _read_json(root / "config.json")
    st_config = _read_json(root / "config_sentence_transformers.json")
    if modules is None and config is None:
        listing = sorted(p.name for p in root.iterdir())[:8] if root.is_dir() else []
        found = f"it holds {', '.join(listing)}" if listing else "it is empty"
        raise ModelLoadError(
            f"{str(root)!r} is not a model folder: it has neither config.json nor modules.json ({found}); pass the "
            "folder that `save_pretrained` / `hf download` wrote"
        )
    st_type = st_config.get("model_type") if isinstance(st_config, dict) else None
    types = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in (modules if isinstance(modules, list) else [])]
    types = [t for t in types if t]
    archs = [str(a) for a in (config.get("architectures") or [])] if isinstance(config, dict) else []
    arch = (", ".join(archs) or str(config.get("model_type", "unknown"))) if isinstance(config, dict) else "?"
    path = str(root)
    if st_type == "CrossEncoder":
        return ModelFolder(path, "cross-encoder", f"a sentence-transformers cross-encoder ({arch})")
    if st_type == "SparseEncoder" or any(
        t in ("SpladePooling", "SparseStaticEmbedding", "MLMTransformer") for t in types
    ):
        return ModelFolder(path, "sparse", f"a sentence-transformers sparse encoder ({', '.join(types)})")
    classifier = any(a.endswith("ForSequenceClassification") for a in archs)
    # An embedder lists modules after its Transformer (Pooling, Normalize...); a cross-encoder saved with a
    # modules.json but without model_type lists the Transformer alone, and its config names a classification head.
    if modules is not None and (st_type == "SentenceTransformer" or not classifier or set(types) - {"Transformer"}):
        kind: FolderKind = "static" if "StaticEmbedding" in types else "dense"
        return ModelFolder(path, kind, f"a sentence-transformers embedder ({', '.join(types) or 'no modules'})")
    if classifier:
        return ModelFolder(path, "cross-encoder", f"a transformers sequence-classification model ({arch})")
    if any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in archs):
        return ModelFolder(path, "masked-lm", f"a transformers masked-language model ({arch}), not a trained reranker")
    return ModelFolder(path, "encoder", f"a plain transformers encoder ({arch}) with no task head")


def check_kind(role: ModelRole, folder: ModelFolder, source: ModelSource) -> None:
    """Refuse a folder holding another kind of model than the engine's ``role`` needs.

    Raises:
        ModelLoadError: Naming what the folder holds and what to load it with instead.
    """
    if folder.kind in _ACCEPTS[role]:
        return
    raise ModelLoadError(
        f"cannot use {source.location!r} as {_ROLE_NAMES[role]}: it is {folder.detail}; {_USE_INSTEAD[folder.kind]}"
    )


def cached_folder(source: ModelSource, cache_folder: str | None, revision: str | None) -> Path | None:
    """The folder a model is (or would be) loaded from: the local directory, or its hub-cache snapshot if cached."""
    if source.is_local:
        return Path(source.location)
    from huggingface_hub import try_to_load_from_cache

    for name in ("config.json", "modules.json"):
        found = try_to_load_from_cache(source.location, name, cache_dir=cache_folder, revision=revision)
        if isinstance(found, str):
            return Path(found).parent
    return None


# ---------------------------------------------------------------------------------------------- engines


def _after_fork_in_child() -> None:
    """A lock held by another thread at the moment of a fork stays held forever in the child: give it a new one."""
    global _hub_lock
    _hub_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
