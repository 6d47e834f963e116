"""Ctrl-C while Ray starts or stops: recorded, then acted on once Ray is in a state it can be shut down from.

A ``KeyboardInterrupt`` raised in the middle of ``ray.init`` leaves the driver's core worker half built: the
job never reaches its ``ray.shutdown()``, and the process crashes when the interpreter exits (Ray's exit hook
tears the core worker down while its threads still run, SIGSEGV). One raised inside ``ray.shutdown`` cuts the
clean-up short. :class:`DeferredSigint` turns SIGINT into a flag for such a block; the caller then stops in an
orderly way and :meth:`DeferredSigint.deliver` raises the ``KeyboardInterrupt`` the signal would have raised.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["DeferredSigint"]


class DeferredSigint:
    """Record SIGINT instead of raising ``KeyboardInterrupt`` inside a ``with`` block (main thread only).

    Outside the main thread, or where SIGINT is ignored (a background job of a shell), the block changes
    nothing and :attr:`received` stays false.

    Args:
        force_on_second: A second SIGINT inside the block is handled at once as the previous handler would
            (``KeyboardInterrupt``): a way out of a start-up that hangs (e.g. an unreachable cluster).

    Example:
        >>> with DeferredSigint() as guard:  # doctest: +SKIP
        ...     ray.init()  # a Ctrl-C in here is recorded, nothing raised
        >>> try:  # doctest: +SKIP
        ...     guard.deliver()  # the KeyboardInterrupt of that Ctrl-C, if there was one
        ... finally:
        ...     ray.shutdown()
    """

    def __init__(self, *, force_on_second: bool = False) -> None:
        self.force_on_second = force_on_second
        self.received = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> DeferredSigint:
        if threading.current_thread() is not threading.main_thread():
            return self
        previous = signal.getsignal(signal.SIGINT)
        if previous in (signal.SIG_IGN, None):  # ignored, or a handler not installed from Python: leave it
            return self
        self._previous = previous
        signal.signal(signal.SIGINT, self._record)
        self._installed = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.received and self.force_on_second:
            self._call_previous(frame)
        self.received = True

    def deliver(self) -> None:
        """Act on a SIGINT received in the block as the handler in place before it would have (no-op if none).

        Raises:
            KeyboardInterrupt: With Python's default handler, if a SIGINT was received.
        """
        if self.received:
            self.received = False
            self._call_previous(None)

    def _call_previous(self, frame: FrameType | None) -> None:
        previous = self._previous
        if callable(previous):
            previous(signal.SIGINT, frame)
        elif previous == signal.SIG_DFL:  # end the process as the signal would
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.raise_signal(signal.SIGINT)
        else:
            raise KeyboardInterrupt
