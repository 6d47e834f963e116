"""``jp-rerank serve``: a local HTTP service for reranking (Cohere / Jina / TEI shapes) and embeddings (OpenAI shape).

Order of work: check the options (exit 2), load the models (exit 1 with one line if one cannot load, before any
port is opened), bind the port (exit 1 if taken), then serve until SIGTERM / Ctrl-C (graceful stop, exit 0).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from jp_rerank.errors import CliInputError, ModelLoadError

__all__ = ["API_KEY_ENV", "register"]

API_KEY_ENV = "JP_RERANK_API_KEY"
"""Environment variable read for the API key when ``--api-key`` is not given (keeps it out of ``ps``)."""

logger = logging.getLogger("jp_rerank.serve")


def _log_to_stderr(quiet: bool) -> logging.Handler:
    """Start-up and access lines go to stderr at INFO whatever ``-v`` says (``--quiet``: warnings only)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    return handler


def _config(args: argparse.Namespace, api_key: str | None) -> Any:
    from jp_rerank.serve.config import ServeConfig

    try:
        return ServeConfig(
            reranker_name=args.served_model_name,
            embedder_name=args.served_embedder_name,
            max_documents=args.max_documents,
            max_chars=args.max_chars,
            max_body_bytes=args.max_body_bytes,
            max_wait_ms=args.max_wait_ms,
            queue_size=args.queue_size,
            max_batch_pairs=args.max_batch_pairs,
            max_batch_requests=args.max_batch_requests,
            read_timeout_s=args.read_timeout,
            api_key=api_key,
            cors_origins=tuple(args.cors_origin or ()),
            embed_input_type=args.embed_input_type,
        )
    except (TypeError, ValueError) as exc:
        raise CliInputError(str(exc)) from None


def _load(kind: str, build: Any) -> Any:
    """Build one engine (bad options: usage errors) and load it (any failure: a :class:`ModelLoadError`, exit 1)."""
    engine = build()
    try:
        return engine.load()
    except ModelLoadError:
        raise
    except Exception as exc:  # corrupt weights, an unknown architecture (transformers' ValueError)...: one line
        raise ModelLoadError(f"the {kind} could not be loaded: {type(exc).__name__}: {exc}") from exc


def _engines(args: argparse.Namespace) -> tuple[Any, Any]:
    from jp_rerank.commands._io import check_device

    device = check_device(args.device)
    reranker = embedder = None
    if args.model is not None:
        from jp_rerank.rerank import Reranker

        logger.info("loading the reranker %s", args.model)
        reranker = _load(
            f"reranker {args.model!r}",
            lambda: Reranker(
                args.model,
                device=device,
                backend=args.backend,
                precision=args.precision,
                overflow=args.overflow,
                listwise=args.listwise,
            ),
        )
        plan = reranker.scoring_plan
        logger.info(
            "reranker %s: %s (%s), max_length %d", reranker.model_id, plan.label, plan.reason, reranker.max_length
        )
    if args.embedder is not None:
        from jp_rerank.embed import Embedder

        logger.info("loading the embedder %s", args.embedder)
        embedder = _load(f"embedder {args.embedder!r}", lambda: Embedder(args.embedder, device=device))
        logger.info(
            "embedder %s: dim %d, %s; requests without input_type get the %s prompt %r",
            embedder.model_id,
            embedder.dim,
            embedder.precision_in_use,
            args.embed_input_type,
            embedder.prefix(args.embed_input_type),
        )
    return reranker, embedder


def _run(args: argparse.Namespace) -> int:
    handler = _log_to_stderr(args.quiet)
    try:
        return _serve(args)
    finally:  # the process may go on (tests, embedding): leave logging as it was
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


def _serve(args: argparse.Namespace) -> int:
    from jp_rerank.extras import require
    from jp_rerank.serve.config import is_loopback

    if args.model is None and args.embedder is None:
        raise CliInputError("nothing to serve: pass -m RERANKER and/or --embedder EMBEDDER")
    if not 0 <= args.port <= 65535:
        raise CliInputError(f"--port must be in 0..65535, got {args.port}")
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    if not is_loopback(args.host) and api_key is None:
        raise CliInputError(
            f"--host {args.host} is reachable from other machines: an API key is required there "
            f"(--api-key KEY or the {API_KEY_ENV} environment variable), or bind 127.0.0.1"
        )
    config = _config(args, api_key)
    require("starlette", "serve")
    require("uvicorn", "serve")
    reranker, embedder = _engines(args)

    from jp_rerank.serve.app import create_app
    from jp_rerank.serve.server import bind, run_app, url_of

    app = create_app(reranker, embedder, config)
    sock = bind(args.host, args.port)
    routes = ["/v1/rerank", "/v2/rerank", "/rerank"] if reranker is not None else []
    routes += ["/v1/embeddings"] if embedder is not None else []
    logger.info(
        "listening on %s (%s; API key %s, CORS %s)",
        url_of(sock),
        " ".join(routes),
        "required" if api_key else "off",
        ", ".join(config.cors_origins) or "off",
    )
    run_app(
        app,
        sock,
        graceful_timeout_s=args.graceful_timeout,
        keep_alive_s=args.keep_alive,
        max_connections=args.max_connections,
    )
    logger.info("stopped")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``jp-rerank serve``."""
    p = subparsers.add_parser(
        "serve",
        help="serve reranking (Cohere / Jina / TEI shapes) and embeddings (OpenAI shape) over HTTP",
        description="Serve a cross-encoder on POST /v1/rerank, /v2/rerank and /rerank (the Cohere / Jina shape; "
        "TEI's when the body has 'texts') and an embedder on POST /v1/embeddings (OpenAI), with GET /info, "
        "/health and /metrics. Models load before the port opens. Binds 127.0.0.1 unless --host says otherwise; "
        f"a non-loopback --host needs an API key (--api-key or ${API_KEY_ENV}). See docs/serve.md.",
    )
    p.add_argument("-m", "--model", help="reranker: alias, hub id or local folder")
    p.add_argument("--embedder", help="embedder served on /v1/embeddings: alias, hub id or local folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any free port, logged)")
    p.add_argument("--api-key", help=f"require Authorization: Bearer KEY (default: ${API_KEY_ENV} if set)")
    p.add_argument("--cors-origin", action="append", metavar="ORIGIN", help="allow this browser origin (repeatable)")
    p.add_argument("--served-model-name", help="model name in responses (default: hub id or folder name)")
    p.add_argument("--served-embedder-name", help="embedder name in responses (default: hub id or folder name)")
    limits = p.add_argument_group("limits and queueing")
    limits.add_argument("--max-body-bytes", type=int, default=16 * 2**20, help="413 above it (default 16 MiB)")
    limits.add_argument("--max-documents", type=int, default=1000, help="documents per request (default 1000)")
    limits.add_argument("--max-chars", type=int, default=20_000, help="characters per text (default 20000)")
    limits.add_argument("--max-wait-ms", type=int, default=10_000, help="most queueing before 503 (default 10000)")
    limits.add_argument("--queue-size", type=int, default=256, help="requests waiting per model (default 256)")
    limits.add_argument("--max-batch-pairs", type=int, default=1024, help="pairs per engine call (default 1024)")
    limits.add_argument(
        "--max-batch-requests", type=int, default=64, help="requests per engine call (default 64; 1: no batching)"
    )
    limits.add_argument("--read-timeout", type=float, default=30.0, help="seconds to receive a body (default 30)")
    limits.add_argument("--max-connections", type=int, help="concurrent connections, 503 beyond (default: no cap)")
    limits.add_argument("--keep-alive", type=int, default=5, help="idle keep-alive seconds (default 5)")
    limits.add_argument("--graceful-timeout", type=int, default=30, help="seconds to finish on SIGTERM (default 30)")
    engine = p.add_argument_group("engine")
    engine.add_argument("--device", help="cpu, cuda, ... (default: auto)")
    engine.add_argument("--backend", choices=["auto", "torch", "onnx", "openvino"], default="auto")
    engine.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16", "int8"], default="auto")
    engine.add_argument("--overflow", choices=["truncate", "window"], default="truncate", help="long passages")
    engine.add_argument("--listwise", choices=["none", "softmax"], default="none", help="default per request")
    engine.add_argument(
        "--embed-input-type",
        "--query-prefix-mode",
        dest="embed_input_type",
        choices=["document", "query"],
        default="document",
        help="prompt for embedding requests that name no input_type (default: document, e.g. 'passage: ')",
    )
    p.add_argument("--quiet", action="store_true", help="no start-up or access log lines (warnings only)")
    p.set_defaults(func=_run)
