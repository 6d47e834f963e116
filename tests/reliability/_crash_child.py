"""Child process for the crash tests: writes an index and gets SIGKILLed part-way (run as a script, never imported).

Usage::

    python _crash_child.py save KIND ROOT SEED MODE
    python _crash_child.py ingest KIND ROOT SEED MODE
    python _crash_child.py upsert chroma ROOT SEED MODE

``KIND`` is a vector backend (``exact``, ``faiss``, ``faiss-hnsw``), ``bm25``, or ``chroma`` (embedded Chroma at
``ROOT``, ingest only). ``MODE`` says where the kill comes from:

* ``event``: the child counts the Python and C calls a dry run of the write makes (into a copy of ``ROOT``),
  picks one uniformly at random (from ``SEED``) and kills itself with SIGKILL right there, so every step of the
  write (each file write, fsync, rename, cleanup...) is hit over many trials;
* ``time``: the child writes in a loop and the parent kills it after a random delay (which can land inside C code);
* ``rename``: the child kills itself just before the ``SEED``-th rename/replace of the save (0-based), the
  moments where a non-atomic save would leave a missing or mixed index;
* ``none``: no kill (``save`` writes one generation; used to set up the first state).

``save`` moves the state at ``ROOT`` from generation ``k`` to ``k + 1``: every generation is a deterministic
corpus (see :func:`generation`) whose records carry ``k`` in their metadata (vector indexes) or ids (BM25).
``ingest`` streams the deterministic corpus of :func:`stream` into the index in batches, resuming where the
stored state ends (by id, with ``upsert``), and checkpoints (saves) after each batch for non-Chroma kinds.
``upsert`` rewrites every record of an embedded Chroma collection at ``ROOT`` (created at version 0 with mode
``none``) to versions 1, 2, 3... (see :func:`upsert_version`), one ``upsert`` call per version.
The child prints ``ready`` once set up and ``done <k>`` after each completed save, batch or upsert.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DIM = 8
STREAM_SIZE = 120
BATCH = 20


def generation(k: int) -> tuple[list[str], np.ndarray, list[str], list[dict[str, Any]]]:
    """The records of generation ``k``: ids, vectors, texts, metadata (sizes and contents depend on ``k``)."""
    n = 30 + (k * 7) % 40
    rng = np.random.default_rng(k)
    ids = [f"g{k % 3}-{i}" for i in range(n)]
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    texts = [f"世代{k}の文書{i}：東京の天気は晴れ。" for i in range(n)]
    metas: list[dict[str, Any]] = [{"k": k, "i": i} for i in range(n)]
    return ids, vectors, texts, metas


def stream() -> list[tuple[str, str, dict[str, Any]]]:
    """The corpus streamed by ``ingest``: ``STREAM_SIZE`` records in a fixed order."""
    return [(f"s{i:04d}", f"ストリーム文書{i}：大阪の名物はたこ焼き。", {"i": i}) for i in range(STREAM_SIZE)]


def embed(texts: list[str]) -> np.ndarray:
    """A deterministic toy embedder (a hash of the text), so the parent can recompute every vector."""
    out = np.empty((len(texts), DIM), dtype=np.float32)
    for row, text in enumerate(texts):
        seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
        out[row] = np.random.default_rng(seed).standard_normal(DIM)
    return out


UPSERT_N = 60


def upsert_version(v: int) -> tuple[list[str], np.ndarray, list[str], list[dict[str, Any]]]:
    """Version ``v`` of the ``upsert`` collection: the same ids, texts, vectors and metadata naming ``v``.

    Odd versions carry one more metadata key, so a replacement must also remove keys.
    """
    ids = [f"u{i:03d}" for i in range(UPSERT_N)]
    texts = [f"版{v}の記録{i}：名古屋の城。" for i in range(UPSERT_N)]
    metas: list[dict[str, Any]] = [{"v": v, "i": i, **({"odd": True} if v % 2 else {})} for i in range(UPSERT_N)]
    return ids, embed(texts), texts, metas


def upsert_versions(root: Path, seed: int, mode: str) -> None:
    from jp_rerank.index import ChromaIndex

    def open_index(path: Path) -> Any:
        return ChromaIndex(DIM, path=path, collection_name="versions", embedder_id="toy-hash")

    index = open_index(root)
    if mode == "none":
        index.upsert(*upsert_version(0))
        print("done 0", flush=True)
        return
    start = max(int(r.metadata["v"]) for r in index.records()) + 1
    print("ready", flush=True)
    if mode == "time":
        for v in range(start, start + 10_000):
            index.upsert(*upsert_version(v))
            print("done", v, flush=True)
        return

    # count the calls of the upsert alone (not of opening a client) on two copies, the first one warming caches
    scratch = Path(tempfile.mkdtemp(prefix="crash-dry-"))
    try:
        counts = []
        for attempt in range(2):
            shutil.copytree(root, scratch / f"run{attempt}")
            counts.append(count_calls(open_index(scratch / f"run{attempt}").upsert, *upsert_version(start)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    kill_after_calls(lambda: index.upsert(*upsert_version(start)), random.Random(seed).randrange(counts[-1]))
    print("done", start, flush=True)


def bm25_generation(k: int) -> tuple[list[str], list[str]]:
    """Generation ``k`` of a BM25 index: texts and ids (each id names ``k``)."""
    n = 20 + (k * 5) % 30
    return [f"世代{k}の文書{i}は東京と大阪について書かれている。" for i in range(n)], [f"k{k}-{i}" for i in range(n)]


def bm25_generation_of(root: Path) -> int:
    from jp_rerank.lexical import BM25Index

    return int(BM25Index.load(root).ids[0].split("-")[0][1:])


def vector_generation_of(root: Path) -> int:
    from jp_rerank.index import load_index

    index = load_index(root)
    return int(next(iter(index.records())).metadata["k"])


def make_vector_index(kind: str, k: int) -> Any:
    from jp_rerank.index import make_index

    index = make_index(kind, DIM, embedder_id="toy-hash")
    ids, vectors, texts, metas = generation(k)
    index.add(ids, vectors, texts, metas)
    index.delete(ids[: k % 4])  # exercise deletions (faiss tombstones) too
    return index


def kill_at_random_call(action: Callable[[], None], dry_run: Callable[[Path], None], root: Path, seed: int) -> None:
    """Run ``action`` and SIGKILL this process at a uniformly random Python/C call of it.

    The calls are counted on a dry run into a fresh copy of ``root``, after a first dry run (into another copy)
    has done the one-off work the real run will not repeat (lazy imports, caches), so the counts match.
    """
    count = 0

    def counter(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    scratch = Path(tempfile.mkdtemp(prefix="crash-dry-"))
    try:
        for attempt in range(2):
            copy = scratch / f"run{attempt}"
            if root.exists():
                shutil.copytree(root, copy)
            if attempt:
                sys.setprofile(counter)
            dry_run(copy)
            sys.setprofile(None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    target = random.Random(seed).randrange(max(count, 1))
    seen = 0

    def killer(frame: Any, event: str, arg: Any) -> None:
        nonlocal seen
        if event in ("call", "c_call"):
            seen += 1
            if seen > target:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.setprofile(killer)
    action()
    sys.setprofile(None)


def count_calls(fn: Callable[..., Any], *args: Any) -> int:
    """How many Python/C calls ``fn(*args)`` makes."""
    count = 0

    def counter(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(counter)
    try:
        fn(*args)
    finally:
        sys.setprofile(None)
    return count


def kill_after_calls(action: Callable[[], None], target: int) -> None:
    """Run ``action`` and SIGKILL this process at its ``target``-th Python/C call."""
    seen = 0

    def killer(frame: Any, event: str, arg: Any) -> None:
        nonlocal seen
        if event in ("call", "c_call"):
            seen += 1
            if seen > target:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.setprofile(killer)
    action()
    sys.setprofile(None)


def kill_before_rename(action: Callable[[], None], n: int) -> None:
    """Run ``action`` and SIGKILL this process just before its ``n``-th (0-based) ``os.rename``/``os.replace``."""
    seen = 0

    def killer(frame: Any, event: str, arg: Any) -> None:
        nonlocal seen
        if event == "c_call" and arg in (os.rename, os.replace):
            if seen == n:
                os.kill(os.getpid(), signal.SIGKILL)
            seen += 1

    sys.setprofile(killer)
    action()
    sys.setprofile(None)


def save_once(kind: str, root: Path, seed: int, mode: str) -> None:
    if kind == "bm25":
        from jp_rerank.lexical import BM25Index

        k = bm25_generation_of(root) if (root / "CURRENT").exists() else 0

        def build(j: int) -> BM25Index:
            texts, ids = bm25_generation(j)
            return BM25Index(tokenizer="char2").index(texts, ids=ids)
    else:
        k = vector_generation_of(root) if (root / "CURRENT").exists() else 0

        def build(j: int) -> Any:
            return make_vector_index(kind, j)

    print("ready", flush=True)
    if mode == "time":
        while True:
            k += 1
            build(k).save(root)
            print("done", k, flush=True)
    index = build(k + 1)
    if mode == "none":
        index.save(root)
        print("done", k + 1, flush=True)
        return
    if mode == "rename":
        kill_before_rename(lambda: index.save(root), seed)
        print("done", k + 1, flush=True)
        return
    kill_at_random_call(lambda: index.save(root), index.save, root, seed)
    print("done", k + 1, flush=True)


def ingest_stream(kind: str, root: Path, seed: int, mode: str) -> None:
    from jp_rerank.index import ChromaIndex, ingest, load_index, make_index

    records = stream()
    if kind == "chroma":
        index: Any = ChromaIndex(DIM, path=root, embedder_id="toy-hash")
    elif (root / "CURRENT").exists():  # a first save killed before its commit leaves no CURRENT
        index = load_index(root)
    else:
        index = make_index(kind, DIM, embedder_id="toy-hash")
    todo = [r for r in records if r[0] not in index]
    print("ready", flush=True)

    def run(target: Any, target_root: Path, report: Callable[[int], None]) -> None:
        for start in range(0, len(todo), BATCH):
            batch = todo[start : start + BATCH]
            ingest(target, batch, embed, batch_size=BATCH, mode="upsert", progress=False)
            if kind != "chroma":
                target.save(target_root)
            report(batch[-1][2]["i"])

    def announce(i: int) -> None:
        print("done", i, flush=True)

    if mode == "time":
        run(index, root, announce)
        return

    def dry_run(copy: Path) -> None:
        if kind == "chroma":
            dry: Any = ChromaIndex(DIM, path=copy, embedder_id="toy-hash")
        elif (copy / "CURRENT").exists():
            dry = load_index(copy)
        else:
            dry = make_index(kind, DIM, embedder_id="toy-hash")
        run(dry, copy, lambda i: None)

    kill_at_random_call(lambda: run(index, root, announce), dry_run, root, seed)


def main() -> None:
    command, kind, root, seed, mode = sys.argv[1:6]
    if command == "save":
        save_once(kind, Path(root), int(seed), mode)
    elif command == "ingest":
        ingest_stream(kind, Path(root), int(seed), mode)
    elif command == "upsert" and kind == "chroma":
        upsert_versions(Path(root), int(seed), mode)
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
