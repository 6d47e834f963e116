"""DeferredSigint (what ``ray_session`` wraps ``ray.init`` and ``ray.shutdown`` in), with real signals, no Ray."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from jp_rerank.distributed.interrupt import DeferredSigint


@pytest.fixture
def calls() -> Iterator[list[int]]:
    """A SIGINT handler of the test's own in place (so no stray KeyboardInterrupt can reach pytest)."""
    if threading.current_thread() is not threading.main_thread():  # pragma: no cover
        pytest.skip("signal handlers can only be set in the main thread")
    seen: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def _sigint() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    signal.getsignal(signal.SIGINT)  # a few bytecodes: Python runs the handler before this returns


def test_a_sigint_in_the_block_is_recorded_and_delivered_after(calls: list[int]) -> None:
    before = signal.getsignal(signal.SIGINT)
    with DeferredSigint() as guard:
        _sigint()
        assert calls == []
        assert guard.received
    assert signal.getsignal(signal.SIGINT) is before
    guard.deliver()
    assert calls == [signal.SIGINT]
    guard.deliver()  # once only
    assert calls == [signal.SIGINT]


def test_nothing_received_delivers_nothing(calls: list[int]) -> None:
    with DeferredSigint() as guard:
        pass
    guard.deliver()
    assert not guard.received
    assert calls == []


def test_force_on_second_hands_the_second_sigint_on_at_once(calls: list[int]) -> None:
    with DeferredSigint(force_on_second=True):
        _sigint()
        assert calls == []
        _sigint()
        assert calls == [signal.SIGINT]


def test_default_handler_raises_keyboard_interrupt_on_delivery(calls: list[int]) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with DeferredSigint() as guard:
        _sigint()
    with pytest.raises(KeyboardInterrupt):
        guard.deliver()


def test_an_ignored_sigint_stays_ignored(calls: list[int]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with DeferredSigint() as guard:
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        _sigint()
    assert not guard.received


def test_outside_the_main_thread_the_block_changes_nothing(calls: list[int]) -> None:
    handlers: list[object] = []

    def run() -> None:
        with DeferredSigint() as guard:
            handlers.append(signal.getsignal(signal.SIGINT))
        handlers.append(guard.received)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert handlers[1] is False
    assert signal.getsignal(signal.SIGINT) is handlers[0]  # the test's handler, untouched
