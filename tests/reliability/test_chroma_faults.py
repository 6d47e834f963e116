"""Chroma server faults: not running, killed mid-ingestion and restarted, hung; retries with back-off; resumption.

The server tests run a real ``chroma run`` on 127.0.0.1 and a free port, and SIGKILL / SIGSTOP it by its pid.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jp_rerank.index import ingest
from jp_rerank.index.retry import (
    IndexServerUnavailableError,
    RetryingProxy,
    RetryPolicy,
    call_with_retries,
    classify_failure,
)

chromadb = pytest.importorskip("chromadb")
httpx = pytest.importorskip("httpx")
from jp_rerank.index import ChromaIndex  # noqa: E402

pytestmark = pytest.mark.timeout(300)

DIM = 8
N = 400
FAST = RetryPolicy(attempts=3, initial_delay=0.05, max_delay=0.2, timeout=2.0)
PATIENT = RetryPolicy(attempts=12, initial_delay=0.1, max_delay=1.0, timeout=10.0)


def records() -> list[tuple[str, str, dict[str, Any]]]:
    return [(f"doc-{i:04d}", f"文書{i}：京都の寺と大阪の食べ物について。", {"i": i}) for i in range(N)]


def embed(texts: list[str]) -> np.ndarray:
    """Deterministic toy vectors (a hash of each text)."""
    out = np.empty((len(texts), DIM), dtype=np.float32)
    for row, text in enumerate(texts):
        seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
        out[row] = np.random.default_rng(seed).standard_normal(DIM)
    return out


def assert_complete(index: ChromaIndex) -> None:
    """Every record exactly once, with its own text and vector."""
    want = records()
    assert len(index) == N
    stored = sorted(r.id for r in index.records())
    assert stored == [r[0] for r in want]
    got = index.get([r[0] for r in want[::37]])
    assert [g.text for g in got] == [r[1] for r in want[::37]]
    probes = embed([r[1] for r in want[:5]])
    assert [h[0].id for h in index.search_many(probes, k=1)] == [r[0] for r in want[:5]]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------------------------ no server needed


def test_retry_policy_delays_grow_and_are_checked() -> None:
    policy = RetryPolicy(attempts=5, initial_delay=0.1, max_delay=0.5, multiplier=2, jitter=0.0)
    assert policy.delays() == pytest.approx([0.1, 0.2, 0.4, 0.5])
    import random

    jittered = RetryPolicy(attempts=6, initial_delay=1.0, max_delay=8.0, jitter=0.25).delays(random.Random(1))
    for got, base in zip(jittered, [1, 2, 4, 8, 8], strict=True):
        assert 0.75 * base <= got <= 1.25 * base
    for bad, match in [
        ({"attempts": 0}, "attempts must be an int >= 1"),
        ({"initial_delay": -1}, "initial_delay must be a non-negative number"),
        ({"multiplier": 0.5}, "multiplier must be >= 1"),
        ({"jitter": 1.0}, "jitter must be below 1"),
        ({"timeout": 0}, "timeout must be a positive number of seconds or None"),
    ]:
        with pytest.raises(ValueError, match=match):
            RetryPolicy(**bad)


def test_failures_are_classified_by_whether_the_request_may_have_arrived() -> None:
    assert classify_failure(httpx.ConnectError("refused")) == "unsent"
    assert classify_failure(httpx.ConnectTimeout("slow connect")) == "unsent"
    assert classify_failure(httpx.ReadTimeout("slow answer")) == "timeout"
    assert classify_failure(httpx.RemoteProtocolError("server died")) == "sent"
    assert classify_failure(ValueError("Could not connect to a Chroma server. Are you sure it is running?")) == "unsent"
    assert classify_failure(ValueError("bad where filter")) is None
    assert classify_failure(chromadb.errors.NotFoundError("no such collection")) is None


def flaky(failures: list[BaseException], result: str = "ok") -> tuple[Any, list[int]]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return result

    return fn, calls


def test_transient_failures_are_retried_with_back_off(caplog: pytest.LogCaptureFixture) -> None:
    pauses: list[float] = []
    fn, calls = flaky([httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
    policy = RetryPolicy(attempts=4, initial_delay=0.1, jitter=0.0)
    with caplog.at_level(logging.WARNING, logger="jp_rerank.index.retry"):
        got = call_with_retries(
            fn, what="upsert", where="Chroma server X", policy=policy, idempotent=True, sleep=pauses.append
        )
    assert got == "ok"
    assert len(calls) == 3
    assert pauses == pytest.approx([0.1, 0.2])
    assert "upsert on Chroma server X failed (ConnectError: refused); retry 1 of 3 in 0.10 s" in caplog.text
    assert "no answer within 30.0 s (ReadTimeout)" in caplog.text


def test_exhausted_retries_raise_a_clear_error() -> None:
    fn, calls = flaky([httpx.ConnectError("refused")] * 10)
    with pytest.raises(
        IndexServerUnavailableError, match=r"count on S failed 3 time\(s\) over .* check that the server"
    ):
        call_with_retries(fn, what="count", where="S", policy=FAST, idempotent=True, sleep=lambda s: None)
    assert len(calls) == 3


def test_a_sent_add_is_not_retried_but_an_unsent_one_is() -> None:
    fn, calls = flaky([httpx.RemoteProtocolError("server disconnected")])
    with pytest.raises(IndexServerUnavailableError, match=r"not retried because it may have been applied.*upsert"):
        call_with_retries(fn, what="add", where="S", policy=FAST, idempotent=False, sleep=lambda s: None)
    assert len(calls) == 1
    fn, calls = flaky([httpx.ConnectError("refused")])
    assert call_with_retries(fn, what="add", where="S", policy=FAST, idempotent=False, sleep=lambda s: None) == "ok"
    assert len(calls) == 2


def test_other_errors_pass_through_untouched() -> None:
    fn, calls = flaky([KeyError("not a network problem")])
    with pytest.raises(KeyError, match="not a network problem"):
        call_with_retries(fn, what="get", where="S", policy=FAST, idempotent=True, sleep=lambda s: None)
    assert len(calls) == 1


def test_proxy_marks_add_unsafe_and_passes_attributes() -> None:
    class Target:
        name = "collection"

        def __init__(self) -> None:
            self.calls: list[str] = []

        def add(self) -> None:
            self.calls.append("add")
            raise httpx.ReadTimeout("slow")

        def upsert(self) -> str:
            self.calls.append("upsert")
            if self.calls.count("upsert") < 2:
                raise httpx.ReadTimeout("slow")
            return "done"

    target = Target()
    proxy = RetryingProxy(target, policy=RetryPolicy(attempts=3, initial_delay=0.0), where="S")
    assert proxy.name == "collection"
    assert proxy.upsert() == "done"
    with pytest.raises(IndexServerUnavailableError, match="add on S failed after the request was sent"):
        proxy.add()
    assert target.calls == ["upsert", "upsert", "add"]


@pytest.mark.enable_socket
@pytest.mark.network
def test_server_not_running_is_a_clear_error(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    with (
        caplog.at_level(logging.WARNING, logger="jp_rerank.index.retry"),
        pytest.raises(
            IndexServerUnavailableError,
            match=rf"connecting on Chroma server http://127\.0\.0\.1:{port} failed 3 time\(s\).*ConnectionRefusedError",
        ),
    ):
        ChromaIndex(DIM, host="127.0.0.1", port=port, retry=FAST)
    assert caplog.text.count("retry ") == 2


@pytest.mark.enable_socket
@pytest.mark.network
def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:  # accepts connections, never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        policy = RetryPolicy(attempts=2, initial_delay=0.05, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(IndexServerUnavailableError, match=r"failed 2 time\(s\).*no answer within 0\.5 s"):
            ChromaIndex(DIM, host="127.0.0.1", port=port, retry=policy)
        assert time.monotonic() - started < 60  # bounded, not a hang (generous: no timing precision asserted)


# ------------------------------------------------------------------------------------------------ real server


class ChromaServer:
    """A ``chroma run`` process on 127.0.0.1 that the tests can kill, suspend and restart on the same path/port."""

    def __init__(self, path: Path, log: Path) -> None:
        exe = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
        if exe is None:
            pytest.skip("the chroma CLI is not installed")
        self.exe = exe
        self.path = path
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.exe, "run", "--path", str(self.path), "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chroma run exited with {self.proc.returncode}: {self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ChromaServer]:
    srv = ChromaServer(tmp_path / "db", tmp_path / "server.log")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def killing_embed(server: ChromaServer, at_batch: int, restart_after: float | None) -> Any:
    """An embed function that SIGKILLs the server when it is asked for batch ``at_batch`` (0-based), and restarts it
    ``restart_after`` seconds later in a background thread (never, for ``None``)."""
    state = {"batch": 0}

    def fn(texts: list[str]) -> np.ndarray:
        if state["batch"] == at_batch:
            server.kill()
            if restart_after is not None:
                threading.Timer(restart_after, server.start).start()
        state["batch"] += 1
        return embed(texts)

    return fn


@pytest.mark.slow
@pytest.mark.enable_socket
@pytest.mark.network
def test_server_killed_and_restarted_mid_ingestion_is_ridden_out(server: ChromaServer) -> None:
    index = ChromaIndex(DIM, host="127.0.0.1", port=server.port, collection_name="ride", retry=PATIENT)
    report = ingest(
        index,
        records(),
        killing_embed(server, at_batch=3, restart_after=0.5),
        batch_size=50,
        mode="upsert",
        progress=False,
    )
    assert report.n_records == N
    assert_complete(index)
    # a fresh client after the restart sees the same collection
    assert_complete(ChromaIndex(DIM, host="127.0.0.1", port=server.port, collection_name="ride", retry=PATIENT))


@pytest.mark.slow
@pytest.mark.enable_socket
@pytest.mark.network
def test_server_down_mid_ingestion_fails_clearly_then_resumes_without_duplicates(server: ChromaServer) -> None:
    index = ChromaIndex(DIM, host="127.0.0.1", port=server.port, collection_name="resume", retry=FAST)
    with pytest.raises(IndexServerUnavailableError, match=rf"on Chroma server http://127\.0\.0\.1:{server.port}"):
        ingest(
            index,
            records(),
            killing_embed(server, at_batch=4, restart_after=None),
            batch_size=50,
            mode="upsert",
            progress=False,
        )
    server.start()  # same path, same port
    stored = sorted(r.id for r in index.records())  # the old client object works again
    assert stored == [r[0] for r in records()[: len(stored)]]
    assert len(stored) == 200  # the four batches written before the kill survived the SIGKILL
    ingest(index, records(), embed, batch_size=50, mode="upsert", progress=False)  # resume: upsert by id
    assert_complete(index)


@pytest.mark.slow
@pytest.mark.enable_socket
@pytest.mark.network
def test_server_killed_at_random_moments_then_resumed(server: ChromaServer) -> None:
    import random

    rng = random.Random(7)
    index = ChromaIndex(DIM, host="127.0.0.1", port=server.port, collection_name="random", retry=PATIENT)
    for _ in range(3):
        delay = rng.uniform(0.0, 0.4)

        def kill_then_restart(delay: float = delay) -> None:
            # one thread, in order: a loaded machine may delay the kill, but never runs the restart before it
            time.sleep(delay)
            server.kill()
            time.sleep(0.3)
            server.start()  # returns once the port accepts connections

        chaos = threading.Thread(target=kill_then_restart)
        chaos.start()
        # usually ridden out by the retries; an add interrupted after its request was sent raises instead
        with contextlib.suppress(IndexServerUnavailableError):
            ingest(index, records(), embed, batch_size=25, mode="upsert", progress=False)
        chaos.join()  # the server is up again, whenever the kill came
        ingest(index, records(), embed, batch_size=100, mode="upsert", progress=False)  # resume
        assert_complete(index)


@pytest.mark.slow
@pytest.mark.enable_socket
@pytest.mark.network
def test_suspended_server_times_out_then_recovers(server: ChromaServer) -> None:
    policy = RetryPolicy(attempts=2, initial_delay=0.05, timeout=1.0)
    index = ChromaIndex(DIM, host="127.0.0.1", port=server.port, collection_name="hang", retry=policy)
    ingest(index, records()[:50], embed, batch_size=50, progress=False)
    server.signal(signal.SIGSTOP)
    try:
        with pytest.raises(
            IndexServerUnavailableError,
            match=r"(count|query) on Chroma server .* failed 2 time\(s\).*no answer within 1\.0 s",
        ):
            index.search(embed(["質問"])[0], k=3)
    finally:
        server.signal(signal.SIGCONT)
    assert len(index.search(embed(["質問"])[0], k=3)) == 3


@pytest.mark.slow
@pytest.mark.enable_socket
@pytest.mark.network
def test_server_killed_right_after_an_upsert_request_loses_no_record(
    server: ChromaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12, item 3: an upsert was a delete then an add; a server dying between the two lost the records."""
    index = ChromaIndex(DIM, host="127.0.0.1", port=server.port, collection_name="upsert-kill", retry=FAST)
    old = records()[:100]
    ingest(index, old, embed, batch_size=100, progress=False)
    ids = [r[0] for r in old]
    new_texts = [f"新版：{r[1]}" for r in old]
    raw = index._collection._target  # below the retrying proxy: the server dies once the request has been served
    for name in ("delete", "upsert"):
        real = getattr(raw, name)

        def then_kill(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            result = _real(*args, **kwargs)
            server.kill()
            return result

        monkeypatch.setattr(raw, name, then_kill)
    with contextlib.suppress(IndexServerUnavailableError):
        index.upsert(ids, embed(new_texts), new_texts, [r[2] for r in old])
    monkeypatch.undo()
    server.start()
    assert len(index) == len(ids)  # nothing lost (the delete-then-add upsert left 0 here)
    got = index.get(ids)
    assert {r.text for r in got} <= set(new_texts) | {r[1] for r in old}
    assert [r.metadata for r in got] == [r[2] for r in old]
