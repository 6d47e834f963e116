"""Ctrl-C during the Ray commands (issue 25, item 7): exit 130 and one line, at any moment of the job.

Each case starts the real ``jp-rerank`` in its own session (like a terminal's foreground job), waits for a moment
of the job (a log line, or a process of its own Ray), sends SIGINT to the whole process group as Ctrl-C does, and
checks: exit 130 (not the SIGSEGV Ray's exit hook gave when the interrupt hit ``ray.init``), the interrupted line
last and once, no traceback, the previous output unchanged and loadable, and no process of that Ray left. The
processes are found by an environment variable only this test's command (and so its Ray) carries.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jp_rerank.cli import main

pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("faiss")
psutil = pytest.importorskip("psutil")

pytestmark = [pytest.mark.ray, pytest.mark.slow]

if not sys.platform.startswith("linux"):  # pragma: no cover
    pytest.skip("process groups and /proc as on Linux", allow_module_level=True)

TAG = "JP_RERANK_INTERRUPT_TEST"
WAIT_S = 90.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, recombined_passages: Callable[[int], list[str]]) -> Path:
    """600 passages in about 10 work items of 0.02 MiB: the job runs a few seconds on 2 workers."""
    path = tmp_path_factory.mktemp("interrupt-corpus") / "corpus.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i, text in enumerate(recombined_passages(600)):
            fh.write(json.dumps({"id": f"p{i:04d}", "text": text}, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="module")
def previous(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of every case: an index built before (by the single-process command)."""
    out = tmp_path_factory.mktemp("interrupt-out") / "index"
    assert main(["index", str(corpus), "-o", str(out), "--bm25", "char2"]) == 0
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------- moments of the job


def _log(text: str) -> Callable[[subprocess.Popen[bytes], str], bool]:
    def seen(proc: subprocess.Popen[bytes], err: str) -> bool:
        return text in err

    return seen


def _descendants(proc: subprocess.Popen[bytes]) -> list[Any]:
    try:
        return list(psutil.Process(proc.pid).children(recursive=True))
    except psutil.Error:
        return []


def _driver_core_worker(proc: subprocess.Popen[bytes], err: str) -> bool:
    """Inside ``ray.init``: the driver has opened the log of its core worker (it connects next)."""
    try:
        return any("python-core-driver-" in f.path for f in psutil.Process(proc.pid).open_files())
    except psutil.Error:
        return False


def _actor_processes(proc: subprocess.Popen[bytes], err: str) -> bool:
    """The pool's actors are starting: a worker of this Ray names the map worker class."""
    for p in _descendants(proc):
        try:
            if "MapWorker" in " ".join(p.cmdline()):
                return True
        except psutil.Error:
            continue
    return False


MOMENTS: dict[str, Callable[[subprocess.Popen[bytes], str], bool]] = {
    "driver-core-worker": _driver_core_worker,  # the window that ended in SIGSEGV
    "actors-starting": _actor_processes,
    "work-running": _log("indexed 1/"),  # the first chunk merged, the others still on the actors
}
"""Moments of ``build-index``; ``embed-corpus`` (the same ``ray_session``) is interrupted as Ray starts."""


# --------------------------------------------------------------------------------------------- the runs


def _tagged(tag: str) -> list[str]:
    """Processes still running (zombies aside) whose environment carries ``tag``: this case's Ray."""
    left = []
    for p in psutil.process_iter(["pid", "name", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and p.environ().get(TAG) == tag:
                left.append(f"{p.pid} {' '.join(p.cmdline())[:80] or p.info['name']}")
        except psutil.Error:
            continue
    return left


def _interrupt(argv: list[str], when: Callable[[subprocess.Popen[bytes], str], bool]) -> tuple[int, str, str]:
    """Run ``jp-rerank -v ARGV``, send Ctrl-C (SIGINT to its process group) once ``when`` holds.

    Returns:
        The exit code, standard error and the tag of the run's processes.
    """
    tag = uuid.uuid4().hex
    env = {**os.environ, "PYTHONUNBUFFERED": "1", TAG: tag}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jp_rerank", "-v", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        # a shell's background job (`make test &`) starts with SIGINT ignored: give the child the default back
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    chunks: list[bytes] = []
    assert proc.stderr is not None
    stream = proc.stderr
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: stream.read1(4096), b"")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while not when(proc, b"".join(chunks).decode(errors="replace")):
            assert proc.poll() is None, "the command ended before the moment: " + b"".join(chunks).decode()[-2000:]
            assert time.monotonic() < deadline, "the moment never came: " + b"".join(chunks).decode()[-2000:]
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=WAIT_S)
    finally:
        if proc.poll() is None:  # pragma: no cover - only when the test failed
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=10)
    return code, b"".join(chunks).decode(errors="replace"), tag


def _check(code: int, err: str, tag: str, expected_line: str) -> None:
    assert code == 130, f"exit {code} (-11: SIGSEGV)\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    assert "Fatal Python error" not in err, err[-3000:]
    lines = err.rstrip().splitlines()
    assert lines[-1] == expected_line, err[-3000:]
    assert sum("interrupted" in line for line in lines) == 1, err[-3000:]
    assert _tagged(tag) == [], "Ray processes left"


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_ctrl_c_during_build_index_exits_130_keeps_the_index_and_leaves_no_ray(
    moment: str, corpus: Path, previous: Path, static_path: Path
) -> None:
    from jp_rerank.pipeline.folder import load_search_index

    before = _files(previous)
    argv = [
        "build-index", str(corpus), "-o", str(previous), "--overwrite", "--embedder", str(static_path),
        "--backend", "faiss-flat", "--bm25", "char2", "--device", "cpu", "--chunk-mb", "0.02", "--no-progress",
        "--ray-address", "local", "--num-cpus", "2", "--workers", "2",
    ]  # fmt: skip
    code, err, tag = _interrupt(argv, MOMENTS[moment])
    _check(code, err, tag, f"jp-rerank build-index: interrupted; the previous index in {previous} is kept")
    assert _files(previous) == before
    assert len(load_search_index(previous, reranker=None).retrieve("富士山の高さは？")) > 0


def test_ctrl_c_as_embed_corpus_starts_ray_exits_130(corpus: Path, static_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "vectors"
    argv = [
        "embed-corpus", str(corpus), "-o", str(out), "--embedder", str(static_path), "--device", "cpu",
        "--no-progress", "--ray-address", "local", "--num-cpus", "2", "--workers", "2",
    ]  # fmt: skip
    code, err, tag = _interrupt(argv, _log("connecting to Ray at"))  # logged right before ray.init
    _check(code, err, tag, f"jp-rerank embed-corpus: interrupted; nothing was written to {out}")
    assert not out.exists() or [p.name for p in out.iterdir()] == []
