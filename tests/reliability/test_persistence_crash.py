"""Crash safety of saved indexes: SIGKILL at random points of a save or of a streaming ingestion, in a subprocess.

Every trial must leave a directory that loads and holds exactly the previous or the next state (never a mix, never
an unreadable index), and the next save must clean up what the killed one left behind. Damaged files give a clear
error, never a wrong answer, and loading never unpickles anything.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from jp_rerank.index import IndexCorruptedError, VectorIndex, load_index, read_snapshot

pytestmark = pytest.mark.timeout(600)

CHILD = Path(__file__).with_name("_crash_child.py")


def _load_child() -> ModuleType:
    spec = importlib.util.spec_from_file_location("jp_rerank_crash_child", CHILD)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


child = _load_child()


def run_child(*args: str, kill_after: float | None = None, timeout: float = 120) -> tuple[int, list[int]]:
    """Run the child; with ``kill_after``, SIGKILL it that many seconds after it reports ``ready``.

    Returns:
        The exit code (``-9`` when killed) and the generations/positions it reported as done.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        if kill_after is not None:
            first = proc.stdout.readline()
            assert first.strip() == "ready", first + (proc.stderr.read() if proc.stderr else "")
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, -signal.SIGKILL), f"child failed ({proc.returncode}):\n{err}"
    done = [int(line.split()[1]) for line in out.splitlines() if line.startswith("done")]
    return proc.returncode, done


def generation_of(root: Path, kind: str = "vector") -> int:
    """Load the index at ``root`` (it must load) and check it is exactly one generation; return that generation."""
    if kind == "bm25":
        from jp_rerank.lexical import BM25Index

        bm25 = BM25Index.load(root)
        k = int(bm25.ids[0].split("-")[0][1:])
        texts, ids = child.bm25_generation(k)
        assert bm25.ids == tuple(ids)
        fresh = BM25Index(tokenizer="char2").index(texts, ids=ids)
        queries = ["東京", "大阪について", f"世代{k}"]
        assert bm25.search_many(queries, k=5) == fresh.search_many(queries, k=5)
        return k
    index = load_index(root)
    k = int(next(iter(index.records())).metadata["k"])
    expected = child.make_vector_index("exact", k)
    assert_same_index(index, expected)
    return k


def assert_same_index(got: VectorIndex, want: VectorIndex) -> None:
    """Same records (ids, texts, metadata) and the same search results for a few probe vectors."""
    assert sorted(got.records(), key=lambda r: r.id) == sorted(want.records(), key=lambda r: r.id)
    probes = np.random.default_rng(0).standard_normal((4, child.DIM)).astype(np.float32)
    for g, w in zip(got.search_many(probes, k=5), want.search_many(probes, k=5), strict=True):
        assert [h.id for h in g] == [h.id for h in w]
        np.testing.assert_allclose([h.score for h in g], [h.score for h in w], atol=1e-5)


def assert_clean_after_next_save(root: Path, kind: str) -> None:
    """A completed save removes every leftover of the killed ones."""
    rc, done = run_child("save", kind, str(root), "0", "none")
    assert rc == 0
    assert generation_of(root, kind) == done[-1]
    snapshot, _ = read_snapshot(root)
    assert sorted(p.name for p in root.iterdir()) == sorted(["CURRENT", snapshot.name])


# ------------------------------------------------------------------------------------------------ saves


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["exact", "faiss", "bm25"])
def test_sigkill_at_random_calls_of_a_save_leaves_old_or_new_state(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "index"
    run_child("save", kind, str(root), "0", "none")
    outcomes = {"old": 0, "new": 0}
    for trial in range(6):
        before = generation_of(root, kind)
        rc, done = run_child("save", kind, str(root), str(1000 * trial + 7), "event")
        after = generation_of(root, kind)
        assert after in (before, before + 1), f"trial {trial}: generation {before} became {after}"
        if rc == 0:
            assert done == [before + 1]
            assert after == before + 1
        outcomes["new" if after == before + 1 else "old"] += 1
    assert outcomes["old"] > 0  # the kills really interrupted saves
    assert_clean_after_next_save(root, kind)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["exact", "faiss-hnsw", "bm25"])
def test_sigkill_before_each_rename_of_a_save_leaves_old_or_new_state(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "index"
    run_child("save", kind, str(root), "0", "none")
    n = 0
    while True:  # kill before the 1st, 2nd... rename/replace until a save completes
        before = generation_of(root, kind)
        rc, _ = run_child("save", kind, str(root), str(n), "rename")
        after = generation_of(root, kind)
        assert after in (before, before + 1), f"killed before rename {n}: generation {before} became {after}"
        if rc == 0:
            assert after == before + 1
            break
        n += 1
    assert n >= 2  # the snapshot rename and the CURRENT replace were both interrupted once
    assert_clean_after_next_save(root, kind)


@pytest.mark.slow
def test_sigkill_at_random_times_during_repeated_saves(tmp_path: Path) -> None:
    root = tmp_path / "index"
    run_child("save", "faiss", str(root), "0", "none")
    rng = random.Random(11)
    for _ in range(6):
        before = generation_of(root)
        _, done = run_child("save", "faiss", str(root), "0", "time", kill_after=rng.uniform(0.0, 0.4))
        after = generation_of(root)
        last = done[-1] if done else before
        assert last <= after <= last + 1, f"last completed save {last}, loaded generation {after}"
    assert_clean_after_next_save(root, "faiss")


# ------------------------------------------------------------------------------------------------ ingestion


def expected_prefix(index: VectorIndex) -> list[str]:
    """Check the index holds exactly the first ``m`` streamed records (whole batches), with their texts."""
    stream = child.stream()
    stored = sorted(r.id for r in index.records())
    m = len(stored)
    assert stored == [r[0] for r in stream[:m]], "the index is not a prefix of the stream"
    for rec in index.get(stored):
        i = int(rec.metadata["i"])
        assert rec.text == stream[i][1]
    return stored


@pytest.mark.slow
def test_sigkill_during_checkpointed_streaming_ingestion_then_resume(tmp_path: Path) -> None:
    stream = child.stream()
    rng = random.Random(3)
    partial = 0
    for attempt in range(2):
        root = tmp_path / f"index-{attempt}"
        for mode in ("event", "time", "event"):  # killed three times, each run resuming the previous one
            before = len(load_index(root)) if (root / "CURRENT").exists() else 0
            kill_after = rng.uniform(0.0, 0.2) if mode == "time" else None
            _, done = run_child("ingest", "faiss", str(root), str(attempt * 10 + before), mode, kill_after=kill_after)
            if not (root / "CURRENT").exists():  # killed before the first checkpoint committed: no index yet
                assert not done
                with pytest.raises(FileNotFoundError, match="is not a saved jp-rerank index"):
                    load_index(root)
                continue
            stored = expected_prefix(load_index(root))
            assert len(stored) % child.BATCH == 0 or len(stored) == len(stream)  # whole batches only
            assert len(stored) >= before
            if done:
                assert len(stored) >= done[-1] + 1  # every reported checkpoint is on disk
            partial += 0 < len(stored) < len(stream)
        rc, _ = run_child("ingest", "faiss", str(root), "0", "time")  # resume to the end
        assert rc == 0
        final = load_index(root)
        assert expected_prefix(final) == [r[0] for r in stream]
        vectors = child.embed([r[1] for r in stream])
        assert [h[0].id for h in final.search_many(vectors[:5], k=1)] == [r[0] for r in stream[:5]]
    assert partial > 0  # some kill really landed mid-ingestion


@pytest.mark.slow
def test_sigkill_during_embedded_chroma_ingestion_then_resume_without_duplicates(tmp_path: Path) -> None:
    pytest.importorskip("chromadb")
    from jp_rerank.index import ChromaIndex

    stream = child.stream()
    rng = random.Random(5)
    partial = 0
    for attempt in range(2):
        root = tmp_path / f"chroma-{attempt}"
        for mode in ("event", "time"):  # killed twice, the second run resuming the first
            kill_after = rng.uniform(0.0, 0.25) if mode == "time" else None
            run_child("ingest", "chroma", str(root), str(attempt), mode, kill_after=kill_after)
            index = ChromaIndex(child.DIM, path=root, embedder_id="toy-hash")  # opens after every kill
            stored = sorted(r.id for r in index.records())
            assert set(stored) <= {r[0] for r in stream}
            assert len(stored) == len(set(stored)) == len(index)
            for rec in index.get(stored):
                assert rec.text == stream[int(rec.metadata["i"])][1]
            partial += 0 < len(stored) < len(stream)
            del index
        rc, _ = run_child("ingest", "chroma", str(root), "0", "time")  # resume to the end
        assert rc == 0
        final = ChromaIndex(child.DIM, path=root, embedder_id="toy-hash")
        assert len(final) == len(stream)  # upsert by id: no duplicates
        assert sorted(r.id for r in final.records()) == [r[0] for r in stream]
        vectors = child.embed([r[1] for r in stream])
        assert [h[0].id for h in final.search_many(vectors[:5], k=1)] == [r[0] for r in stream[:5]]
    assert partial > 0  # some kill really landed mid-ingestion


# ------------------------------------------------------------------------------------------------ damage


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    root = tmp_path / "index"
    child.make_vector_index("faiss", 5).save(root)
    return root


def _damage(path: Path, how: str, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        del data[rng.randrange(len(data)) :]
    elif how == "flip":
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif how == "zero-tail":  # what a torn write can look like: the right size, zeros at the end
        start = rng.randrange(len(data))
        data[start:] = bytes(len(data) - start)
    elif how == "append":
        data += b"\n{}"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncate", "flip", "zero-tail", "append"])
@pytest.mark.parametrize("kind", ["faiss", "bm25"])
def test_every_damaged_file_gives_a_clear_error_never_a_wrong_answer(tmp_path: Path, kind: str, how: str) -> None:
    from jp_rerank.lexical import BM25Index

    root = tmp_path / "index"
    if kind == "bm25":
        texts, ids = child.bm25_generation(5)
        BM25Index(tokenizer="char2").index(texts, ids=ids).save(root)
        load: Any = BM25Index.load
    else:
        child.make_vector_index(kind, 5).save(root)
        load = load_index
    snapshot, manifest = read_snapshot(root)
    names = [*manifest["files"], "manifest.json"]
    rng = random.Random(how)
    pristine = {name: (snapshot / name).read_bytes() for name in names}
    for name in names:
        for _ in range(5):
            _damage(snapshot / name, how, rng)
            if (snapshot / name).read_bytes() == pristine[name]:
                continue  # e.g. a zero tail over bytes that were already zero
            with pytest.raises(IndexCorruptedError, match=r"manifest|SHA-256|bytes|CURRENT"):
                load(root)
            (snapshot / name).write_bytes(pristine[name])
    assert generation_of(root, "bm25" if kind == "bm25" else "vector") == 5  # restored files load again


def test_damaged_current_pointer_is_a_clear_error(saved: Path) -> None:
    current = saved / "CURRENT"
    good = current.read_text(encoding="utf-8")
    for bad in ("", "{", '{"snapshot": "snapshot-missing", "manifest_sha256": "0"}', good[: len(good) // 2]):
        current.write_text(bad, encoding="utf-8")
        with pytest.raises(IndexCorruptedError):
            load_index(saved)
    current.unlink()
    with pytest.raises(FileNotFoundError, match="is not a saved jp-rerank index"):
        load_index(saved)


def _forge(snapshot: Path, name: str, payload: bytes) -> None:
    """Replace a snapshot file and update the manifest and CURRENT checksums, as an attacker could."""
    import hashlib

    (snapshot / name).write_bytes(payload)
    manifest_path = snapshot / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["files"][name] = {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    pointer = snapshot.parent / "CURRENT"
    sha = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    pointer.write_text(json.dumps({"snapshot": snapshot.name, "manifest_sha256": sha}), encoding="utf-8")


class _Trap:
    """Unpickling this object creates a marker file (what a malicious pickle could do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("kind", ["exact", "faiss-hnsw", "bm25"])
def test_loading_never_unpickles(tmp_path: Path, kind: str) -> None:
    import io
    import pickle

    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    np.save(buf, np.array([_Trap(marker)], dtype=object), allow_pickle=True)
    evil_npy = buf.getvalue()
    root = tmp_path / "index"
    if kind == "bm25":
        from jp_rerank.lexical import BM25Index

        BM25Index(tokenizer="char2").index(["東京", "大阪"]).save(root)
        snapshot, _ = read_snapshot(root)
        with np.load(snapshot / "arrays.npz", allow_pickle=False) as arrays:
            names = list(arrays.files)
        evil = io.BytesIO()
        np.savez(evil, **{n: np.array([_Trap(marker)], dtype=object) for n in names})
        _forge(snapshot, "arrays.npz", evil.getvalue())
        with pytest.raises(IndexCorruptedError, match="pickle"):
            BM25Index.load(root)
    else:
        child.make_vector_index(kind, 3).save(root)
        snapshot, manifest = read_snapshot(root)
        target = "vectors.npy" if kind == "exact" else "tombstones.npy"  # HNSW keeps deleted labels in an .npy
        assert target in manifest["files"]
        _forge(snapshot, target, evil_npy)
        with pytest.raises((IndexCorruptedError, ValueError), match="pickle"):
            load_index(root)
    assert not marker.exists()
    with pytest.raises(ValueError, match="pickle"):  # sanity: the payload really is a pickle numpy refuses
        np.load(io.BytesIO(evil_npy), allow_pickle=False)
    assert pickle.loads(pickle.dumps(_Trap(marker))) is None  # and it would run if unpickled:
    assert marker.exists()
