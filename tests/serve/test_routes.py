"""The routes in-process (Starlette TestClient): shapes, scores equal to the engine's, and the whole error matrix."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from starlette.testclient import TestClient

from jp_rerank import Embedder, Reranker
from jp_rerank.fusion import RerankFusion
from jp_rerank.serve.app import create_app
from jp_rerank.serve.config import ServeConfig

from .conftest import API_KEY, DOCS, QUERY

# ------------------------------------------------------------------------------------------------ rerank shapes


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank", "/rerank"])
def test_cohere_shape_gives_the_engines_ranking(client: TestClient, reranker: Reranker, path: str) -> None:
    response = client.post(path, json={"model": "rerank-v3.5", "query": QUERY, "documents": DOCS, "top_n": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = reranker.rerank(QUERY, DOCS, top_n=3)
    assert [(r["index"], r["relevance_score"]) for r in body["results"]] == [(r.index, r.score) for r in expected]
    assert [r["document"]["text"] for r in body["results"]] == [DOCS[r.index] for r in expected]
    assert body["model"] == reranker.source.location.rstrip("/").rsplit("/", 1)[-1]  # the loaded one, not a path
    assert "/" not in body["model"]
    assert body["id"]
    assert body["meta"]["billed_units"]["search_units"] == 1
    assert body["meta"]["api_version"]["version"] == ("2" if path == "/v2/rerank" else "1")
    assert body["usage"]["documents"] == len(DOCS)


def test_documents_as_objects_and_return_documents_false(client: TestClient, reranker: Reranker) -> None:
    docs = [{"text": d} for d in DOCS]
    body = client.post("/v1/rerank", json={"query": QUERY, "documents": docs, "return_documents": False}).json()
    assert all("document" not in r for r in body["results"])
    assert [r["index"] for r in body["results"]] == [r.index for r in reranker.rerank(QUERY, DOCS)]


def test_a_different_model_name_is_accepted_and_the_loaded_one_answers(client: TestClient) -> None:
    body = client.post("/v1/rerank", json={"model": "/etc/passwd", "query": QUERY, "documents": DOCS}).json()
    assert body["model"] != "/etc/passwd"
    assert len(body["results"]) == len(DOCS)


def test_empty_documents_give_no_results(client: TestClient) -> None:
    body = client.post("/v1/rerank", json={"query": QUERY, "documents": []}).json()
    assert body["results"] == []


def test_threshold_listwise_and_fusion_match_the_engine(client: TestClient, reranker: Reranker) -> None:
    base = {"query": QUERY, "documents": DOCS, "return_documents": False}
    scores = reranker.score(QUERY, DOCS)
    threshold = float(np.median(scores))
    body = client.post("/v1/rerank", json={**base, "score_threshold": threshold}).json()
    expected = reranker.rerank(QUERY, DOCS, score_threshold=threshold)
    assert [(r["index"], r["relevance_score"]) for r in body["results"]] == [(r.index, r.score) for r in expected]

    body = client.post("/v1/rerank", json={**base, "listwise": "softmax", "top_n": 2}).json()
    expected = reranker.rerank(QUERY, DOCS, listwise="softmax", top_n=2)
    assert [(r["index"], r["relevance_score"]) for r in body["results"]] == [(r.index, r.score) for r in expected]

    first = [12.0, 3.5, 7.25, 1.0, 9.0]
    docs = [{"text": d, "metadata": {"score": s}} for d, s in zip(DOCS, first, strict=True)]
    body = client.post("/v1/rerank", json={**base, "documents": docs, "fusion": "zscore", "fusion_weight": 0.3}).json()
    fused = reranker.rerank(QUERY, DOCS, first_stage_scores=first, fusion=RerankFusion("zscore", 0.3))
    assert [(r["index"], r["relevance_score"]) for r in body["results"]] == [(r.index, r.score) for r in fused]
    assert [r["first_stage_score"] for r in body["results"]] == [r.first_stage_score for r in fused]


def test_tei_shape_on_rerank(client: TestClient, reranker: Reranker) -> None:
    body = client.post("/rerank", json={"query": QUERY, "texts": DOCS, "return_text": True}).json()
    assert isinstance(body, list)
    assert len(body) == len(DOCS)
    expected = reranker.rerank(QUERY, DOCS)
    assert [(r["index"], r["score"], r["text"]) for r in body] == [(r.index, r.score, DOCS[r.index]) for r in expected]
    raw = client.post("/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True, "truncate": True}).json()
    logits = reranker.score(QUERY, DOCS, activation="none")
    assert {r["index"]: r["score"] for r in raw} == {i: float(s) for i, s in enumerate(logits)}
    assert all("text" not in r for r in raw)


# ------------------------------------------------------------------------------------------------ embeddings


def test_openai_embeddings_float_and_base64(client: TestClient, embedder: Embedder) -> None:
    docs = DOCS[:3]
    body = client.post("/v1/embeddings", json={"model": "any", "input": docs}).json()
    assert body["object"] == "list"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    np.testing.assert_array_equal(got, embedder.embed_documents(docs))  # default: the document prompt
    body = client.post("/v1/embeddings", json={"input": docs, "encoding_format": "base64"}).json()
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in body["data"]])
    np.testing.assert_array_equal(decoded, embedder.embed_documents(docs))


@pytest.mark.parametrize(
    "extra",
    [{"input_type": "query"}, {"input_type": "search_query"}, {"model": "ruri:query"}],
)
def test_embeddings_query_side(client: TestClient, embedder: Embedder, extra: dict[str, str]) -> None:
    body = client.post("/v1/embeddings", json={"input": QUERY, **extra}).json()
    np.testing.assert_array_equal(
        np.array([body["data"][0]["embedding"]], dtype=np.float32), embedder.embed_queries([QUERY])
    )
    assert embedder.prefix("query") != embedder.prefix("document")  # the side really matters for this model


def test_embeddings_default_side_is_a_server_option(make_client: Callable[..., TestClient], embedder: Embedder) -> None:
    client = make_client(embed_input_type="query")
    body = client.post("/v1/embeddings", json={"input": [QUERY]}).json()
    np.testing.assert_array_equal(
        np.array([body["data"][0]["embedding"]], dtype=np.float32), embedder.embed_queries([QUERY])
    )
    body = client.post("/v1/embeddings", json={"input": [QUERY], "input_type": "document"}).json()
    np.testing.assert_array_equal(
        np.array([body["data"][0]["embedding"]], dtype=np.float32), embedder.embed_documents([QUERY])
    )


# ------------------------------------------------------------------------------------------------ info, health, metrics


def test_info_health_models_metrics(client: TestClient, reranker: Reranker, embedder: Embedder) -> None:
    info = client.get("/info").json()
    assert "reranker" in info["model_type"]
    assert info["max_client_batch_size"] == 8
    assert info["max_input_length"] == reranker.max_length
    assert info["embedder"]["dim"] == embedder.dim
    assert "/" not in json.dumps(info["model_id"])
    assert client.get("/health").json() == {"status": "ok"}
    assert {m["id"] for m in client.get("/v1/models").json()["data"]} == {info["model_id"], info["embedder"]["model"]}
    client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})
    text = client.get("/metrics").text
    assert 'jp_rerank_requests_total{route="/v1/rerank",status="200"} 1' in text
    assert 'jp_rerank_request_duration_seconds_count{route="/v1/rerank"} 1' in text
    assert 'jp_rerank_batch_items_sum{model="reranker"} 5' in text
    assert 'jp_rerank_queue_depth{model="reranker"} 0' in text


def test_info_of_an_embedding_only_server(make_client: Callable[..., TestClient]) -> None:
    client = make_client(with_reranker=False)
    assert "embedding" in client.get("/info").json()["model_type"]
    response = client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})
    assert response.status_code == 404
    assert "-m MODEL" in response.json()["message"]


def test_embeddings_without_embedder_is_404(make_client: Callable[..., TestClient]) -> None:
    client = make_client(with_embedder=False)
    response = client.post("/v1/embeddings", json={"input": ["a"]})
    assert response.status_code == 404
    assert "--embedder" in response.json()["message"]


def test_health_is_503_until_the_models_are_loaded(reranker: Reranker) -> None:
    client = TestClient(create_app(reranker, None, ServeConfig()))  # no `with`: the lifespan (start-up) never ran
    assert client.get("/health").status_code == 503
    response = client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})
    assert response.status_code == 503
    assert "not ready" in response.json()["message"]


# ------------------------------------------------------------------------------------------------ error matrix

BAD_RERANK = [
    ({"documents": DOCS}, "query is required", "query"),
    ({"query": "", "documents": DOCS}, "query is empty", "query"),
    ({"query": "  \u200b ", "documents": DOCS}, "query is empty", "query"),
    ({"query": 3, "documents": DOCS}, "query must be a str", "query"),
    ({"query": QUERY}, "documents is required", "documents"),
    ({"query": QUERY, "documents": "one"}, "documents must be an array", "documents"),
    ({"query": QUERY, "documents": ["a", 7]}, r"documents\[1\] must be a str", "documents"),
    (
        {"query": QUERY, "documents": ["a", {"title": "x"}]},
        r'documents\[1\] must be a string or an object with a "text"',
        "documents[1]",
    ),
    (
        {"query": QUERY, "documents": ["a"] * 9},
        r"9 items, over the limit of 8 per request \(--max-documents\)",
        "documents",
    ),
    (
        {"query": QUERY, "documents": ["a", "x" * 301]},
        r"documents\[1\] has 301 characters, over the limit of 300 .*--max-chars",
        "documents[1]",
    ),
    ({"query": "q" * 301, "documents": ["a"]}, r"query has 301 characters.*--max-chars", "query"),
    ({"query": QUERY, "documents": ["\ud800"]}, "lone surrogate", "documents"),
    ({"query": QUERY, "documents": DOCS, "top_n": 0}, "top_n must be a positive integer, got 0", "top_n"),
    ({"query": QUERY, "documents": DOCS, "top_n": "3"}, "top_n must be a positive integer", "top_n"),
    ({"query": QUERY, "documents": DOCS, "top_n": True}, "top_n must be a positive integer", "top_n"),
    (
        {"query": QUERY, "documents": DOCS, "return_documents": "yes"},
        "return_documents must be true or false",
        "return_documents",
    ),
    (
        {"query": QUERY, "documents": DOCS, "score_threshold": "high"},
        "score_threshold must be a finite number",
        "score_threshold",
    ),
    (
        {"query": QUERY, "documents": DOCS, "score_threshold": 10**400},
        "score_threshold must be a finite number",
        "score_threshold",
    ),
    ({"query": QUERY, "documents": DOCS, "listwise": "max"}, "listwise must be", "listwise"),
    ({"query": QUERY, "documents": DOCS, "fusion": "sum"}, "fusion must be", "fusion"),
    ({"query": QUERY, "documents": DOCS, "fusion_weight": 2}, r"fusion_weight must be in \[0, 1\]", "fusion_weight"),
    ({"query": QUERY, "documents": DOCS, "model": 5}, "model must be a string", "model"),
    ({"query": QUERY, "texts": "one"}, "texts must be an array", "texts"),
    ({"query": QUERY, "texts": DOCS, "raw_scores": "no"}, "raw_scores must be true or false", "raw_scores"),
]


@pytest.mark.parametrize(("body", "message", "field"), BAD_RERANK)
def test_bad_rerank_bodies_are_422_naming_the_field(client: TestClient, body: object, message: str, field: str) -> None:
    path = "/rerank" if "texts" in body else "/v1/rerank"  # type: ignore[operator]
    response = client.post(path, content=json.dumps(body).encode())
    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["error"]["code"] == 422
    assert payload["error"]["param"] == field
    assert re.search(message, payload["message"]), payload["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "malformed JSON"),
        (b"", "the body is empty"),
        (b'{"query": "a", "documents": ["b"]', "malformed JSON"),
        (b"\xff\xfe", "malformed JSON"),
    ],
)
def test_malformed_json_is_400(client: TestClient, body: bytes, message: str) -> None:
    response = client.post("/v1/rerank", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert message in response.json()["message"]


def test_deeply_nested_json_is_400(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_body_bytes=1 << 20)
    response = client.post("/v1/rerank", content=b"[" * 100_000 + b"]" * 100_000)
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["message"]


def test_a_json_array_body_is_422(client: TestClient) -> None:
    response = client.post("/v1/rerank", json=[QUERY, DOCS])
    assert response.status_code == 422
    assert "must be a JSON object, got an array" in response.json()["message"]


def test_body_over_the_limit_is_413_declared_or_streamed(client: TestClient) -> None:
    big = json.dumps({"query": QUERY, "documents": ["x" * 100] * 90}).encode()
    assert len(big) > 8192
    response = client.post("/v1/rerank", content=big)
    assert response.status_code == 413
    assert "8192 bytes (--max-body-bytes)" in response.json()["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams in
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    response = client.post("/v1/rerank", content=chunks())
    assert response.status_code == 413
    assert "--max-body-bytes" in response.json()["message"]


BAD_EMBEDDINGS = [
    ({}, "input is required", "input"),
    ({"input": []}, "input must not be empty", "input"),
    ({"input": [1, 2, 3]}, "token ids are not accepted", "input"),
    ({"input": [[1, 2], [3]]}, "token ids are not accepted", "input"),
    ({"input": 5}, "input must be an array", "input"),
    ({"input": ["a", None]}, r"input\[1\] must be a str", "input"),
    ({"input": ["a"] * 9}, "over the limit of 8 per request", "input"),
    ({"input": "x" * 301}, "over the limit of 300 characters", "input"),
    ({"input": ["a"], "encoding_format": "int8"}, "encoding_format must be", "encoding_format"),
    ({"input": ["a"], "input_type": "question"}, "input_type must be", "input_type"),
    ({"input": ["a"], "dimensions": 7}, "dimensions=7 differs from the model's", "dimensions"),
    ({"input": [""], "input_type": "query"}, r"queries\[0\] is empty", None),
]


@pytest.mark.parametrize(("body", "message", "field"), BAD_EMBEDDINGS)
def test_bad_embeddings_bodies_are_422(
    client: TestClient, body: dict[str, object], message: str, field: str | None
) -> None:
    response = client.post("/v1/embeddings", json=body)
    assert response.status_code == 422, response.text
    assert re.search(message, response.json()["message"]), response.json()["message"]
    assert response.json()["error"]["param"] == field


def test_unknown_route_and_wrong_method_are_json(client: TestClient) -> None:
    response = client.get("/v1/rerank")
    assert response.status_code == 405
    assert "GET /v1/rerank" in response.json()["message"]
    response = client.post("/v1/files", json={})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == 404


# ------------------------------------------------------------------------------------------------ security


def test_api_key_on_every_route_but_health(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_key=API_KEY)
    ok = {"Authorization": f"Bearer {API_KEY}"}
    body = {"query": QUERY, "documents": DOCS}
    assert client.get("/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}, {"Authorization": "Basic x"}):
        for method, path in (("post", "/v1/rerank"), ("post", "/v1/embeddings"), ("get", "/info"), ("get", "/metrics")):
            response = client.request(method.upper(), path, json=body, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert "API key" in response.json()["message"]
            assert response.headers["www-authenticate"] == "Bearer"
    assert client.post("/v1/rerank", json=body, headers=ok).status_code == 200
    assert client.get("/metrics", headers=ok).status_code == 200


def test_cors_is_off_unless_asked(make_client: Callable[..., TestClient]) -> None:
    preflight = {"Origin": "https://chat.example", "Access-Control-Request-Method": "POST"}
    off = make_client()
    assert "access-control-allow-origin" not in off.options("/v1/rerank", headers=preflight).headers
    assert "access-control-allow-origin" not in off.get("/health", headers={"Origin": "https://chat.example"}).headers
    on = make_client(cors_origins=("https://chat.example",), api_key=API_KEY)
    response = on.options("/v1/rerank", headers={**preflight, "Access-Control-Request-Headers": "authorization"})
    assert response.status_code == 200  # the preflight needs no key
    assert response.headers["access-control-allow-origin"] == "https://chat.example"
    other = on.options("/v1/rerank", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
