"""JSON over HTTP with bounded timeouts and retries: how the remote engines talk to a ``jp-rerank serve`` server.

Standard library only (importing it imports no torch). Failures: a request the server refuses (4xx: limits, bad
input) raises ``ValueError`` with the server's message; a rejected API key raises
:class:`~jp_rerank.errors.ServerAuthError` (a ``PermissionError``); a server that cannot be reached, times out, or
stays overloaded (429 / 5xx) after ``retries`` further attempts raises :class:`~jp_rerank.errors.ServerUnavailableError`
(a ``ConnectionError``) naming the URL. Each attempt waits at most ``timeout`` seconds; retries back off
``backoff * 2**n`` seconds (at most 8 s, or the server's ``Retry-After`` up to that), so one call takes at most about
``(retries + 1) * timeout`` plus the back-offs.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import time
import urllib.error
import urllib.request
from typing import Any

from jp_rerank.errors import ServerAuthError, ServerUnavailableError

__all__ = ["HttpClient", "is_url"]

logger = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({429, 502, 503, 504})
_MAX_BACKOFF_S = 8.0


def is_url(model: object) -> bool:
    """Whether an engine's model argument names a server rather than a model.

    Example:
        >>> is_url("http://127.0.0.1:8080"), is_url("xsmall")
        (True, False)
    """
    return isinstance(model, str) and model.startswith(("http://", "https://"))


class HttpClient:
    """POST / GET JSON with bounded timeouts and retries (see the module notes).

    Example:
        >>> HttpClient("http://127.0.0.1:8080/", None, timeout=5, retries=1, backoff=0.5).url
        'http://127.0.0.1:8080'
    """

    def __init__(self, url: str, api_key: str | None, timeout: float, retries: int, backoff: float) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if not (isinstance(backoff, int | float) and math.isfinite(backoff) and backoff >= 0):
            raise ValueError(f"backoff must be a number of seconds >= 0, got {backoff!r}")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)

    def request(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """Send one request (GET without ``body``) and return its decoded JSON, retrying what can be retried."""
        target = self.url + path
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(target, data=data, headers=headers, method="GET" if data is None else "POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                message = _server_message(exc)
                if exc.code in (401, 403):
                    raise ServerAuthError(f"{target} rejected the API key (HTTP {exc.code}): {message}") from None
                if exc.code in (404, 405):
                    raise ServerUnavailableError(f"{target} has no such route (HTTP {exc.code}): {message}") from None
                if exc.code not in _RETRY_STATUS and exc.code < 500:
                    raise ValueError(f"{target} refused the request (HTTP {exc.code}): {message}") from None
                last, wait = f"HTTP {exc.code}: {message}", _retry_after(exc)
            except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets, truncated answers
                reason = getattr(exc, "reason", exc)
                last, wait = f"{type(reason).__name__}: {reason}", None
            else:
                try:
                    return json.loads(raw)
                except ValueError:
                    raise ServerUnavailableError(f"{target} answered something that is not JSON") from None
            if attempt < self.retries:
                delay = min(_MAX_BACKOFF_S, wait if wait is not None else self.backoff * 2**attempt)
                logger.warning(
                    "%s failed (%s); retry %d of %d in %.1f s", target, last, attempt + 1, self.retries, delay
                )
                time.sleep(delay)
        raise ServerUnavailableError(f"{target} failed {self.retries + 1} time(s); last error: {last}")


def _server_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"{}")
    except (ValueError, OSError):
        return exc.reason or ""
    if isinstance(body, dict):
        message = body.get("message") or body.get("error")
        if isinstance(message, dict):
            message = message.get("message")
        if isinstance(message, str):
            return message
    return str(exc.reason or "")


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    value = exc.headers.get("Retry-After") if exc.headers else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
