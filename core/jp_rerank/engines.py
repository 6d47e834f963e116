"""What every engine shares: lazy loading under one lock, copies, pickles and forks, one engine per configuration.

:class:`ModelHandle` is the base of :class:`~jp_rerank.Reranker`, :class:`~jp_rerank.Embedder` and
:class:`~jp_rerank.SparseEmbedder`: it resolves the model (:mod:`jp_rerank.loading`), loads it once under its lock,
deep-copies by sharing the loaded model and pickles without it (loaded again, lazily, after unpickling). A forked
child gets fresh locks and reloads. :func:`build_engine` is how both adapter packages get their engine: the one
passed in, or the shared one of their configuration (:func:`shared_engine`, :func:`engine_options`).
"""

from __future__ import annotations

import copy
import inspect
import os
import sys
import threading
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from jp_rerank._pickling import FreshOnCopy
from jp_rerank.loading import (
    ModelRole,
    ModelSource,
    cached_folder,
    check_kind,
    inspect_model_folder,
    load_st_model,
    resolve_model,
)
from jp_rerank.presets import ModelPreset
from jp_rerank.runtime import resolve_device, set_torch_threads

__all__ = ["ModelHandle", "build_engine", "constructor_signature", "engine_options", "shared_engine"]

T = TypeVar("T")
H = TypeVar("H", bound="ModelHandle")
E = TypeVar("E", bound="ModelHandle")


class ModelHandle(FreshOnCopy):
    """What every engine model wrapper shares: where the model comes from, how to load it, and one lock.

    Subclasses (the reranker and the embedders) load lazily under ``self._lock`` with ``self._load_st(cls)``, which
    checks first that the folder holds the kind of model the subclass uses (its ``role``), and name the attributes
    holding what loading built in ``_loaded_attrs``.

    Copies and pickles: ``copy.deepcopy`` gives an engine with its own settings that shares the loaded model and
    its lock (no second copy of the weights); ``pickle`` leaves the model and the lock out, and the unpickled engine
    loads the model again on first use, as a new engine does (workers of ``multiprocessing``, joblib or Ray).

    Args:
        model: Alias, hub id or local directory.
        preset: Alias or hub id of the preset a local folder is a copy of (default: recognised from its files or
            name, see :func:`jp_rerank.presets.recognize_preset`).
        device: Device string, or ``None`` to pick one at load time.
        local_files_only: Only use local files / the HF cache (default: on when ``HF_HUB_OFFLINE`` is set).
        cache_folder: Hugging Face cache override.
        revision: Hub revision.
        trust_remote_code: Allow custom code from the hub repository.
        num_threads: torch CPU threads (intra-op) to use, set for the whole process when the model loads (see
            :func:`jp_rerank.runtime.set_torch_threads`); ``None`` keeps torch's setting.

    Example:
        >>> import copy
        >>> handle = ModelHandle("xsmall")
        >>> handle.model_id
        'hotchpotch/japanese-reranker-cross-encoder-xsmall-v1'
        >>> copy.deepcopy(handle).model_id
        'hotchpotch/japanese-reranker-cross-encoder-xsmall-v1'
    """

    _fresh_on_copy: ClassVar[dict[str, Callable[[], Any]]] = {"_lock": threading.RLock}

    role: ClassVar[ModelRole | None] = None
    """What the subclass uses its model as; the folder's kind is checked against it before loading."""
    _loaded_attrs: ClassVar[tuple[str, ...]] = ()
    """Attributes holding the loaded model: shared by deep copies, left out of pickles (``None`` after unpickling)."""

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
        num_threads: int | None = None,
    ) -> None:
        if num_threads is not None and (
            isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads <= 0
        ):
            raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")
        self.source: ModelSource = resolve_model(model, preset=preset)
        self.model_id: str = self.source.model_id
        """Hub id (for presets and hub models) or resolved local path."""
        self.device = None if device is None else resolve_device(device)  # checks the name; torch not imported
        self.num_threads = num_threads
        self._load_kwargs: dict[str, Any] = {
            "local_files_only": local_files_only,
            "cache_folder": cache_folder,
            "revision": revision,
            "trust_remote_code": trust_remote_code,
        }
        self._lock = threading.RLock()
        _live_handles.add(self)

    def load(self: H) -> H:
        """Load the model now instead of on first use; returns ``self``."""
        self._load()
        return self

    def _load(self) -> object:
        """Load the model once (under ``self._lock``) and return it; subclasses implement it."""
        raise NotImplementedError

    def _load_st(self, cls: type[T], device: str | None = None) -> T:
        """Load this handle's model as sentence-transformers class ``cls`` with its device and load options.

        Raises:
            ModelLoadError: The model cannot be had, or its folder holds another kind of model than ``role``.
        """
        cache_folder, revision = self._load_kwargs["cache_folder"], self._load_kwargs["revision"]
        folder = cached_folder(self.source, cache_folder, revision)
        if self.role is not None and folder is not None:
            check_kind(self.role, inspect_model_folder(folder), self.source)
        if self.num_threads is not None:
            set_torch_threads(self.num_threads)
        model = load_st_model(cls, self.source, device=device or resolve_device(self.device), **self._load_kwargs)
        if self.role is not None and folder is None:  # downloaded just now: check what came
            folder = cached_folder(self.source, cache_folder, revision)
            if folder is not None:
                check_kind(self.role, inspect_model_folder(folder), self.source)
        return model

    @property
    def preset(self) -> ModelPreset | None:
        """The preset of a known model, else ``None``."""
        return self.source.preset

    def model_folder(self) -> Path | None:
        """The folder the weights are loaded from (``None`` when a hub model is not cached).

        That is the local folder, or the hub-cache snapshot of the revision asked for.
        """
        return cached_folder(self.source, self._load_kwargs["cache_folder"], self._load_kwargs["revision"])

    # ------------------------------------------------------------------ copies and pickles
    def __deepcopy__(self: H, memo: dict[int, Any]) -> H:
        cls = type(self)
        new = cls.__new__(cls)
        memo[id(self)] = new
        shared = {"_lock", *self._loaded_attrs}
        for key, value in self.__dict__.items():
            new.__dict__[key] = value if key in shared else copy.deepcopy(value, memo)
        _live_handles.add(new)
        return new

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        for name in self._loaded_attrs:
            state[name] = None  # the model itself is reloaded on first use
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        _live_handles.add(self)


# ---------------------------------------------------------------------------------------------- fork

_live_handles: weakref.WeakSet[ModelHandle] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """Make engines usable in a child forked from a process that used them.

    A lock held by another thread at the moment of the fork stays held forever in the child, and the thread pools
    of torch (OpenMP), ONNX Runtime and OpenVINO do not survive a fork (the first parallel region hangs). So the
    child gets new locks (copies that shared one still share one), drops what loading built (reloaded from disk on
    first use, with fresh runtimes), and torch runs on one thread in it: forked workers are usually many, and
    ``multiprocessing``'s ``spawn`` / ``forkserver`` contexts give each child all its threads back.
    """
    global _engines_lock
    _engines_lock = threading.Lock()
    fresh: dict[int, threading.RLock] = {}
    for handle in list(_live_handles):
        handle._lock = fresh.setdefault(id(handle._lock), threading.RLock())
        for name in handle._loaded_attrs:
            setattr(handle, name, None)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() > 1:
        torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ---------------------------------------------------------------------------------------------- adapters' engines

_engines: weakref.WeakValueDictionary[Any, ModelHandle] = weakref.WeakValueDictionary()
_engines_lock = threading.Lock()


def shared_engine(engine: type[H], model: str | os.PathLike[str], /, **options: Any) -> H:
    """One engine per (engine class, model, options) in this process, so adapters built alike share one model.

    Two calls share an engine when the class is the same, the model resolves to the same place (an alias and its
    hub id, or two spellings of one folder, are one model) and every constructor argument is equal once defaults
    are filled in. Engines are held weakly: when nothing uses one any more, it is freed with its model. Options
    that cannot be hashed give a new engine. The shared engine's settings are those it was built with; configure
    an adapter through its own options, not by changing the shared engine.

    The LangChain and LlamaIndex adapters build their engines with it; an engine passed to an adapter
    (``reranker=`` / ``embedder=``) is always used as given.

    Raises:
        TypeError: An option the engine does not take.

    Example:
        >>> from jp_rerank import Reranker
        >>> a = shared_engine(Reranker, "xsmall", device="cpu")
        >>> a is shared_engine(Reranker, "hotchpotch/japanese-reranker-cross-encoder-xsmall-v1", device="cpu")
        True
        >>> a is shared_engine(Reranker, "xsmall", device="cpu", batch_size=8)
        False
    """
    signature = constructor_signature(engine)
    bound = signature.bind(model, **options)
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    first = next(iter(signature.parameters))
    given_model = arguments.pop(first)
    source = resolve_model(given_model, preset=arguments.get("preset"))
    key = (engine, source.location, tuple(sorted(arguments.items())))
    try:
        hash(key)
    except TypeError:
        return engine(model, **options)
    with _engines_lock:
        found = _engines.get(key)
        if found is None:
            found = engine(model, **options)
            _engines[key] = found
        return found  # type: ignore[return-value]


def engine_options(
    engine: type[ModelHandle],
    named: Mapping[str, Any],
    model_kwargs: Mapping[str, Any] | None = None,
    *,
    where: str = "model_kwargs",
) -> dict[str, Any]:
    """Merge an adapter's named options with its ``model_kwargs`` into keyword arguments of ``engine``.

    Named options left at ``None`` are unset. A name given both ways must have the same value both times
    (``device="cpu"`` with ``model_kwargs={"device": "cpu"}`` is fine); a key of ``model_kwargs`` that the engine
    does not take is refused with the list of those it takes.

    Args:
        engine: The engine class (``Reranker``, ``Embedder``...).
        named: The adapter's named options (engine argument names).
        model_kwargs: Further engine arguments.
        where: How the caller calls ``model_kwargs``, for messages.

    Returns:
        The keyword arguments for ``engine(model, **kwargs)``.

    Raises:
        TypeError: ``model_kwargs`` is not a mapping, or has a key the engine does not take.
        ValueError: ``model_kwargs`` names the model, or a name is given twice with different values.

    Example:
        >>> from jp_rerank import Embedder
        >>> engine_options(Embedder, {"device": None, "cache_folder": None}, {"device": "cpu", "batch_size": 8})
        {'device': 'cpu', 'batch_size': 8}
    """
    if model_kwargs is None:
        model_kwargs = {}
    if not isinstance(model_kwargs, Mapping):
        raise TypeError(f"{where} must be a dict of {engine.__name__} arguments, got {type(model_kwargs).__name__}")
    parameters = list(constructor_signature(engine).parameters)
    accepted = set(parameters[1:])
    merged = dict(model_kwargs)
    for key in merged:
        if key in (parameters[0], "model", "model_name"):
            raise ValueError(f"{where} names the model ({key!r}): pass it as the adapter's model argument instead")
        if key not in accepted:
            raise TypeError(
                f"{where} has {key!r}, which jp_rerank.{engine.__name__} does not take; it takes: "
                f"{', '.join(sorted(accepted))}"
            )
    for key, value in named.items():
        if value is None:
            continue
        if key in merged and merged[key] != value:
            raise ValueError(
                f"{key} is given twice with different values: {key}={value!r} and {where}[{key!r}]={merged[key]!r}"
            )
        merged[key] = value
    return merged


def build_engine(
    kind: type[E],
    injected: E | None,
    model: str | os.PathLike[str] | None,
    default: str,
    options: Mapping[str, Any],
    model_kwargs: Mapping[str, Any] | None = None,
    *,
    where: str = "model_kwargs",
) -> E:
    """Return the injected engine, or the shared engine of ``kind`` for the model and options set.

    Options left at ``None`` are not passed, so the engine's own defaults apply; ``model_kwargs`` adds any other
    engine argument (see :func:`jp_rerank.engines.engine_options`).

    Raises:
        TypeError: If ``injected`` is not a ``kind``, or ``model_kwargs`` has a key the engine does not take.
        ValueError: If an engine is injected together with a model or engine options (they would be ignored), or
            an option is given twice with different values.

    Example:
        >>> from jp_rerank import Reranker
        >>> built = build_engine(Reranker, None, "xsmall", "base", {"device": "cpu"}, {"batch_size": 8})
        >>> built is shared_engine(Reranker, "xsmall", device="cpu", batch_size=8)
        True
    """
    if injected is None:
        kwargs = engine_options(kind, options, model_kwargs, where=where)
        return shared_engine(kind, default if model is None else model, **kwargs)
    if not isinstance(injected, kind):
        raise TypeError(f"expected a jp_rerank.{kind.__name__}, got {type(injected).__name__}")
    given = sorted(k for k, v in options.items() if v is not None) + ([where] if model_kwargs else [])
    if model is not None or given:
        names = ["model"] * (model is not None) + given
        raise ValueError(f"an engine was injected, so {names} cannot be set here: configure the engine itself")
    return injected


def constructor_signature(engine: type) -> inspect.Signature:
    """The arguments an engine class is built with: its ``__init__``'s, without ``self``.

    (``Reranker`` and ``Embedder`` also define ``__new__``, only to hand a server URL to their remote twin, so
    ``inspect.signature`` of the class would show that instead.)

    Example:
        >>> from jp_rerank import Reranker
        >>> list(constructor_signature(Reranker).parameters)[:2]
        ['model', 'preset']
    """
    signature = inspect.signature(engine.__init__)  # type: ignore[misc]
    return signature.replace(parameters=list(signature.parameters.values())[1:])
