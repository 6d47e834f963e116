"""The cross-request queue: combining, back-pressure, deadlines, cancellation, failures; and the same over HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
from starlette.testclient import TestClient

from jp_rerank import Reranker
from jp_rerank.serve.batching import SOLO, BatchQueue, QueueFullError, QueueTimeoutError
from jp_rerank.serve.metrics import Metrics

from .conftest import API_KEY, DOCS, QUERY, LiveServer, gate_worker, state_of, wait_until


class Recorder:
    """A run function that records its batches and can be held until released (bounded waits)."""

    def __init__(self) -> None:
        self.batches: list[tuple[Hashable, list[Any]]] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    def __call__(self, group: Hashable, payloads: Sequence[Any]) -> list[Any]:
        self.entered.set()
        assert self.release.wait(20)
        if any(p == "boom" for p in payloads):
            raise ValueError("boom is not a valid payload")
        self.batches.append((group, list(payloads)))
        return [f"{group}:{p}" for p in payloads]


@pytest.fixture
def held() -> Recorder:
    rec = Recorder()
    rec.release.clear()
    return rec


def started(run: Callable[..., Any], **options: Any) -> BatchQueue:
    queue = BatchQueue("test", run, metrics=Metrics(), **options)
    queue.start()
    return queue


def test_waiting_jobs_of_one_group_are_combined_within_the_budgets(held: Recorder) -> None:
    queue = started(held, max_items=10, max_requests=3)
    try:
        first = queue.submit("a0", size=1, group="a", max_wait_s=20)
        assert held.entered.wait(20)  # the worker holds "a0"; everything below waits together
        tickets = [queue.submit(f"a{i}", size=3, group="a", max_wait_s=20) for i in range(1, 5)]
        other = queue.submit("b1", size=1, group="b", max_wait_s=20)
        solo = queue.submit(lambda: "alone", size=1, group=SOLO, max_wait_s=20)
        held.release.set()
        results = [t.future.result(20) for t in [first, *tickets, other, solo]]
    finally:
        queue.stop()
    assert results == ["a:a0", "a:a1", "a:a2", "a:a3", "a:a4", "b:b1", "alone"]
    assert held.batches == [("a", ["a0"]), ("a", ["a1", "a2", "a3"]), ("a", ["a4"]), ("b", ["b1"])]  # 9 items max
    assert queue.metrics.max_batch_requests("test") >= 3


def test_a_full_queue_refuses_at_once(held: Recorder) -> None:
    queue = started(held, max_queue=2)
    try:
        queue.submit("x", size=1, max_wait_s=20)
        assert held.entered.wait(20)
        queue.submit("y", size=1, max_wait_s=20)
        queue.submit("z", size=1, max_wait_s=20)
        t0 = time.monotonic()
        with pytest.raises(QueueFullError, match=r"queue is full \(2 requests waiting, --queue-size\)"):
            queue.submit("w", size=1, max_wait_s=20)
        assert time.monotonic() - t0 < 1.0
        assert queue.metrics.dropped("test", "full") == 1
    finally:
        held.release.set()
        queue.stop()


def test_a_job_past_its_deadline_is_failed_without_running(held: Recorder) -> None:
    queue = started(held)
    try:
        queue.submit("x", size=1, max_wait_s=20)
        assert held.entered.wait(20)
        late = queue.submit("late", size=1, max_wait_s=0.01)
        time.sleep(0.05)
        held.release.set()
        with pytest.raises(QueueTimeoutError, match="--max-wait-ms"):
            late.future.result(20)
    finally:
        queue.stop()
    assert all("late" not in payloads for _, payloads in held.batches)
    assert queue.metrics.dropped("test", "timeout") == 1


def test_a_cancelled_job_is_dropped_and_others_run(held: Recorder) -> None:
    queue = started(held)
    try:
        queue.submit("x", size=1, max_wait_s=20)
        assert held.entered.wait(20)
        gone = queue.submit("gone", size=1, max_wait_s=20)
        kept = queue.submit("kept", size=1, max_wait_s=20)
        assert gone.cancel()
        assert queue.depth() == 1
        held.release.set()
        assert kept.future.result(20) == "None:kept"
    finally:
        queue.stop()
    assert all("gone" not in payloads for _, payloads in held.batches)
    assert queue.metrics.dropped("test", "disconnect") == 1


def test_a_failing_batch_is_retried_job_by_job(held: Recorder) -> None:
    queue = started(held)
    try:
        queue.submit("x", size=1, max_wait_s=20)
        assert held.entered.wait(20)
        good, bad, good2 = (queue.submit(p, size=1, max_wait_s=20) for p in ("g1", "boom", "g2"))
        held.release.set()
        assert good.future.result(20) == "None:g1"
        assert good2.future.result(20) == "None:g2"
        with pytest.raises(ValueError, match="boom is not a valid payload"):
            bad.future.result(20)
    finally:
        queue.stop()


def test_stop_finishes_what_is_queued(held: Recorder) -> None:
    queue = started(held)
    tickets = [queue.submit(i, size=1, max_wait_s=20) for i in range(3)]
    assert held.entered.wait(20)
    stopper = threading.Thread(target=queue.stop)
    stopper.start()
    held.release.set()
    stopper.join(20)
    assert [t.future.result(0) for t in tickets] == ["None:0", "None:1", "None:2"]
    with pytest.raises(RuntimeError, match="not running"):
        queue.submit(9, size=1, max_wait_s=1)


# ------------------------------------------------------------------------------------------------ over HTTP


def _post_async(client: TestClient, body: dict[str, Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(client.post("/v1/rerank", json=body)))
    thread.start()
    return thread, out


def test_queue_full_and_wait_limit_are_503_at_once(make_client: Callable[..., TestClient]) -> None:
    client = make_client(queue_size=1, max_batch_requests=1, max_wait_ms=60_000)
    gate = gate_worker(client.app)  # type: ignore[arg-type]
    body = {"query": QUERY, "documents": DOCS}
    running, first = _post_async(client, body)
    assert gate.entered.wait(20)
    waiting, second = _post_async(client, body)
    wait_until(lambda: state_of(client.app).rerank.queue.depth() == 1, what="the second request to queue")  # type: ignore[arg-type, union-attr]
    t0 = time.monotonic()
    refused = client.post("/v1/rerank", json=body)
    assert time.monotonic() - t0 < 5
    assert refused.status_code == 503
    assert "--queue-size" in refused.json()["message"]
    assert refused.headers["retry-after"] == "1"
    gate.open()
    for thread in (running, waiting):
        thread.join(30)
    assert [first[0].status_code, second[0].status_code] == [200, 200]


def test_a_request_that_waits_too_long_is_503(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_wait_ms=300, max_batch_requests=1)
    gate = gate_worker(client.app)  # type: ignore[arg-type]
    body = {"query": QUERY, "documents": DOCS}
    running, first = _post_async(client, body)
    assert gate.entered.wait(20)
    t0 = time.monotonic()
    late = client.post("/v1/rerank", json=body)
    assert late.status_code == 503
    assert "--max-wait-ms" in late.json()["message"]
    assert time.monotonic() - t0 < 10  # answered while the worker was still busy
    gate.open()
    running.join(30)
    assert first[0].status_code == 200
    assert len(gate.calls) == 1  # the late request never reached the engine


@pytest.mark.enable_socket
@pytest.mark.network
def test_concurrent_requests_are_scored_together(live: LiveServer, reranker: Reranker) -> None:
    gate = gate_worker(live.app)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    queries = [f"{QUERY} {i}" for i in range(8)]

    def post(query: str) -> httpx.Response:
        body = {"query": query, "documents": DOCS, "return_documents": False}
        return httpx.post(f"{live.url}/v1/rerank", json=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(post, q) for q in queries]
        assert gate.entered.wait(20)  # the first engine call holds the worker; the rest queue up behind it
        queue = state_of(live.app).rerank.queue  # type: ignore[union-attr]
        wait_until(lambda: queue.depth() + sum(gate.calls) == 8, what="every request to queue")
        gate.open()
        responses = [f.result(30) for f in futures]
    assert all(r.status_code == 200 for r in responses)
    assert len(gate.calls) == 2  # 8 requests, 2 engine calls
    assert sum(gate.calls) == 8
    metrics = httpx.get(f"{live.url}/metrics", headers=headers, timeout=10).text
    assert 'jp_rerank_batch_requests_count{model="reranker"} 2' in metrics
    assert 'jp_rerank_batch_requests_sum{model="reranker"} 8' in metrics
    for query, response in zip(queries, responses, strict=True):
        expected = reranker.rerank(query, DOCS)
        got = response.json()["results"]
        assert [r["index"] for r in got] == [r.index for r in expected]
        np.testing.assert_allclose(
            [r["relevance_score"] for r in got], [r.score for r in expected], rtol=1e-5, atol=1e-6
        )


@pytest.mark.enable_socket
@pytest.mark.network
def test_a_client_that_disconnects_is_dropped_and_others_are_unaffected(live: LiveServer) -> None:
    gate = gate_worker(live.app)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = {"query": QUERY, "documents": DOCS}
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(lambda: httpx.post(f"{live.url}/v1/rerank", json=body, headers=headers, timeout=30))
        assert gate.entered.wait(20)
        host, port = live.url.removeprefix("http://").split(":")
        raw = b'{"query": "\\u5c71", "documents": ["a", "b"]}'  # 山
        request = (
            f"POST /v1/rerank HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
        ).encode() + raw
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(request)
            queue = state_of(live.app).rerank.queue  # type: ignore[union-attr]
            wait_until(lambda: queue.depth() == 1, what="the doomed request to queue")
        # the socket is closed: the server notices and drops the queued work
        wait_until(lambda: queue.depth() == 0, what="the dropped request to leave the queue")
        assert queue.metrics.dropped("reranker", "disconnect") == 1
        gate.open()
        assert first.result(30).status_code == 200
    assert gate.calls == [1]  # only the first request reached the engine
    after = httpx.post(f"{live.url}/v1/rerank", json=body, headers=headers, timeout=30)
    assert after.status_code == 200


@pytest.mark.enable_socket
@pytest.mark.network
def test_a_slow_client_gets_408_and_others_are_served(live_factory: Callable[..., LiveServer]) -> None:
    live = live_factory(read_timeout_s=0.5)
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST /v1/rerank HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n".encode()
            + b'{"query": '  # ...and nothing more: the rest of the body never comes
        )
        fast = httpx.post(f"{live.url}/v1/rerank", json={"query": QUERY, "documents": DOCS}, timeout=30)
        assert fast.status_code == 200
        answer = b""
        deadline = time.monotonic() + 10
        while not answer.rstrip().endswith(b"}") and time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"did not arrive within 0.5 s" in answer
