"""The Starlette application of ``jp-rerank serve``: routes, limits, API-key check, access log and metrics.

The HTTP layer validates and translates (:mod:`jp_rerank.serve.schemas`); scoring goes through one queue per model
into the engine (:mod:`jp_rerank.serve.services`). Routes:

* ``POST /v1/rerank``, ``/v2/rerank``, ``/rerank``: Cohere / Jina rerank (TEI's shape on ``/rerank`` when the
  body has ``texts``);
* ``POST /v1/embeddings``: OpenAI embeddings (when an embedder is loaded); ``GET /v1/models``;
* ``GET /info`` (TEI-like), ``GET /health`` (no key needed; 503 until the models are loaded), ``GET /metrics``.

Needs ``pip install "jp-rerank[serve]"`` (Starlette, uvicorn); ``jp-rerank serve`` checks for them first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from jp_rerank.serve.batching import QueueFullError, QueueTimeoutError, Ticket
from jp_rerank.serve.config import ServeConfig
from jp_rerank.serve.metrics import Metrics
from jp_rerank.serve.middleware import AccessLogMiddleware, AuthMiddleware
from jp_rerank.serve.responses import embeddings_response, error_body, rerank_response, tei_response
from jp_rerank.serve.schemas import RequestError, parse_embeddings, parse_rerank, parse_tei_rerank
from jp_rerank.serve.services import RerankService, ServerState

if TYPE_CHECKING:
    from jp_rerank.embed import Embedder
    from jp_rerank.rerank import Reranker

__all__ = ["ServerState", "create_app"]

logger = logging.getLogger(__name__)

_DISCONNECT_POLL_S = 0.05


class _ClientGoneError(Exception):
    """The client closed its connection while its request waited."""


def _json(status: int, message: str, *, field: str | None = None, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(error_body(status, message, field=field), status_code=status, headers=headers)


async def _read_json(request: Request, config: ServeConfig) -> Any:
    """The request's JSON body, within ``max_body_bytes`` (413) and ``read_timeout_s`` (408)."""
    limit = config.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the body has {declared} bytes, over the limit of {limit} bytes (--max-body-bytes)")

    async def collect() -> bytes:
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise RequestError(413, f"the body is over the limit of {limit} bytes (--max-body-bytes)")
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        raw = await asyncio.wait_for(collect(), timeout=config.read_timeout_s)
    except asyncio.TimeoutError:
        raise RequestError(408, f"the body did not arrive within {config.read_timeout_s:g} s") from None
    except ClientDisconnect:
        raise _ClientGoneError from None
    if not raw.strip():
        raise RequestError(400, "the body is empty: send a JSON object")
    try:
        return json.loads(raw)
    except RecursionError:
        raise RequestError(400, "malformed JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise RequestError(400, f"malformed JSON: {exc}") from None


async def _wait(ticket: Ticket, request: Request) -> Any:
    """The ticket's result; its job is dropped if the client goes away or its deadline passes while it waits."""
    future = asyncio.wrap_future(ticket.future)
    try:
        while True:
            done, _ = await asyncio.wait({future}, timeout=_DISCONNECT_POLL_S)
            if done:
                return future.result()
            if await request.is_disconnected():
                ticket.cancel("disconnect")
                raise _ClientGoneError
            if time.monotonic() > ticket.deadline and ticket.cancel("timeout"):
                raise QueueTimeoutError("the request waited over its limit in the queue (--max-wait-ms)")
    finally:
        future.add_done_callback(lambda f: f.cancelled() or f.exception())


Handler = Callable[[Request], Awaitable[Response]]


def _guard(state: ServerState, handler: Handler) -> Handler:
    """Turn every refusal into its JSON error (and a 499 for clients that went away)."""

    async def endpoint(request: Request) -> Response:
        if not state.ready:
            return _json(503, "the server is not ready (models loading or shutting down)")
        try:
            return await handler(request)
        except RequestError as exc:
            return _json(exc.status, exc.message, field=exc.field)
        except QueueFullError as exc:
            return _json(503, str(exc), headers={"Retry-After": "1"})
        except QueueTimeoutError as exc:
            return _json(503, str(exc), headers={"Retry-After": "1"})
        except _ClientGoneError:
            return Response(status_code=499)
        except (ValueError, TypeError) as exc:  # the engine's own input checks
            return _json(422, str(exc))
        except Exception:
            logger.exception("%s %s failed", request.method, request.url.path)
            return _json(500, "internal error (see the server log)")

    return endpoint


def _routes(state: ServerState) -> list[Route]:
    config = state.config

    def need_reranker() -> RerankService:
        if state.rerank is None:
            raise RequestError(404, "no reranker is loaded: start the server with -m MODEL")
        return state.rerank

    async def rerank(request: Request) -> Response:
        body = await _read_json(request, config)
        service = need_reranker()
        limits = {"max_documents": config.max_documents, "max_chars": config.max_chars}
        if request.url.path == "/rerank" and isinstance(body, dict) and "texts" in body and "documents" not in body:
            tei = parse_tei_rerank(body, **limits)
            results = await service.rerank_tei(tei, lambda t: _wait(t, request))
            return JSONResponse(tei_response(results, tei.texts, return_text=tei.return_text))
        req = parse_rerank(body, **limits)
        results = await service.rerank(req, lambda t: _wait(t, request))
        keep = config.return_documents if req.return_documents is None else req.return_documents
        version = "2" if request.url.path == "/v2/rerank" else "1"
        body_out = rerank_response(
            uuid.uuid4().hex, service.name, results, req.documents, return_documents=keep, api_version=version
        )
        return JSONResponse(body_out)

    async def embeddings(request: Request) -> Response:
        body = await _read_json(request, config)
        if state.embed is None:
            raise RequestError(404, "no embedder is loaded: start the server with --embedder MODEL")
        service = state.embed
        req = parse_embeddings(body, max_documents=config.max_documents, max_chars=config.max_chars)
        if req.dimensions is not None and req.dimensions != service.dim:
            raise RequestError(
                422, f"dimensions={req.dimensions} differs from the model's {service.dim}", field="dimensions"
            )
        vectors = await service.embed(req.inputs, service.side(req.side), lambda t: _wait(t, request))
        return JSONResponse(embeddings_response(vectors, service.name, encoding_format=req.encoding_format))

    async def models(request: Request) -> Response:
        names = [s.name for s in (state.rerank, state.embed) if s is not None]
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "jp-rerank"} for n in names]
        return JSONResponse({"object": "list", "data": data})

    async def info(request: Request) -> Response:
        return JSONResponse(state.info())

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

    async def health(request: Request) -> Response:
        if not state.ready:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    post = ["POST"]
    return [
        Route("/v1/rerank", _guard(state, rerank), methods=post),
        Route("/v2/rerank", _guard(state, rerank), methods=post),
        Route("/rerank", _guard(state, rerank), methods=post),
        Route("/v1/embeddings", _guard(state, embeddings), methods=post),
        Route("/v1/models", _guard(state, models), methods=["GET"]),
        Route("/info", _guard(state, info), methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return _json(status, f"{request.method} {request.url.path}: {detail}")


def create_app(
    reranker: Reranker | None = None,
    embedder: Embedder | None = None,
    config: ServeConfig | None = None,
    *,
    metrics: Metrics | None = None,
) -> Starlette:
    """Build the ASGI application serving ``reranker`` and/or ``embedder``.

    The engines are loaded (if they are not yet) and their scoring workers started when the application starts
    (its lifespan); ``/health`` answers 503 until then and after shutdown begins.

    Args:
        reranker: The cross-encoder to serve (the only one requests reach).
        embedder: The embedder to serve on ``/v1/embeddings``.
        config: Limits and settings (default :class:`~jp_rerank.serve.config.ServeConfig`).
        metrics: Where to count (default: a new :class:`~jp_rerank.serve.metrics.Metrics`).

    Returns:
        The Starlette application (its :class:`ServerState` is ``app.state.server``).

    Example:
        >>> from starlette.testclient import TestClient
        >>> from jp_rerank import Reranker
        >>> app = create_app(Reranker("xsmall", device="cpu"))
        >>> with TestClient(app) as client:
        ...     body = client.post("/v1/rerank", json={"query": "富士山", "documents": ["山", "川"], "top_n": 1}).json()
        >>> [sorted(r) for r in body["results"]]
        [['document', 'index', 'relevance_score']]
    """
    config = config or ServeConfig()
    state = ServerState(reranker, embedder, config, metrics)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(state.start)
        try:
            yield
        finally:
            await asyncio.to_thread(state.stop)

    middleware = [Middleware(AccessLogMiddleware, metrics=state.metrics)]
    if config.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(config.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
            )
        )
    if config.api_key is not None:
        middleware.append(Middleware(AuthMiddleware, key=config.api_key))
    app = Starlette(
        routes=_routes(state),
        middleware=middleware,
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.server = state
    return app
