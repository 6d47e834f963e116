"""Timeouts and retries with exponential back-off for calls to a remote index server (a ``chroma run`` server).

A call that fails with a transient network error is retried after a growing, jittered delay. Whether a retry is
safe depends on the failure and the call:

* the connection could not be made (``ConnectError``, connection refused, connect timeout): the request never
  reached the server, so any call is retried;
* the request was sent but no answer came back (read timeout, connection reset, server killed mid-request):
  only idempotent calls (reads, ``upsert``, ``delete``) are retried; a non-idempotent call (``add``) raises at
  once, because it may have been applied;
* any other error (a bad request, a server-side validation error) is not transient and is raised as it is.

When the retries are used up, or a call cannot be retried, :class:`IndexServerUnavailableError` names the
operation, the server, what failed and what to do. Ingestion with ``mode="upsert"`` is idempotent by id, so it can
simply be run again after the server is back: records already stored are replaced, none is duplicated.

httpx (used by chromadb's client) is never imported here: errors are recognised by their class names.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from jp_rerank.errors import IndexServerUnavailableError

__all__ = [
    "IndexServerUnavailableError",
    "RetryPolicy",
    "RetryingProxy",
    "call_with_retries",
    "classify_failure",
    "connect_chroma_http",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

Failure = Literal["unsent", "timeout", "sent"]
"""``unsent``: no connection was made; ``timeout``/``sent``: the request may have reached the server."""

_UNSENT = frozenset({"ConnectError", "ConnectTimeout", "ConnectionRefusedError"})
_TIMEOUT = frozenset({"ReadTimeout", "WriteTimeout", "PoolTimeout", "TimeoutException", "TimeoutError"})
_SENT = frozenset(
    {
        "RemoteProtocolError",
        "ReadError",
        "WriteError",
        "NetworkError",
        "ConnectionResetError",
        "ConnectionAbortedError",
        "BrokenPipeError",
    }
)
_CHROMA_UNREACHABLE = "Could not connect to a Chroma server"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a failed call to an index server.

    Attributes:
        attempts: Tries in total (``1``: no retry).
        initial_delay: Seconds before the first retry.
        max_delay: Longest pause between two tries.
        multiplier: Growth of the pause after each failure.
        jitter: Random spread of each pause, as a fraction of it (``0.25``: +-25%), so many clients restarting
            together do not retry in lockstep.
        timeout: Seconds one request may take before it counts as failed (``None``: wait forever, not advised).

    Example:
        >>> RetryPolicy(attempts=3, initial_delay=0.5, jitter=0.0).delays()
        [0.5, 1.0]
    """

    attempts: int = 5
    initial_delay: float = 0.25
    max_delay: float = 4.0
    multiplier: float = 2.0
    jitter: float = 0.25
    timeout: float | None = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"attempts must be an int >= 1, got {self.attempts!r}")
        for name in ("initial_delay", "max_delay", "jitter"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if not isinstance(self.multiplier, int | float) or not self.multiplier >= 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier!r}")
        if self.jitter >= 1:
            raise ValueError(f"jitter must be below 1, got {self.jitter!r}")
        if self.timeout is not None and (not isinstance(self.timeout, int | float) or not self.timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds or None, got {self.timeout!r}")

    def delays(self, rng: random.Random | None = None) -> list[float]:
        """The pauses before each retry (``attempts - 1`` of them), jittered when ``rng`` is given."""
        out: list[float] = []
        delay = float(self.initial_delay)
        for _ in range(self.attempts - 1):
            spread = (rng.uniform(-self.jitter, self.jitter) if rng is not None else 0.0) * delay
            out.append(min(self.max_delay, delay) + spread)
            delay *= self.multiplier
        return out


def classify_failure(exc: BaseException) -> Failure | None:
    """Say whether ``exc`` is a transient network failure, and whether the request may have reached the server.

    Returns:
        ``"unsent"``, ``"timeout"``, ``"sent"``, or ``None`` for an error that is not a network failure.

    Example:
        >>> classify_failure(ConnectionRefusedError())
        'unsent'
        >>> classify_failure(KeyError("x")) is None
        True
    """
    reason = getattr(exc, "reason", None)  # urllib wraps socket errors in URLError(reason=...)
    if isinstance(reason, BaseException) and reason is not exc:
        return classify_failure(reason)
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & _UNSENT:
        return "unsent"
    if names & _TIMEOUT:
        return "timeout"
    if names & _SENT:
        return "sent"
    if isinstance(exc, ValueError) and str(exc).startswith(_CHROMA_UNREACHABLE):
        return "unsent"  # chromadb's client wraps a refused connection at construction in a ValueError
    return None


def _explain(exc: BaseException, failure: Failure, policy: RetryPolicy) -> str:
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException) and reason is not exc:
        exc = reason
    if failure == "timeout":
        return f"no answer within {policy.timeout} s ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"


def call_with_retries(
    fn: Callable[[], T],
    *,
    what: str,
    where: str,
    policy: RetryPolicy,
    idempotent: bool,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """Call ``fn()``, retrying transient network failures with exponential back-off.

    Args:
        fn: The call.
        what: The operation, for messages (``"upsert"``, ``"query"``...).
        where: The server, for messages (``"Chroma server http://127.0.0.1:8000"``).
        policy: Attempts, delays and timeout.
        idempotent: Whether repeating a call that may already have been applied is harmless.
        sleep: Pause function (tests pass a fake one).
        rng: Source of jitter (default: a fresh ``random.Random()``).

    Raises:
        IndexServerUnavailableError: The retries are used up, or a non-idempotent call failed after its request
            may have reached the server.
        Exception: Errors that are not transient network failures, unchanged.

    Example:
        >>> calls = []
        >>> def flaky():
        ...     calls.append(1)
        ...     if len(calls) < 3:
        ...         raise ConnectionRefusedError("refused")
        ...     return "ok"
        >>> policy = RetryPolicy(attempts=3)
        >>> call_with_retries(flaky, what="count", where="test", policy=policy, idempotent=True, sleep=lambda s: None)
        'ok'
    """
    rng = rng or random.Random()
    delays = policy.delays(rng)
    started = time.monotonic()
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except Exception as exc:
            failure = classify_failure(exc)
            if failure is None:
                raise
            if failure != "unsent" and not idempotent:
                raise IndexServerUnavailableError(
                    f"{what} on {where} failed after the request was sent ({_explain(exc, failure, policy)}); it is "
                    "not retried because it may have been applied: once the server answers, check the records or "
                    "write them again with upsert, which is safe to repeat"
                ) from exc
            if attempt == policy.attempts:
                raise IndexServerUnavailableError(
                    f"{what} on {where} failed {attempt} time(s) over {time.monotonic() - started:.1f} s (last: "
                    f"{_explain(exc, failure, policy)}); check that the server is running and reachable, then retry "
                    "(ingestion with mode='upsert' resumes without duplicates)"
                ) from exc
            delay = delays[attempt - 1]
            logger.warning(
                "%s on %s failed (%s); retry %d of %d in %.2f s",
                what,
                where,
                _explain(exc, failure, policy),
                attempt,
                policy.attempts - 1,
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


class RetryingProxy:
    """Forward attribute access to ``target``; its method calls go through :func:`call_with_retries`.

    Args:
        target: The object to wrap (e.g. a chromadb ``Collection`` of an ``HttpClient``).
        policy: Retry policy.
        where: The server, for messages.
        unsafe: Names of methods that are not idempotent (retried only when the request was never sent).

    Example:
        >>> proxy = RetryingProxy([3, 1, 2], policy=RetryPolicy(), where="test")
        >>> proxy.index(1)
        1
    """

    def __init__(
        self, target: Any, *, policy: RetryPolicy, where: str, unsafe: Collection[str] = frozenset({"add"})
    ) -> None:
        self._target = target
        self._policy = policy
        self._where = where
        self._unsafe = frozenset(unsafe)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            return call_with_retries(
                lambda: value(*args, **kwargs),
                what=name,
                where=self._where,
                policy=self._policy,
                idempotent=name not in self._unsafe,
            )

        return call

    def __repr__(self) -> str:
        return f"RetryingProxy({self._target!r}, where={self._where!r})"


def connect_chroma_http(
    *,
    host: str,
    port: int,
    ssl: bool,
    headers: dict[str, str],
    settings: Any,
    policy: RetryPolicy,
) -> Any:
    """Build a chromadb ``HttpClient`` (retrying while the server is unreachable) with a request timeout.

    chromadb's client waits forever for an answer by default, so a hung server would hang the caller: the server's
    heartbeat is first fetched with the policy's ``timeout``, and the same timeout is then set on the client's HTTP
    session.

    Raises:
        IndexServerUnavailableError: The server cannot be reached, or does not answer, within the policy's attempts.
    """
    import urllib.request

    import chromadb

    url = f"{'https' if ssl else 'http'}://{host}:{port}"

    def connect() -> Any:
        request = urllib.request.Request(f"{url}/api/v2/heartbeat", headers=headers)
        with urllib.request.urlopen(request, timeout=policy.timeout) as response:
            response.read()
        return chromadb.HttpClient(host=host, port=port, ssl=ssl, headers=headers, settings=settings)

    client = call_with_retries(connect, what="connecting", where=f"Chroma server {url}", policy=policy, idempotent=True)
    session = getattr(getattr(client, "_server", None), "_session", None)
    if session is not None and hasattr(session, "timeout"):
        import httpx

        session.timeout = httpx.Timeout(policy.timeout)
    else:  # pragma: no cover - depends on chromadb internals
        logger.warning("cannot set a request timeout on this chromadb client (%s); requests may hang", type(client))
    return client
