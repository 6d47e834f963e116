"""``jp-rerank serve``: Japanese reranking and embeddings over HTTP, and the clients that use such a server.

The server (``jp-rerank serve -m MODEL``, or :func:`jp_rerank.serve.app.create_app` for an ASGI application)
speaks the request shapes that Dify, Open WebUI, RAGFlow and the Cohere / Jina / TEI / OpenAI clients already
send; see docs/serve.md. Its modules, by capability:

* :mod:`~jp_rerank.serve.config`: limits and settings (:class:`ServeConfig`);
* :mod:`~jp_rerank.serve.schemas`: request / response bodies and their validation;
* :mod:`~jp_rerank.serve.batching`: the cross-request scoring queue (one worker per model);
* :mod:`~jp_rerank.serve.services`: the engines behind their queues;
* :mod:`~jp_rerank.serve.metrics`: Prometheus metrics;
* :mod:`~jp_rerank.serve.app` / :mod:`~jp_rerank.serve.server`: the Starlette application and its uvicorn run
  (need ``pip install "jp-rerank[serve]"``);

The clients of such a server are the engines themselves, given its URL: ``Reranker("http://HOST:8080")`` /
``Embedder("http://HOST:8080")`` (:mod:`jp_rerank.rerank.remote`, :mod:`jp_rerank.embed.remote`).

Importing this package is light (no torch, no Starlette).

Example:
    >>> from jp_rerank import Reranker
    >>> Reranker("http://127.0.0.1:8080")
    RemoteReranker(url='http://127.0.0.1:8080', api='jp-rerank')
"""

from __future__ import annotations

from jp_rerank.serve.config import ServeConfig

__all__ = ["ServeConfig"]
