"""A real server on 127.0.0.1 talked to by the real client packages, raw Dify / Open WebUI bodies, and our clients."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import httpx
import numpy as np
import pytest

from jp_rerank import Embedder, Reranker
from jp_rerank.embed.remote import RemoteEmbedder
from jp_rerank.errors import ServerAuthError, ServerUnavailableError
from jp_rerank.hits import RerankResult
from jp_rerank.rerank.remote import RemoteReranker

from .conftest import API_KEY, DOCS, QUERY, LiveServer

pytestmark = [pytest.mark.enable_socket, pytest.mark.network]

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _engine(reranker: Reranker, top_n: int | None = None) -> list[tuple[int, float]]:
    return [(r.index, r.score) for r in reranker.rerank(QUERY, DOCS, top_n=top_n)]


# ------------------------------------------------------------------------------------------------ client packages


def test_cohere_sdk_v2_and_v1(live: LiveServer, reranker: Reranker) -> None:
    import cohere

    v2 = cohere.ClientV2(api_key=API_KEY, base_url=live.url, timeout=30)
    response = v2.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS, top_n=3)
    assert [(r.index, r.relevance_score) for r in response.results] == _engine(reranker, 3)
    v1 = cohere.Client(api_key=API_KEY, base_url=live.url, timeout=30)
    response = v1.rerank(model="rerank-multilingual-v3.0", query=QUERY, documents=DOCS, return_documents=True)
    assert [(r.index, r.relevance_score) for r in response.results] == _engine(reranker)
    assert [r.document.text for r in response.results] == [DOCS[i] for i, _ in _engine(reranker)]  # type: ignore[union-attr]
    bad = cohere.ClientV2(api_key="wrong", base_url=live.url, timeout=30)
    with pytest.raises(cohere.UnauthorizedError):
        bad.rerank(model="m", query=QUERY, documents=DOCS)


def test_langchain_cohere_rerank(live: LiveServer, reranker: Reranker) -> None:
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    compressor = CohereRerank(cohere_api_key=API_KEY, base_url=live.url, model="rerank-v3.5", top_n=2)
    docs = [Document(page_content=d, metadata={"id": i}) for i, d in enumerate(DOCS)]
    out = compressor.compress_documents(docs, QUERY)
    assert [(d.metadata["id"], d.metadata["relevance_score"]) for d in out] == _engine(reranker, 2)


def test_llamaindex_cohere_and_tei_postprocessors(live: LiveServer, reranker: Reranker) -> None:
    from llama_index.core.schema import NodeWithScore, TextNode
    from llama_index.postprocessor.cohere_rerank import CohereRerank
    from llama_index.postprocessor.tei_rerank import TextEmbeddingInference

    def nodes() -> list[NodeWithScore]:
        return [NodeWithScore(node=TextNode(text=d, id_=str(i)), score=0.0) for i, d in enumerate(DOCS)]

    cohere_pp = CohereRerank(api_key=API_KEY, base_url=live.url, top_n=2, model="rerank-v3.5", max_retries=1)
    out = cohere_pp.postprocess_nodes(nodes(), query_str=QUERY)
    assert [(int(n.node.node_id), n.score) for n in out] == _engine(reranker, 2)
    tei_pp = TextEmbeddingInference(base_url=live.url, top_n=3, auth_token=f"Bearer {API_KEY}", timeout=30)
    out = tei_pp.postprocess_nodes(nodes(), query_str=QUERY)  # sends every node at once
    assert [(int(n.node.node_id), n.score) for n in out] == _engine(reranker, 3)


def test_openai_sdk_and_langchain_openai_embeddings(live: LiveServer, embedder: Embedder) -> None:
    import openai
    from langchain_openai import OpenAIEmbeddings

    client = openai.OpenAI(api_key=API_KEY, base_url=f"{live.url}/v1", max_retries=0, timeout=30)
    response = client.embeddings.create(model="ruri", input=DOCS)  # the SDK asks for base64 and decodes it
    got = np.array([d.embedding for d in response.data], dtype=np.float32)
    np.testing.assert_allclose(got, embedder.embed_documents(DOCS), rtol=1e-6, atol=1e-7)
    floats = client.embeddings.create(
        model="ruri", input=QUERY, encoding_format="float", extra_body={"input_type": "query"}
    )
    np.testing.assert_allclose([floats.data[0].embedding], embedder.embed_queries([QUERY]), rtol=1e-6, atol=1e-7)

    base = {"base_url": f"{live.url}/v1", "api_key": API_KEY, "check_embedding_ctx_length": False, "max_retries": 0}
    documents = OpenAIEmbeddings(model="ruri", **base)  # type: ignore[arg-type]
    np.testing.assert_allclose(documents.embed_documents(DOCS), embedder.embed_documents(DOCS), rtol=1e-6, atol=1e-7)
    queries = OpenAIEmbeddings(model="ruri:query", **base)  # type: ignore[arg-type]
    np.testing.assert_allclose([queries.embed_query(QUERY)], embedder.embed_queries([QUERY]), rtol=1e-6, atol=1e-7)
    with pytest.raises(openai.UnprocessableEntityError, match="token ids are not accepted"):
        client.embeddings.create(model="ruri", input=[[1, 2, 3]])


def test_raw_bodies_of_open_webui_dify_and_ragflow(live: LiveServer, reranker: Reranker) -> None:
    with httpx.Client(timeout=30, headers=AUTH) as http:
        # Open WebUI "External" reranker: the full URL, Cohere-style body, reads index / relevance_score
        body = http.post(f"{live.url}/v1/rerank", json={"model": "m", "query": QUERY, "documents": DOCS, "top_n": 3})
        assert [(r["index"], r["relevance_score"]) for r in body.json()["results"]] == _engine(reranker, 3)
        # Dify's Jina provider (base URL .../v1): reads document.text too
        body = http.post(f"{live.url}/v1/rerank", json={"model": "jina", "query": QUERY, "documents": DOCS, "top_n": 2})
        assert [r["document"]["text"] for r in body.json()["results"]] == [DOCS[i] for i, _ in _engine(reranker, 2)]
        # Dify's TEI provider: checks /info says reranker, then the TEI body
        info = http.get(f"{live.url}/info").json()
        assert "reranker" in info["model_type"]
        body = http.post(f"{live.url}/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": False})
        assert [(r["index"], r["score"]) for r in body.json()] == _engine(reranker)
        # RAGFlow's Jina / Cohere-compatible rerank: documents and top_n, results by index
        body = http.post(f"{live.url}/rerank", json={"model": "x", "query": QUERY, "documents": DOCS, "top_n": 5})
        assert len(body.json()["results"]) == 5


# ------------------------------------------------------------------------------------------------ our clients


def test_a_url_instead_of_a_model_gives_the_remote_engines(live: LiveServer) -> None:
    remote = Reranker(live.url, api_key=API_KEY, timeout=5, retries=1)
    assert isinstance(remote, RemoteReranker)
    assert (remote.url, remote.api, remote.model_id) == (live.url, "jp-rerank", live.url)
    assert isinstance(Embedder(live.url + "/", api_key=API_KEY), RemoteEmbedder)
    with pytest.raises(TypeError, match="unexpected keyword argument 'batch_size'"):
        Reranker(live.url, batch_size=8)  # an engine option means nothing to a server


def test_remote_reranker_gives_the_engines_results(live: LiveServer, reranker: Reranker) -> None:
    for api in ("jp-rerank", "tei"):
        remote = RemoteReranker(live.url, api_key=API_KEY, api=api)  # type: ignore[arg-type]
        assert remote.rerank(QUERY, DOCS, top_n=2) == reranker.rerank(QUERY, DOCS, top_n=2)
        np.testing.assert_array_equal(remote.score(QUERY, DOCS), reranker.score(QUERY, DOCS))
        raw = remote.score(QUERY, DOCS, activation="none")
        np.testing.assert_array_equal(raw, reranker.score(QUERY, DOCS, activation="none"))
        assert remote.rerank(QUERY, []) == []
    remote = RemoteReranker(live.url, api_key=API_KEY)
    assert remote.rerank(QUERY, DOCS, listwise="softmax") == reranker.rerank(QUERY, DOCS, listwise="softmax")
    threshold = float(np.median(reranker.score(QUERY, DOCS)))
    assert remote.rerank(QUERY, DOCS, score_threshold=threshold) == reranker.rerank(
        QUERY, DOCS, score_threshold=threshold
    )
    first = [12.0, 3.5, 7.25, 1.0, 9.0][: len(DOCS)]
    for fusion in ("zscore", "rrf"):
        got = remote.rerank(QUERY, DOCS, first_stage_scores=first, fusion=fusion, top_n=3)
        assert got == reranker.rerank(QUERY, DOCS, first_stage_scores=first, fusion=fusion, top_n=3)
    pairs = [(QUERY, DOCS[1]), ("京都", DOCS[0]), (QUERY, DOCS[0])]
    assert remote.score_pairs(pairs) == reranker.score_pairs(pairs)
    many = remote.score_many([QUERY, "京都"], [DOCS, DOCS[:2]])
    np.testing.assert_array_equal(many[1], reranker.score("京都", DOCS[:2]))


def test_remote_embedder_gives_the_engines_vectors(live: LiveServer, embedder: Embedder) -> None:
    remote = RemoteEmbedder(live.url, api_key=API_KEY)
    np.testing.assert_array_equal(remote.embed_documents(DOCS), embedder.embed_documents(DOCS))
    np.testing.assert_array_equal(remote.embed_queries([QUERY]), embedder.embed_queries([QUERY]))
    np.testing.assert_array_equal(remote.embed_query(QUERY), embedder.embed_query(QUERY))
    assert remote.embed_documents([]).shape == (0, embedder.dim)
    with pytest.raises(ValueError, match=r"queries\[0\] is empty"):
        remote.embed_queries([" "])


def test_remote_errors_are_the_engines_or_name_the_url(live: LiveServer) -> None:
    remote = RemoteReranker(live.url, api_key=API_KEY, retries=0)
    with pytest.raises(
        ValueError, match=r"refused the request \(HTTP 422\): documents has 9 items, over the limit of 8"
    ):
        remote.rerank(QUERY, DOCS + DOCS[:4])
    with pytest.raises(ValueError, match="query is empty"):
        remote.rerank(" ", DOCS)  # checked here, before any request
    with pytest.raises(TypeError, match=r"documents\[1\] must be a str"):
        remote.rerank(QUERY, ["a", 3])  # type: ignore[list-item]
    with pytest.raises(ServerAuthError, match=rf"{live.url}/v1/rerank rejected the API key \(HTTP 401\)"):
        RemoteReranker(live.url, api_key="wrong").rerank(QUERY, DOCS)
    with pytest.raises(PermissionError):
        RemoteEmbedder(live.url).embed_documents(DOCS)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_and_silent_servers_fail_in_bounded_time(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    t0 = time.monotonic()
    with pytest.raises(ServerUnavailableError, match=rf"{url}/v1/rerank failed 2 time\(s\); last error: Connection"):
        RemoteReranker(url, retries=1, backoff=0.01).rerank(QUERY, DOCS)
    assert isinstance(ServerUnavailableError("x"), ConnectionError)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(ServerUnavailableError, match=r"failed 2 time\(s\).*timed out"):
            RemoteEmbedder(url, timeout=0.3, retries=1, backoff=0.01).embed_documents(["a"])
    assert time.monotonic() - t0 < 30


class _Flaky(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        status = self.answers.pop(0) if self.answers else 200
        body = b'{"message": "busy"}' if status != 200 else b'{"results": [{"index": 0, "relevance_score": 0.5}]}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_overload_is_retried_then_reported(flaky: str) -> None:
    _Flaky.answers = [503, 429]
    assert RemoteReranker(flaky, retries=2, backoff=0.01).rerank(QUERY, ["a"]) == [RerankResult(0, 0.5)]
    _Flaky.answers = [503, 503, 503]
    with pytest.raises(ServerUnavailableError, match=r"failed 3 time\(s\); last error: HTTP 503: busy"):
        RemoteReranker(flaky, retries=2, backoff=0.01).rerank(QUERY, ["a"])


def test_the_clients_import_no_torch_and_no_starlette() -> None:
    code = (
        "import sys, json, jp_rerank, jp_rerank.serve; jp_rerank.Reranker('http://127.0.0.1:9'); jp_rerank.Embedder('http://127.0.0.1:9');"
        "print(json.dumps([m for m in ('torch', 'transformers', 'starlette', 'uvicorn') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
