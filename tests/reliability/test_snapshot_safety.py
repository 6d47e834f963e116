"""Saved index folders under attack and under contention (issue 12, items 1, 2 and 6).

* A save deletes only what a save wrote (recorded in its ledger), never a user's file that merely looks like one
  of ours (``snapshot-2024-05-01/``, ``.tmp-notes``), also after a killed save and through ``jp-rerank index``.
* Saves into one folder from several threads or processes take turns (a lock file): the folder always loads, and
  a waiting save times out with a clear error.
* Loading reads nothing outside the folder: ``CURRENT`` naming another folder or an absolute path, manifest entries
  leaving the snapshot, links, oversized pointer or manifest files and malformed manifests all raise
  :class:`IndexCorruptedError`, and ``jp-rerank search`` refuses such a folder instead of serving another's passages.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jp_rerank import snapshots
from jp_rerank.cli import EXIT_OK, EXIT_USAGE, main
from jp_rerank.errors import IndexCorruptedError
from jp_rerank.index import ExactIndex, FaissIndex, VectorIndex, load_index, read_snapshot
from jp_rerank.lexical import BM25Index

pytestmark = pytest.mark.timeout(300)

CHILD = Path(__file__).with_name("_crash_child.py")
DIM = 8


def _load_child() -> Any:
    spec = importlib.util.spec_from_file_location("jp_rerank_crash_child_snapshots", CHILD)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


child = _load_child()


def vector_index(kind: str, tag: str, n: int = 20) -> VectorIndex:
    index: VectorIndex = ExactIndex(DIM, embedder_id="toy") if kind == "exact" else FaissIndex(DIM, embedder_id="toy")
    rng = np.random.default_rng(sum(tag.encode()))
    index.add([f"{tag}-{i}" for i in range(n)], rng.standard_normal((n, DIM)), [f"{tag}の文書{i}" for i in range(n)])
    return index


def tag_of(root: Path) -> str:
    """The one generation tag of every record of the (loadable) index at ``root``."""
    index = load_index(root)
    tags = {r.id.split("-")[0] for r in index.records()}
    assert len(tags) == 1, tags
    return tags.pop()


def user_files(root: Path) -> dict[str, bytes]:
    """A user's own files inside an index folder, named like the index's own (the names the old cleanup removed)."""
    files = {
        "snapshot-2024-05-01/notes.txt": "五月の控え".encode(),
        "snapshot-backup/manifest.json": b'{"mine": true}',
        ".tmp-draft": b"draft",
        ".tmp-20240501.current": b"mine too",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def assert_kept(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (root / name).read_bytes() == data, f"{name} was deleted or changed"


def own_entries(root: Path, files: dict[str, bytes]) -> list[str]:
    """Entries of ``root`` that are not the user's."""
    users = {name.split("/")[0] for name in files}
    return sorted(p.name for p in root.iterdir() if p.name not in users)


# ------------------------------------------------------------------------------------------------ item 1


@pytest.mark.parametrize("kind", ["exact", "faiss", "bm25", "chroma"])
def test_a_save_never_deletes_the_users_own_files(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "index"
    if kind == "bm25":
        BM25Index("char2").index(["東京の天気", "大阪の食べ物"], ids=["a", "b"]).save(root)
    elif kind == "chroma":
        pytest.importorskip("chromadb")
        from jp_rerank.index import ChromaIndex

        chroma = ChromaIndex(DIM, path=tmp_path / "db")
        chroma.add(["c-0"], np.ones((1, DIM)), ["文書"])
        chroma.save(root)
    else:
        vector_index(kind, "old").save(root)
    files = user_files(root)
    if kind == "bm25":
        BM25Index("char2").index(["京都の寺"], ids=["c"]).save(root)
        assert BM25Index.load(root).ids == ("c",)
    elif kind == "chroma":
        chroma.upsert(["c-1"], np.ones((1, DIM)), ["二つ目"])
        chroma.save(root)
        assert len(load_index(root, path=tmp_path / "db2")) == 2
    else:
        vector_index(kind, "new").save(root)
        assert tag_of(root) == "new"
    assert_kept(root, files)
    snapshot, _ = read_snapshot(root)
    assert own_entries(root, files) == sorted(["CURRENT", snapshot.name])  # the previous snapshot is gone


@pytest.mark.slow
def test_killed_saves_are_cleaned_up_next_time_but_the_users_files_stay(tmp_path: Path) -> None:
    root = tmp_path / "index"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(CHILD), "save", "exact", str(root), "0", "none"], env=env, check=True)
    files = user_files(root)
    leftovers = 0
    for n in range(10):  # SIGKILL the child just before its n-th rename/replace, until a save completes
        proc = subprocess.run(
            [sys.executable, str(CHILD), "save", "exact", str(root), str(n), "rename"], env=env, capture_output=True
        )
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.decode()
        leftovers += len(own_entries(root, files)) > 2
        child.make_vector_index("exact", 100 + n).save(root)  # the next save removes what the killed one wrote
        assert child.vector_generation_of(root) == 100 + n
        assert_kept(root, files)
        snapshot, _ = read_snapshot(root)
        assert own_entries(root, files) == sorted(["CURRENT", snapshot.name])
        if proc.returncode == 0:
            break
    assert leftovers >= 2  # the kills really left files of the index behind


def test_jp_rerank_index_overwrite_keeps_the_users_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text(json.dumps({"id": "a", "text": "富士山は日本一高い山です。"}, ensure_ascii=False) + "\n", "utf-8")
    out = tmp_path / "idx"
    assert main(["index", str(src), "-o", str(out), "--bm25", "char2"]) == EXIT_OK
    files = user_files(out)
    assert main(["index", str(src), "-o", str(out), "--bm25", "char2", "--overwrite"]) == EXIT_OK
    capsys.readouterr()
    assert_kept(out, files)
    assert main(["search", str(out), "富士山", "-m", "none", "--json"]) == EXIT_OK
    assert [r["id"] for r in json.loads(capsys.readouterr().out)["results"]] == ["a"]


def test_a_failed_first_save_leaves_nothing_behind(tmp_path: Path) -> None:
    root = tmp_path / "fresh"

    def payload(folder: Path) -> None:
        (folder / "part.bin").write_bytes(b"half")
        raise OSError("disk full (simulated)")

    with pytest.raises(OSError, match="disk full"):
        snapshots.write_snapshot(root, {"backend": "demo"}, payload)
    assert not root.exists()


# ------------------------------------------------------------------------------------------------ item 2


def test_saves_from_many_threads_take_turns_and_the_folder_always_loads(tmp_path: Path) -> None:
    root = tmp_path / "index"
    indexes = {tag: vector_index("exact", tag) for tag in ("left", "right")}
    for round_ in range(25):
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def save(tag: str, barrier: threading.Barrier = barrier, errors: list[BaseException] = errors) -> None:
            try:
                barrier.wait()
                indexes[tag].save(root)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=save, args=(tag,)) for tag in indexes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, f"round {round_}: {errors[0]!r}"
        assert tag_of(root) in indexes, f"round {round_}"
        snapshot, _ = read_snapshot(root)
        assert sorted(p.name for p in root.iterdir()) == sorted(["CURRENT", snapshot.name]), f"round {round_}"


def test_saves_from_two_processes_take_turns(tmp_path: Path) -> None:
    root = tmp_path / "index"
    vector_index("exact", "first").save(root)
    gate, entered = tmp_path / "gate", tmp_path / "entered"
    script = f"""
import sys, time
from pathlib import Path
sys.path[:0] = {sys.path!r}
from jp_rerank.snapshots import read_snapshot
from jp_rerank.index import ExactIndex
import numpy as np
index = ExactIndex({DIM}, embedder_id="toy")
index.add(["child-0"], np.ones((1, {DIM})), ["子"])
original = index._write_payload
def slow(folder):
    original(folder)
    Path({str(entered)!r}).touch()
    while not Path({str(gate)!r}).exists():
        time.sleep(0.01)
index._write_payload = slow
index.save(Path({str(root)!r}))
"""
    child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    try:
        for _ in range(3000):
            if entered.exists() or child.poll() is not None:
                break
            threading.Event().wait(0.01)
        assert entered.exists(), child.stderr.read().decode() if child.stderr else ""
        # the child holds the lock: this save waits, then gives up with a clear error, deleting nothing
        with pytest.raises(TimeoutError, match=r"another save into .* has held its lock"):
            snapshots.write_snapshot(root, {"backend": "demo"}, lambda folder: None, lock_timeout=0.3)
        assert tag_of(root) == "first"
        gate.touch()
        assert child.wait(timeout=120) == 0
    finally:
        if child.poll() is None:
            child.kill()
    assert tag_of(root) == "child"
    vector_index("exact", "parent").save(root)  # the lock is free again
    assert tag_of(root) == "parent"


# ------------------------------------------------------------------------------------------------ item 6


def resign(root: Path, snapshot_name: str, edit: Callable[[dict[str, Any]], Any] | None = None) -> None:
    """Rewrite the manifest of ``snapshot_name`` with ``edit`` and point CURRENT at it with a valid checksum."""
    manifest_path = root / snapshot_name / "manifest.json"
    if edit is not None:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        edited = edit(manifest)
        manifest_path.write_text(json.dumps(manifest if edited is None else edited), encoding="utf-8")
    sha = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    (root / "CURRENT").write_text(json.dumps({"snapshot": snapshot_name, "manifest_sha256": sha}), encoding="utf-8")


def point_at(root: Path, target: str, manifest: Path) -> None:
    sha = hashlib.sha256(manifest.read_bytes()).hexdigest()
    (root / "CURRENT").write_text(json.dumps({"snapshot": target, "manifest_sha256": sha}), encoding="utf-8")


@pytest.fixture
def two_indexes(tmp_path: Path) -> tuple[Path, Path]:
    mine, other = tmp_path / "mine", tmp_path / "other"
    vector_index("exact", "mine").save(mine)
    vector_index("exact", "secret").save(other)
    return mine, other


@pytest.mark.parametrize("how", ["relative", "absolute", "dot-dot-inside"])
def test_current_cannot_name_a_snapshot_outside_the_folder(two_indexes: tuple[Path, Path], how: str) -> None:
    mine, other = two_indexes
    theirs, _ = read_snapshot(other)
    target = {
        "relative": f"../other/{theirs.name}",
        "absolute": str(theirs),
        "dot-dot-inside": f"{read_snapshot(mine)[0].name}/../../other/{theirs.name}",
    }[how]
    point_at(mine, target, theirs / "manifest.json")
    with pytest.raises(IndexCorruptedError, match="not a snapshot folder of this directory"):
        load_index(mine)


def test_search_refuses_a_folder_whose_current_points_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text(json.dumps({"id": "secret", "text": "秘密の文書：富士山"}, ensure_ascii=False) + "\n", "utf-8")
    assert main(["index", str(src), "-o", str(tmp_path / "other"), "--bm25", "char2"]) == EXIT_OK
    theirs, _ = read_snapshot(tmp_path / "other")
    lure = tmp_path / "lure"
    lure.mkdir()
    point_at(lure, f"../other/{theirs.name}", theirs / "manifest.json")  # a folder holding only such a CURRENT
    capsys.readouterr()
    assert main(["search", str(lure), "富士山", "-m", "none", "--json"]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert "秘密" not in out
    assert "not a snapshot folder of this directory" in err
    assert len(err.strip().splitlines()) == 1


def test_manifest_entries_cannot_leave_the_snapshot(tmp_path: Path) -> None:
    root = tmp_path / "index"
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"password=hunter2\n")
    snapshot = vector_index("exact", "mine").save(root)
    depth = "../" * 2
    for name in (f"{depth}secret.txt", str(secret), "./docs.jsonl", "a//b", "docs.jsonl\x00"):

        def add(manifest: dict[str, Any], name: str = name) -> None:
            data = secret.read_bytes()
            manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

        resign(root, snapshot.name, add)
        with pytest.raises(IndexCorruptedError, match=r"leaves the snapshot|bad name"):
            read_snapshot(root)


@pytest.mark.parametrize("what", ["data file", "snapshot folder", "CURRENT", "sub-folder"])
def test_links_are_refused(tmp_path: Path, what: str) -> None:
    root = tmp_path / "index"
    snapshot = vector_index("faiss", "mine").save(root)
    outside = tmp_path / "outside"
    outside.mkdir()
    if what == "data file":  # the same bytes elsewhere: every checksum still matches
        (outside / "docs.jsonl").write_bytes((snapshot / "docs.jsonl").read_bytes())
        (snapshot / "docs.jsonl").unlink()
        (snapshot / "docs.jsonl").symlink_to(outside / "docs.jsonl")
    elif what == "snapshot folder":
        moved = outside / snapshot.name
        snapshot.rename(moved)
        snapshot.symlink_to(moved, target_is_directory=True)
    elif what == "CURRENT":
        (outside / "CURRENT").write_bytes((root / "CURRENT").read_bytes())
        (root / "CURRENT").unlink()
        (root / "CURRENT").symlink_to(outside / "CURRENT")
    else:  # a link to a folder inside the snapshot, listed nowhere
        (snapshot / "extra").symlink_to(outside, target_is_directory=True)
    with pytest.raises(IndexCorruptedError, match="symbolic link"):
        load_index(root)
    with pytest.raises(IndexCorruptedError, match="symbolic link"):
        load_index(root, verify=False)


def test_unlisted_files_in_a_snapshot_are_refused(tmp_path: Path) -> None:
    snapshot = vector_index("faiss", "mine").save(tmp_path / "index")
    (snapshot / "tombstones.npy").write_bytes(b"planted after the save")
    with pytest.raises(IndexCorruptedError, match="not listed in the manifest"):
        load_index(tmp_path / "index")


def test_pointer_and_manifest_reads_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "index"
    snapshot = vector_index("exact", "mine").save(root)
    pointer = (root / "CURRENT").read_bytes()
    (root / "CURRENT").write_bytes(pointer + b" " * (snapshots.MAX_POINTER_BYTES + 1))  # still valid JSON
    with pytest.raises(IndexCorruptedError, match="larger than"):
        load_index(root)
    (root / "CURRENT").write_bytes(pointer)
    assert tag_of(root) == "mine"
    monkeypatch.setattr(snapshots, "MAX_MANIFEST_BYTES", 256)  # a real manifest is bigger than this
    with pytest.raises(IndexCorruptedError, match="larger than 256 bytes"):
        load_index(root)
    del snapshot


MALFORMED: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("manifest is a list", lambda m: [m]),
    ("files is a list", lambda m: m.update(files=list(m["files"]))),
    ("files missing", lambda m: m.pop("files")),
    ("file entry is a string", lambda m: m["files"].update({"docs.jsonl": "x"})),
    ("file size is a string", lambda m: m["files"]["docs.jsonl"].update(bytes="12")),
    ("file size missing", lambda m: m["files"]["docs.jsonl"].pop("bytes")),
    ("checksum is a number", lambda m: m["files"]["docs.jsonl"].update(sha256=7)),
    ("count is a string", lambda m: m.update(count="20")),
    ("count is negative", lambda m: m.update(count=-1)),
    ("dim is zero", lambda m: m.update(dim=0)),
    ("dim is a float", lambda m: m.update(dim=8.0)),
    ("params is a list", lambda m: m.update(params=[1])),
    ("metric is a number", lambda m: m.update(metric=1)),
    ("embedder id is a list", lambda m: m.update(embedder_id=["toy"])),
    ("deeply nested", lambda m: m.update(extra=json.loads("[" * 50 + "]" * 50)) or None),
]


@pytest.mark.parametrize(("case", "edit"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_manifests_are_index_corrupted_errors(
    tmp_path: Path, case: str, edit: Callable[[dict[str, Any]], Any]
) -> None:
    root = tmp_path / "index"
    snapshot = vector_index("exact", "mine").save(root)
    resign(root, snapshot.name, edit)
    if case == "deeply nested":  # nesting within JSON's limits is fine; beyond what Python can parse is not
        assert tag_of(root) == "mine"
        (snapshot / "manifest.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
        resign(root, snapshot.name)
    with pytest.raises(IndexCorruptedError):
        load_index(root)


@pytest.mark.parametrize(
    "pointer",
    [
        b"[]",
        b'{"snapshot": 3, "manifest_sha256": "0"}',
        b'{"snapshot": "snapshot-x"}',
        b'{"snapshot": "snapshot-x", "manifest_sha256": ["0"]}',
        b'{"snapshot": "CURRENT", "manifest_sha256": "' + b"0" * 64 + b'"}',
        b"\xff\xfe not utf-8",
        b"[" * 100_000,
    ],
)
def test_malformed_pointers_are_index_corrupted_errors(tmp_path: Path, pointer: bytes) -> None:
    root = tmp_path / "index"
    vector_index("exact", "mine").save(root)
    (root / "CURRENT").write_bytes(pointer)
    with pytest.raises(IndexCorruptedError):
        load_index(root)


def test_readers_never_fail_while_a_search_index_is_replaced_again_and_again(tmp_path: Path) -> None:
    """Issue 25, item 6: a reader that resolved the snapshot a save then deleted used to fail (1 load in ~450)."""
    import threading

    from jp_rerank import BM25Index
    from jp_rerank.pipeline.folder import load_search_index, write_search_index

    folder = tmp_path / "idx"

    def save(generation: int) -> None:
        rows = [{"id": f"d{i}", "text": f"世代{generation}の文書{i}。富士山", "metadata": {}} for i in range(40)]
        bm25 = BM25Index("char2").index([r["text"] for r in rows], [r["id"] for r in rows])
        write_search_index(folder, passages=rows, count=len(rows), bm25=bm25)

    save(0)
    done, stop = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    loaded = threading.Semaphore(0)

    def writer() -> None:
        try:
            for generation in range(1, 41):
                while not loaded.acquire(timeout=1):  # each save overlaps a load: the reader runs across saves
                    if stop.is_set():
                        return
                save(generation)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    generations: set[str] = set()
    try:
        while not done.is_set():
            loaded.release()
            hits = load_search_index(folder, reranker=None, top_n=40).retrieve("富士山")
            seen = {h.text.split("の")[0] for h in hits}
            assert len(seen) == 1, seen  # never a mix of two saves
            generations |= seen
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert len(generations) > 1
