"""Resolving model names (alias, hub id, local path), devices, and loading sentence-transformers models.

This is where every model is loaded, so offline behaviour and error messages are decided in one place:

- a local directory is loaded as is;
- an alias or hub id goes through the Hugging Face cache; with ``HF_HUB_OFFLINE=1`` (or ``local_files_only=True``)
  only the cache is used;
- a model that cannot be had raises :class:`~jp_rerank.errors.ModelLoadError` naming the model, saying whether the
  hub was unreachable or the cache empty, and how to pass a local path instead.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from jp_rerank.errors import ModelLoadError
from jp_rerank.presets import ModelPreset, find_preset, get_preset, recognize_preset, unknown_preset_message
from jp_rerank.runtime import resolve_device

__all__ = ["ModelHandle", "ModelSource", "hub_offline", "load_st_model", "resolve_device", "resolve_model"]

logger = logging.getLogger(__name__)
T = TypeVar("T")
H = TypeVar("H", bound="ModelHandle")

_TRUE = {"1", "true", "yes", "on"}


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


def hub_offline() -> bool:
    """Tell whether Hugging Face offline mode is on (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    return any(os.environ.get(var, "").strip().lower() in _TRUE for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _offline_message(source: ModelSource, local_files_only: bool, cause: BaseException) -> str:
    if source.is_local:
        return f"could not load model from local directory {source.location!r}: {cause}"
    reason = (
        "offline mode is on (HF_HUB_OFFLINE / local_files_only) and the model is not in the Hugging Face cache"
        if local_files_only or hub_offline()
        else "the Hugging Face Hub is unreachable or the model is not in the cache"
    )
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
        local_files_only: Only use the local cache (default: ``True`` when ``HF_HUB_OFFLINE`` is set).
        cache_folder: Hugging Face cache folder override.
        revision: Hub revision (branch, tag or commit).
        trust_remote_code: Allow custom code from the hub repository (default: the preset's setting, else False).
        **kwargs: Passed to the class.

    Returns:
        The loaded model.

    Raises:
        ModelLoadError: If the model cannot be found or read (the message says what to do).
    """
    offline = hub_offline() if local_files_only is None else local_files_only
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
        if isinstance(exc, ValueError) and source.is_local:
            raise
        raise ModelLoadError(_offline_message(source, offline, exc)) from exc


class ModelHandle:
    """What every engine model wrapper shares: where the model comes from, how to load it, and one lock.

    Subclasses (the reranker and the embedders) load lazily under ``self._lock`` with
    ``load_st_model(cls, self.source, device=resolve_device(self.device), **self._load_kwargs)``.

    Args:
        model: Alias, hub id or local directory.
        preset: Alias or hub id of the preset a local folder is a copy of (default: recognised from its files or
            name, see :func:`jp_rerank.presets.recognize_preset`).
        device: Device string, or ``None`` to pick one at load time.
        local_files_only: Only use local files / the HF cache (default: on when ``HF_HUB_OFFLINE`` is set).
        cache_folder: Hugging Face cache override.
        revision: Hub revision.
        trust_remote_code: Allow custom code from the hub repository.

    Example:
        >>> ModelHandle("xsmall").model_id
        'hotchpotch/japanese-reranker-cross-encoder-xsmall-v1'
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        preset: str | None = None,
        device: str | None = None,
        local_files_only: bool | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        trust_remote_code: bool | None = None,
    ) -> None:
        self.source: ModelSource = resolve_model(model, preset=preset)
        self.device = device
        self._load_kwargs: dict[str, Any] = {
            "local_files_only": local_files_only,
            "cache_folder": cache_folder,
            "revision": revision,
            "trust_remote_code": trust_remote_code,
        }
        self._lock = threading.RLock()

    @property
    def model_id(self) -> str:
        """Hub id (for presets and hub models) or resolved local path."""
        return self.source.model_id

    def load(self: H) -> H:
        """Load the model now instead of on first use; returns ``self``."""
        self._load()
        return self

    def _load(self) -> object:
        """Load the model once (under ``self._lock``) and return it; subclasses implement it."""
        raise NotImplementedError

    def _load_st(self, cls: type[T], device: str | None = None) -> T:
        """Load this handle's model as sentence-transformers class ``cls`` with its device and load options."""
        return load_st_model(cls, self.source, device=device or resolve_device(self.device), **self._load_kwargs)

    @property
    def preset(self) -> ModelPreset | None:
        """The preset of a known model, else ``None``."""
        return self.source.preset
