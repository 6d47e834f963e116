"""ASGI middleware of the server: the API-key check and the access log (one line per request, with its latency).

Both are plain ASGI callables (no per-request task, no body buffering), placed by
:func:`jp_rerank.serve.app.create_app`: the access log outermost (it sees every answer, 401s included), CORS
next (a browser's preflight needs no key), the key check innermost.
"""

from __future__ import annotations

import hmac
import logging
import time

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jp_rerank.serve.metrics import Metrics
from jp_rerank.serve.responses import error_body

__all__ = ["OPEN_PATHS", "ROUTES", "AccessLogMiddleware", "AuthMiddleware"]

access_logger = logging.getLogger("jp_rerank.serve.access")

ROUTES = ("/v1/rerank", "/v2/rerank", "/rerank", "/v1/embeddings", "/v1/models", "/info", "/health", "/metrics")
"""Paths the server answers (the metrics label any other path ``other``, so a scan cannot blow up the series)."""

OPEN_PATHS = frozenset({"/health"})
"""Paths answered without the API key."""


class AuthMiddleware:
    """Require ``Authorization: Bearer <key>`` (constant-time compare) on every path but :data:`OPEN_PATHS`.

    Example:
        >>> from starlette.applications import Starlette
        >>> from starlette.testclient import TestClient
        >>> client = TestClient(AuthMiddleware(Starlette(), key="s3cret"))
        >>> client.get("/info").status_code, client.get("/info", headers={"Authorization": "Bearer s3cret"}).status_code
        (401, 404)
    """

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.key = key.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 401 unless the request carries the key (or asks for an open path)."""
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
            message = "missing or wrong API key: send Authorization: Bearer <key>"
            response = JSONResponse(error_body(401, message), status_code=401, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class AccessLogMiddleware:
    """One access-log line per request with its latency, and the request metrics.

    Example:
        >>> from starlette.applications import Starlette
        >>> from starlette.testclient import TestClient
        >>> metrics = Metrics()
        >>> TestClient(AccessLogMiddleware(Starlette(), metrics)).get("/nowhere").status_code
        404
        >>> 'jp_rerank_requests_total{route="other",status="404"} 1' in metrics.render()
        True
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; count and log it once answered."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            path = scope["path"]
            self.metrics.observe_request(path if path in ROUTES else "other", status, elapsed)
            client = scope.get("client") or ("-", 0)
            access_logger.info('%s "%s %s" %d %.1f ms', client[0], scope["method"], path, status, elapsed * 1000.0)
