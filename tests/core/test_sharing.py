"""Concurrent calls on one model share forward passes (issue 25, item 13): requests that arrive while the model is
busy are scored together in one engine call, each caller gets its own results, one bad request fails only itself."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jp_rerank import Reranker
from jp_rerank.rerank.sharing import SharedScoring

QUERY = "富士山の高さは何メートルですか？"
DOCS = ["富士山の標高は3776メートルです。", "京都には寺が多い。", "琵琶湖は日本一大きな湖です。", "短い。"]


def _wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the state was not reached"
        time.sleep(0.005)


class _Gate:
    """A score function whose first call waits until the test opens it; records every call."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.calls: list[tuple[Any, list[str]]] = []

    def __call__(self, queries: list[str], doc_lists: list[list[str]], key: Any) -> list[list[str]]:
        self.calls.append((key, list(queries)))
        if len(self.calls) == 1:
            assert self.open.wait(30)
        if "bad" in queries:
            raise ValueError("a bad request")
        return [[f"{q}:{d}" for d in docs] for q, docs in zip(queries, doc_lists, strict=True)]


def _first_held_the_rest_waiting(gate: _Gate, requests: list[tuple[Any, str]]) -> list[Any]:
    """Each request from its own thread: the first is held in the engine until every other one waits; then all run.

    Returns each caller's result (or the exception it got), in request order.
    """
    shared = SharedScoring(gate)
    out: list[Any] = [None] * len(requests)

    def call(i: int, key: Any, query: str) -> None:
        try:
            out[i] = shared.run([query], [[f"d{i}"]], key)
        except Exception as exc:
            out[i] = exc

    threads = [threading.Thread(target=call, args=(i, k, q)) for i, (k, q) in enumerate(requests)]
    threads[0].start()
    _wait_until(lambda: len(gate.calls) == 1)  # the first caller is scoring (and held there)
    for t in threads[1:]:
        t.start()
    _wait_until(lambda: len(shared._waiting) == len(requests) - 1)
    gate.open.set()
    for t in threads:
        t.join(30)
    return out


def test_requests_that_wait_are_scored_in_one_call_each_getting_its_own_results() -> None:
    gate = _Gate()
    out = _first_held_the_rest_waiting(gate, [("k", f"q{i}") for i in range(6)])
    assert [c[1] for c in gate.calls] == [["q0"], ["q1", "q2", "q3", "q4", "q5"]]  # 2 engine calls, not 6
    assert out == [[[f"q{i}:d{i}"]] for i in range(6)]


def test_only_requests_of_the_same_kind_are_combined_and_a_bad_one_fails_alone() -> None:
    gate = _Gate()
    out = _first_held_the_rest_waiting(gate, [("k", "q0"), ("k", "q1"), ("other", "q2"), ("k", "bad"), ("k", "q4")])
    assert isinstance(out[3], ValueError)
    assert [out[i] for i in (0, 1, 2, 4)] == [[["q0:d0"]], [["q1:d1"]], [["q2:d2"]], [["q4:d4"]]]
    keys = [c[0] for c in gate.calls]
    assert keys.count("other") == 1  # never mixed with another kind
    assert all(len(q) == 1 or k == "k" for k, q in gate.calls)


def test_a_request_larger_than_the_cap_still_runs_alone() -> None:
    calls: list[int] = []

    def score(queries: list[str], docs: list[list[str]], key: Any) -> list[int]:
        calls.append(sum(map(len, docs)))
        return [0] * len(queries)

    shared = SharedScoring(score, max_pairs=2)
    assert shared.run(["q"], [["a", "b", "c", "d"]], None) == [0]
    assert calls == [4]


def test_an_interrupt_in_the_scoring_caller_leaves_no_one_waiting_forever() -> None:
    started, release = threading.Event(), threading.Event()

    def score(queries: list[str], docs: list[list[str]], key: Any) -> list[int]:
        if queries == ["first"]:
            started.set()
            assert release.wait(30)
            raise KeyboardInterrupt
        return [1] * len(queries)

    shared = SharedScoring(score)
    results: dict[str, Any] = {}

    def call(name: str) -> None:
        try:
            results[name] = shared.run([name], [["d"]], None)
        except BaseException as exc:  # the interrupt is what is checked
            results[name] = exc

    first = threading.Thread(target=call, args=("first",))
    first.start()
    assert started.wait(30)
    second = threading.Thread(target=call, args=("second",))
    second.start()
    _wait_until(lambda: len(shared._waiting) == 1)
    release.set()
    first.join(30)
    second.join(30)
    assert isinstance(results["first"], KeyboardInterrupt)
    assert results["second"] == [1]  # scored by the next caller once the model was free


def test_concurrent_reranks_on_a_real_model_share_passes_and_match_solo_scores(xlmr_ce_path: Path) -> None:
    reranker = Reranker(xlmr_ce_path, device="cpu", backend="torch", precision="fp32", activation="none")
    solo = [reranker.score(f"{QUERY}{i}", DOCS[: 2 + i % 3]) for i in range(8)]
    scorer = reranker._load()
    calls: list[int] = []
    real = scorer.score_many
    gate = threading.Event()

    def counted(queries: list[str], *args: Any, **kwargs: Any) -> list[np.ndarray]:
        calls.append(len(queries))
        if len(calls) == 1:
            assert gate.wait(30)
        return real(queries, *args, **kwargs)

    scorer.shared._score = counted  # what the shared scoring calls: the scorer's score_many

    async def main(pool: ThreadPoolExecutor) -> list[np.ndarray]:  # asyncio tasks, as the adapters' async calls
        loop = asyncio.get_running_loop()
        tasks = [loop.run_in_executor(pool, reranker.score, f"{QUERY}{i}", DOCS[: 2 + i % 3]) for i in range(8)]
        gathered = asyncio.gather(*tasks)
        await asyncio.to_thread(_wait_until, lambda: len(calls) == 1 and len(scorer.shared._waiting) == 7)
        gate.set()
        return list(await gathered)

    with ThreadPoolExecutor(8) as pool:
        together = asyncio.run(main(pool))
    assert calls == [1, 7]  # 8 concurrent callers, 2 forward-pass groups
    for got, expected in zip(together, solo, strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-5)  # shared batches pad differently: float32 noise
        assert got.dtype == np.float32


@pytest.mark.parametrize("threads", [16])
def test_deep_copies_with_other_settings_share_the_model_but_keep_their_settings(
    xlmr_ce_path: Path, threads: int
) -> None:
    import copy

    base = Reranker(xlmr_ce_path, device="cpu", backend="torch", precision="fp32", activation="none")
    raw = base.score(QUERY, DOCS)
    other = copy.deepcopy(base)
    sigmoid = 1 / (1 + np.exp(-raw))
    results: list[tuple[str, np.ndarray]] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        if i % 2:
            name, got = "raw", base.score(QUERY, DOCS)
        else:
            name, got = "sig", other.score(QUERY, DOCS, activation="sigmoid")
        with lock:
            results.append((name, got))

    workers = [threading.Thread(target=call, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert len(results) == threads
    for name, got in results:
        np.testing.assert_allclose(got, raw if name == "raw" else sigmoid, atol=1e-5)
