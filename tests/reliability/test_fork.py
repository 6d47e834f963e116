"""Engines in children started with ``fork`` (issue 25, item 5): the README promises they work with multiprocessing.

Before the fix a child forked after the parent had scored hung in its first score (torch's OpenMP pool does not
survive a fork), and a child forked while another parent thread held the engine's lock waited on it forever. Each
scenario runs in its own Python process, so a hang or an abort is seen as a time-out or an exit code, never as a
stuck test run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork start method: Linux")

_SCENARIO = textwrap.dedent(
    """
    import json, multiprocessing as mp, sys, threading, time
    from jp_rerank import Reranker

    QUERY = "富士山の高さは？"
    DOCS = ["富士山は3776メートルです。", "京都には寺が多い。", "琵琶湖は大きい。"]
    reranker = Reranker(sys.argv[1], device="cpu", precision="fp32")
    expected = reranker.score(QUERY, DOCS).tolist()  # the parent has scored: torch's thread pool is up


    def child(queue):
        queue.put(reranker.score(QUERY, DOCS).tolist())


    def run_child():
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        proc = ctx.Process(target=child, args=(queue,))
        proc.start()
        got = queue.get(timeout=90)
        proc.join(timeout=30)
        return got, proc.exitcode


    results = {"expected": expected}
    results["after_scoring"] = run_child()

    held, release = threading.Event(), threading.Event()

    def holder():  # another thread is inside the engine at the moment of the fork
        with reranker._lock:
            held.set()
            release.wait(60)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(30)
    results["lock_held"] = run_child()
    release.set()
    t.join()

    stop = threading.Event()

    def scorer():
        while not stop.is_set():
            reranker.score(QUERY, DOCS)

    s = threading.Thread(target=scorer)
    s.start()
    results["while_scoring"] = [run_child() for _ in range(3)]
    stop.set()
    s.join()
    print(json.dumps(results))
    """
)


def test_children_forked_after_scoring_or_mid_score_score_like_the_parent(xlmr_ce_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _SCENARIO, str(xlmr_ce_path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]  # the parent neither hangs nor aborts (-6)
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = results["expected"]
    for got, exitcode in [results["after_scoring"], results["lock_held"], *results["while_scoring"]]:
        assert exitcode == 0
        assert got == pytest.approx(expected, abs=1e-5)
