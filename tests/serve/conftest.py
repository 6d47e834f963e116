"""Fixtures of the server tests: the app in-process, a real uvicorn server on 127.0.0.1, and a gate on the worker.

The engines are the session's tiny models (``reranker`` / ``embedder`` from tests/conftest.py, loaded once on CPU);
their scores mean nothing, but they are the engine's own, so "the server answers what the engine answers" is
checked exactly. Everything listens on 127.0.0.1 only and every wait is bounded.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from jp_rerank import Embedder, Reranker
from jp_rerank.serve.app import ServerState, create_app
from jp_rerank.serve.config import ServeConfig

API_KEY = "test-key-0123456789"
QUERY = "富士山の高さは？"
DOCS = ["富士山は3776メートルです。", "京都には寺が多い。", "日本一高い山は富士山。", "東京の人口。", "山の高さ。"]
LIMITS = {"max_documents": 8, "max_chars": 300, "max_body_bytes": 8192}


def state_of(app: Starlette) -> ServerState:
    server: ServerState = app.state.server
    return server


@pytest.fixture
def make_client(reranker: Reranker, embedder: Embedder) -> Iterator[Callable[..., TestClient]]:
    """Build in-process clients (lifespan run: workers started) for apps with the given settings."""
    clients: list[TestClient] = []

    def make(*, with_reranker: bool = True, with_embedder: bool = True, **settings: Any) -> TestClient:
        config = ServeConfig(**{**LIMITS, **settings})
        app = create_app(reranker if with_reranker else None, embedder if with_embedder else None, config)
        client = TestClient(app, raise_server_exceptions=True)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    _release_gates()
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    """An in-process client of an app serving both tiny models, no API key, small limits (:data:`LIMITS`)."""
    return make_client()


class Gate:
    """Holds a queue's worker before its next engine call until :meth:`open` (bounded: 30 s at most)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.entered = threading.Event()
        self.calls: list[int] = []

    def wrap(self, run: Callable[[Hashable, Sequence[Any]], Sequence[Any]]) -> Callable[..., Sequence[Any]]:
        def gated(group: Hashable, payloads: Sequence[Any]) -> Sequence[Any]:
            self.calls.append(len(payloads))
            self.entered.set()
            assert self.event.wait(30), "the test never opened the gate"
            return run(group, payloads)

        return gated

    def open(self) -> None:
        self.event.set()


_GATES: list[Gate] = []


def _release_gates() -> None:
    """Open every gate, so that a failed test never leaves a worker held (its server could not stop)."""
    while _GATES:
        _GATES.pop().open()


def gate_worker(app: Starlette, model: str = "rerank") -> Gate:
    """Put a :class:`Gate` in front of the engine calls of the app's reranker (or embedder) queue."""
    service = getattr(state_of(app), model)
    gate = Gate()
    _GATES.append(gate)
    service.queue._run_batch = gate.wrap(service.queue._run_batch)
    return gate


def wait_until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@dataclass
class LiveServer:
    """uvicorn serving an app in a thread on 127.0.0.1 (a real TCP server for the client packages)."""

    app: Starlette
    url: str
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive(), "the server did not stop within 30 s"


def start_live(app: Starlette) -> LiveServer:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn to start")
    return LiveServer(app, f"http://127.0.0.1:{port}", server, thread)


@pytest.fixture
def live_factory(reranker: Reranker, embedder: Embedder) -> Iterator[Callable[..., LiveServer]]:
    """Start real servers (uvicorn in a thread, 127.0.0.1, a free port) with the given settings."""
    servers: list[LiveServer] = []

    def start(**settings: Any) -> LiveServer:
        config = ServeConfig(**{**LIMITS, "max_body_bytes": 1 << 20, **settings})
        live = start_live(create_app(reranker, embedder, config))
        servers.append(live)
        return live

    yield start
    _release_gates()
    for live in servers:
        live.stop()


@pytest.fixture
def live(live_factory: Callable[..., LiveServer]) -> LiveServer:
    """A real server with the API key :data:`API_KEY` serving both tiny models."""
    return live_factory(api_key=API_KEY)
