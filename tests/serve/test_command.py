"""``jp-rerank serve`` as a process: refusals before listening, start-up and access logs, scores, SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from jp_rerank import Embedder, Reranker
from jp_rerank.cli import main

from .conftest import DOCS, QUERY

KEY = "process-key"


# ------------------------------------------------------------------------------------------------ refusals in-process


def test_a_public_address_without_a_key_is_refused(
    xlmr_ce_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JP_RERANK_API_KEY", raising=False)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org"):
        assert main(["serve", "-m", str(xlmr_ce_path), "--host", host]) == 2
        err = capsys.readouterr().err
        assert f"--host {host} is reachable from other machines: an API key is required" in err
        assert "JP_RERANK_API_KEY" in err


def test_nothing_to_serve_and_bad_limits_are_usage_errors(
    xlmr_ce_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve"]) == 2
    assert "nothing to serve" in capsys.readouterr().err
    assert main(["serve", "-m", str(xlmr_ce_path), "--max-documents", "0"]) == 2
    assert "max_documents must be positive, got 0" in capsys.readouterr().err
    assert main(["serve", "-m", str(xlmr_ce_path), "--port", "70000"]) == 2
    assert "--port must be in 0..65535" in capsys.readouterr().err


def test_a_missing_model_is_exit_1_before_listening(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "-m", str(tmp_path / "no-such-model"), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "jp-rerank serve: error:" in err
    assert "no-such-model" in err
    assert "listening on" not in err


# ------------------------------------------------------------------------------------------------ processes


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["JP_RERANK_BACKEND"] = "torch"
    env.pop("JP_RERANK_API_KEY", None)
    return env


class ServeProcess:
    """``python -m jp_rerank serve ... --port 0`` with its stderr in a file (waits bounded)."""

    def __init__(self, args: list[str], workdir: Path) -> None:
        self.log = workdir / "serve.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jp_rerank", "--threads", "1", "serve", "--port", "0", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=_env(),
            )
        self.url = ""

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_listening(self, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", self.text())
            if found:
                self.url = found.group(1)
                return self.url
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited with {self.proc.returncode}:\n{self.text()}")
            time.sleep(0.1)
        raise AssertionError(f"no 'listening on' line within {timeout} s:\n{self.text()}")

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"/health never answered 200:\n{self.text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for proc in started:
        proc.stop()


@pytest.mark.slow
def test_a_model_that_cannot_load_exits_1_without_listening(tmp_path: Path, processes: list[ServeProcess]) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "bert", "architectures": ["BertForSequenceClassification"]}')
    (broken / "model.safetensors").write_bytes(b"not weights")
    proc = ServeProcess(["-m", str(broken)], tmp_path)
    processes.append(proc)
    assert proc.proc.wait(180) == 1
    text = proc.text()
    assert "jp-rerank serve: error:" in text
    assert "listening on" not in text


@pytest.mark.slow
@pytest.mark.enable_socket
@pytest.mark.network
def test_serve_process_end_to_end(
    xlmr_ce_path: Path,
    dense_path: Path,
    reranker: Reranker,
    embedder: Embedder,
    tmp_path: Path,
    processes: list[ServeProcess],
) -> None:
    proc = ServeProcess(["-m", str(xlmr_ce_path), "--embedder", str(dense_path), "--api-key", KEY], tmp_path)
    processes.append(proc)
    url = proc.wait_listening()
    proc.wait_healthy()
    start_up = proc.text()
    assert "reranker" in start_up
    assert "torch" in start_up  # the backend plan
    assert f"listening on {url}" in start_up
    headers = {"Authorization": f"Bearer {KEY}"}

    body = httpx.post(f"{url}/v1/rerank", json={"query": QUERY, "documents": DOCS}, headers=headers, timeout=60)
    assert body.status_code == 200
    got = [(r["index"], r["relevance_score"]) for r in body.json()["results"]]
    expected = reranker.rerank(QUERY, DOCS)
    assert [i for i, _ in got] == [r.index for r in expected]
    np.testing.assert_allclose([s for _, s in got], [r.score for r in expected], rtol=1e-6, atol=1e-7)
    vectors = httpx.post(f"{url}/v1/embeddings", json={"input": DOCS}, headers=headers, timeout=60).json()
    got_vectors = np.array([d["embedding"] for d in vectors["data"]], dtype=np.float32)
    np.testing.assert_allclose(got_vectors, embedder.embed_documents(DOCS), rtol=1e-5, atol=1e-6)
    assert httpx.post(f"{url}/v1/rerank", json={"query": QUERY}, timeout=10).status_code == 401
    assert re.search(r'"POST /v1/rerank" 200 \d+\.\d ms', proc.text())  # one access line per request
    assert re.search(r'"POST /v1/rerank" 401 \d+\.\d ms', proc.text())

    # SIGTERM while a request is in flight (headers in, half its body still to come): it completes, then exit 0
    payload = f'{{"query": "{QUERY}", "documents": ["山", "川"]}}'.encode()
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = (
            f"POST /v1/rerank HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode()
        sock.sendall(head + payload[:10])
        time.sleep(0.5)
        proc.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.proc.poll() is None  # still finishing the request in flight
        sock.sendall(payload[10:])
        answer = b""
        while b'"results"' not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")
    assert proc.proc.wait(60) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=2)
    assert "stopped" in proc.text()


@pytest.mark.slow
@pytest.mark.enable_socket
@pytest.mark.network
def test_a_port_in_use_is_exit_1(xlmr_ce_path: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "jp_rerank", "serve", "-m", str(xlmr_ce_path), "--port", str(port)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=_env(),
            timeout=180,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
