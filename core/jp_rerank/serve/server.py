"""Run the application under uvicorn on a socket bound first, with a graceful stop on SIGTERM / Ctrl-C.

The socket is bound before uvicorn starts, so a port in use is a clear error (exit 1) and ``--port 0`` works (the
start-up log says the port chosen). On SIGTERM or SIGINT uvicorn stops accepting connections, lets the requests in
flight finish (at most ``graceful_timeout_s``), runs the application's shutdown (the scoring workers finish what
is queued) and returns; the process then exits 0.
"""

from __future__ import annotations

import logging
import signal
import socket
from types import FrameType
from typing import Any

__all__ = ["bind", "run_app", "url_of"]

logger = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 when ``host`` is an IPv6 address).

    Raises:
        OSError: The address cannot be bound (the message names it).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """The ``http://host:port`` a bound socket serves."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _ignore(signum: int, frame: FrameType | None) -> None:
    logger.debug("signal %d after the graceful stop: ignored", signum)


def run_app(
    app: Any,
    sock: socket.socket,
    *,
    graceful_timeout_s: int = 30,
    keep_alive_s: int = 5,
    max_connections: int | None = None,
) -> None:
    """Serve ``app`` on ``sock`` until SIGTERM / SIGINT, then stop gracefully and return.

    uvicorn raises the signal it caught again once it has stopped (to end the process "as the signal would"); a
    handler that ignores it is installed for that moment, so a graceful stop returns here and the command exits 0.

    Args:
        app: The ASGI application.
        sock: A listening socket (see :func:`bind`).
        graceful_timeout_s: Most seconds requests in flight get to finish after the signal.
        keep_alive_s: Idle keep-alive connections are closed after this.
        max_connections: Most concurrent connections (uvicorn answers 503 beyond; ``None``: no limit).
    """
    import uvicorn  # the serve extra (``jp-rerank serve`` checks for it with an install hint first)

    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=graceful_timeout_s,
        timeout_keep_alive=keep_alive_s,
        limit_concurrency=max_connections,
        server_header=False,
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    if not server.started:
        raise OSError("the server did not start (see the log above)")
