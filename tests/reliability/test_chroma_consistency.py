"""Embedded Chroma under kills, concurrent writers and repeated opening (issue 12, items 3, 4 and 11).

* An upsert SIGKILLed at any point leaves every record at its old or its new version, never missing or mixed.
* ``records()`` and ``save()`` read by id, not by offset: while another client deletes and writes, every record
  stored for the whole read comes back exactly once; ``save()`` retries until the ids held still (a snapshot of
  one moment) or says clearly that the collection kept changing.
* ``close()`` / ``with`` / garbage collection release the client's file descriptors.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

chromadb = pytest.importorskip("chromadb")
from jp_rerank.index import ChromaIndex, load_index  # noqa: E402

pytestmark = pytest.mark.timeout(300)

CHILD = Path(__file__).with_name("_crash_child.py")
DIM = 8


def _load_child() -> Any:
    spec = importlib.util.spec_from_file_location("jp_rerank_crash_child_chroma", CHILD)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


child = _load_child()


def run_child(*args: str, kill_after: float | None = None) -> tuple[int, list[int], str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        if kill_after is not None:
            first = proc.stdout.readline()
            assert first.strip() == "ready", first + (proc.stderr.read() if proc.stderr else "")
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, -signal.SIGKILL), f"child failed ({proc.returncode}):\n{err}"
    done = [int(line.split()[1]) for line in out.splitlines() if line.startswith("done")]
    return proc.returncode, done, err


def versions_of(root: Path) -> set[int]:
    """Open the collection and check every record is whole at one version; return the versions seen."""
    index = ChromaIndex(DIM, path=root, collection_name="versions", embedder_id="toy-hash")
    try:
        ids = child.upsert_version(0)[0]
        assert len(index) == len(ids), f"{len(ids) - len(index)} records were lost"
        stored = index.client.get_collection("versions", embedding_function=None).get(
            ids=ids, include=["documents", "metadatas", "embeddings"]
        )
        assert sorted(stored["ids"]) == ids
        seen: set[int] = set()
        for id_, text, meta, vector in zip(
            stored["ids"], stored["documents"], stored["metadatas"], stored["embeddings"], strict=True
        ):
            v, i = int(meta["v"]), int(meta["i"])
            want_ids, want_vectors, want_texts, want_metas = child.upsert_version(v)
            assert want_ids[i] == id_
            assert (text, meta) == (want_texts[i], want_metas[i]), f"{id_} mixes versions: {text!r} {meta!r}"
            np.testing.assert_allclose(np.asarray(vector) / np.linalg.norm(vector), _unit(want_vectors[i]), atol=1e-5)
            seen.add(v)
        return seen
    finally:
        index.close()


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


# ------------------------------------------------------------------------------------------------ item 3


@pytest.mark.slow
def test_sigkill_at_any_point_of_an_upsert_loses_no_record(tmp_path: Path) -> None:
    root = tmp_path / "db"
    run_child("upsert", "chroma", str(root), "0", "none")
    assert versions_of(root) == {0}
    rng = random.Random(12)
    killed = 0
    for trial in range(4):
        before = max(versions_of(root))
        kill_after = rng.uniform(0.0, 0.3) if trial == 3 else None
        mode = "time" if kill_after is not None else "event"
        rc, done, _ = run_child("upsert", "chroma", str(root), str(trial * 101 + 5), mode, kill_after=kill_after)
        after = versions_of(root)  # every record whole, none lost
        killed += rc != 0
        assert min(after) >= before
        if done:
            assert min(after) >= done[-1]  # a reported upsert is on disk
    assert killed >= 3  # the kills really interrupted upserts


def test_upsert_is_one_native_upsert_per_chunk_and_replaces_whole_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = ChromaIndex(DIM, path=tmp_path / "db", collection_name="native")
    ids, vectors, texts, metas = child.upsert_version(1)  # odd: has the extra key
    index.add(ids, vectors, texts, metas)
    calls: list[str] = []
    target = index._collection
    for name in ("add", "delete", "upsert"):
        real = getattr(target, name)

        def spy(*args: Any, _name: str = name, _real: Callable[..., Any] = real, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(target, name, spy)
    new_ids, new_vectors, new_texts, new_metas = child.upsert_version(2)
    index.upsert([*new_ids[:10], "fresh"], np.vstack([new_vectors[:10], new_vectors[:1]]), [*new_texts[:10], "新"])
    assert calls == ["upsert"]  # never a delete followed by an add
    got = index.get([new_ids[0], new_ids[20], "fresh"])
    assert [(r.text, r.metadata) for r in got] == [(new_texts[0], {}), (texts[20], metas[20]), ("新", {})]
    index.upsert(new_ids[:1], new_vectors[:1], new_texts[:1], new_metas[:1])
    assert index.get(new_ids[:1])[0].metadata == new_metas[0]  # "odd" is gone: replaced, not merged
    index.close()


# ------------------------------------------------------------------------------------------------ item 4


class WriteBetweenReads:
    """Wraps a collection: runs ``write`` (another client's writes) right after chosen ``get`` calls."""

    def __init__(self, target: Any, write: Callable[[int], None], when: Callable[[int, dict[str, Any]], bool]):
        self._target = target
        self._write = write
        self._when = when
        self.gets = 0

    def get(self, *args: Any, **kwargs: Any) -> Any:
        result = self._target.get(*args, **kwargs)
        self.gets += 1
        if self._when(self.gets, kwargs):
            self._write(self.gets)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


def churned_collection(path: Path) -> tuple[ChromaIndex, ChromaIndex, list[str], list[str]]:
    """An index with 100 'churn' records stored first and 200 'stable' ones after, and a second client."""
    index = ChromaIndex(DIM, path=path, collection_name="churn")
    churn = [f"c{i:03d}" for i in range(100)]
    stable = [f"s{i:03d}" for i in range(200)]
    rng = np.random.default_rng(4)
    index.add(churn, rng.standard_normal((100, DIM)), [f"消える{i}" for i in range(100)])
    index.add(stable, rng.standard_normal((200, DIM)), [f"残る{i}" for i in range(200)])
    other = ChromaIndex(DIM, path=path, collection_name="churn")
    return index, other, churn, stable


def test_records_under_a_concurrent_delete_miss_no_live_record(tmp_path: Path) -> None:
    index, other, churn, stable = churned_collection(tmp_path / "db")
    index._collection = WriteBetweenReads(index._collection, lambda n: other.delete(churn), lambda n, kw: n == 1)
    got = [r.id for r in index.records(batch_size=50)]
    assert len(got) == len(set(got)), "a record came back twice"
    assert set(stable) <= set(got), f"{len(set(stable) - set(got))} live records were silently missed"
    assert set(got) <= set(stable) | set(churn)


def test_save_under_a_concurrent_delete_is_a_snapshot_of_one_moment(tmp_path: Path) -> None:
    index, other, churn, stable = churned_collection(tmp_path / "db")
    index._collection = WriteBetweenReads(index._collection, lambda n: other.delete(churn[:60]), lambda n, kw: n == 1)
    index.save(tmp_path / "snap")
    loaded = load_index(tmp_path / "snap", path=tmp_path / "copy")
    assert sorted(r.id for r in loaded.records()) == sorted([*churn[60:], *stable])
    assert [r.text for r in loaded.get(stable[:3])] == ["残る0", "残る1", "残る2"]


def test_save_of_a_collection_that_keeps_changing_fails_clearly(tmp_path: Path) -> None:
    index, other, churn, _ = churned_collection(tmp_path / "db")
    left = list(churn)

    def delete_one(_: int) -> None:
        other.delete([left.pop()])

    index._collection = WriteBetweenReads(index._collection, delete_one, lambda n, kw: kw.get("include") == [])
    with pytest.raises(RuntimeError, match=r"changed while it was being saved, 3 times in a row; save again"):
        index.save(tmp_path / "snap")
    assert not (tmp_path / "snap").exists()  # nothing half-written is left


@pytest.mark.slow
def test_records_while_another_thread_writes(tmp_path: Path) -> None:
    index, other, churn, stable = churned_collection(tmp_path / "db")
    stop = threading.Event()
    rng = np.random.default_rng(9)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            n = 0
            while not stop.is_set():
                part = churn[(n * 10) % 100 : (n * 10) % 100 + 10]
                other.delete(part)
                other.upsert(part, rng.standard_normal((len(part), DIM)), ["戻る"] * len(part))
                n += 1
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(5):
            got = [r.id for r in index.records(batch_size=20)]
            assert len(got) == len(set(got))
            assert set(stable) <= set(got)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors


# ------------------------------------------------------------------------------------------------ item 11


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
def test_opening_many_folders_leaks_no_file_descriptors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)

    def use(index: ChromaIndex) -> None:
        index.add(["a", "b"], rng.standard_normal((2, DIM)), ["一", "二"])
        assert len(index) == 2

    with ChromaIndex(DIM, path=tmp_path / "warm") as warm:  # one-off descriptors (libraries, logs)
        use(warm)
        warm.save(tmp_path / "snap")
    gc.collect()
    baseline = open_descriptors()
    for i in range(3):
        with ChromaIndex(DIM, path=tmp_path / f"db{i}") as index:
            use(index)
    for i in range(3):  # no close(): garbage collection releases the client too
        use(ChromaIndex(DIM, path=tmp_path / f"gc{i}"))
        gc.collect()
    for i in range(3):  # "per loaded folder"
        with load_index(tmp_path / "snap", path=tmp_path / f"loaded{i}") as loaded:
            assert len(loaded) == 2
    gc.collect()
    assert open_descriptors() - baseline <= 4  # was about 11 per folder


def test_a_closed_index_refuses_work_and_leaves_a_given_client_open(tmp_path: Path) -> None:
    index = ChromaIndex(DIM, path=tmp_path / "db")
    twin = ChromaIndex(DIM, path=tmp_path / "db")  # same folder: shares chromadb's system
    index.add(["a"], np.ones((1, DIM)), ["一"])
    index.close()
    index.close()  # idempotent
    assert index.closed
    assert "closed" in repr(index)
    with pytest.raises(RuntimeError, match="ChromaIndex 'jp_rerank' is closed"):
        len(index)
    with pytest.raises(RuntimeError, match="is closed"):
        index.search(np.ones(DIM), k=1)
    assert [h.id for h in twin.search(np.ones(DIM), k=1)] == ["a"]  # the other client still works
    twin.close()
    client = chromadb.PersistentClient(
        path=str(tmp_path / "own"), settings=chromadb.config.Settings(anonymized_telemetry=False)
    )
    with ChromaIndex(DIM, client=client) as borrowed:
        borrowed.add(["b"], np.ones((1, DIM)), ["二"])
    assert client.get_collection("jp_rerank").count() == 1  # the caller's client was not closed
