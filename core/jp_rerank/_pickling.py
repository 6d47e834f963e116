"""Objects that hold locks (or thread-local state) and must still pickle and deep-copy.

A ``threading.Lock`` cannot be pickled, yet indexes, pipelines and engines travel to worker processes
(multiprocessing, joblib, Ray) and are copied (``copy.deepcopy``, pydantic ``model_copy(deep=True)``). Each copy gets
fresh per-process state of the same kind instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

__all__ = ["FreshOnCopy"]


class FreshOnCopy:
    """Mixin: the attributes named in ``_fresh_on_copy`` are left out of the pickled state and made anew on load.

    Example:
        >>> import copy, threading
        >>> class Store(FreshOnCopy):
        ...     _fresh_on_copy = {"_lock": threading.Lock}
        ...     def __init__(self):
        ...         self.items = [1]
        ...         self._lock = threading.Lock()
        >>> store = Store()
        >>> twin = copy.deepcopy(store)  # pickle.dumps / loads take the same path
        >>> twin.items, twin._lock is not store._lock
        ([1], True)
    """

    _fresh_on_copy: ClassVar[dict[str, Callable[[], Any]]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in self._fresh_on_copy:
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name, make in self._fresh_on_copy.items():
            setattr(self, name, make())
