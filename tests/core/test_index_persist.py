"""Saving and loading indexes: round trips for every backend, manifest, mismatch and corruption, atomic saves."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from jp_rerank import snapshots as persist
from jp_rerank._version import __version__
from jp_rerank.index import (
    ChromaIndex,
    ExactIndex,
    FaissIndex,
    IndexCorruptedError,
    IndexMismatchError,
    VectorIndex,
    load_index,
    read_snapshot,
)
from jp_rerank.testing import GaussianMixture

faiss = pytest.importorskip("faiss")
pytestmark = pytest.mark.usefixtures("faiss_single_thread")

DIM = 16


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], np.ndarray, list[str], list[dict[str, str | int | float | bool]], np.ndarray]:
    mix = GaussianMixture(DIM, n_clusters=12, seed=5)
    n = 1200
    ids = [f"文書-{i}" for i in range(n)]  # non-ASCII ids and texts survive the JSONL round trip
    texts = [f"富士山の段落{i}。\n改行も含む" for i in range(n)]
    metas: list[dict[str, str | int | float | bool]] = [
        {"lang": "ja" if i % 2 else "en", "n": i % 5, "w": i / 7, "ok": i % 3 == 0} for i in range(n)
    ]
    return ids, mix.sample(n, seed=1), texts, metas, mix.sample(20, seed=2)


def build(kind: str, corpus, tmp_path: Path) -> VectorIndex:
    ids, vectors, texts, metas, _ = corpus
    index: VectorIndex
    if kind == "exact":
        index = ExactIndex(DIM, embedder_id="toy-embedder")
    elif kind == "chroma":
        # a beam wider than the collection makes Chroma's HNSW search exhaustive, so the rebuilt collection of a
        # loaded snapshot must return exactly the same neighbours (a narrow beam differs between graphs)
        index = ChromaIndex(
            DIM, path=tmp_path / "chroma-src", collection_name="src", embedder_id="toy-embedder", ef_search=2000
        )
    else:
        index = FaissIndex(DIM, kind=kind, embedder_id="toy-embedder", nlist=16, pq_m=8, pq_nbits=4, nprobe=4)  # type: ignore[arg-type]
        index.train(vectors)
    index.add(ids, vectors, texts, metas)
    index.delete(ids[:7])  # deleted records (HNSW tombstones) must stay deleted after loading
    index.upsert([ids[10]], vectors[[11]], ["置き換え"], [{"lang": "xx"}])
    return index


@pytest.mark.parametrize("kind", ["exact", "flat", "hnsw", "ivfpq", "chroma"])
def test_save_load_round_trip_gives_identical_results(kind, corpus, tmp_path):
    queries = corpus[4]
    index = build(kind, corpus, tmp_path)
    index.save(tmp_path / "saved")
    options = {"path": tmp_path / "chroma-dst"} if kind == "chroma" else {}
    loaded = load_index(tmp_path / "saved", embedder_id="toy-embedder", **options)
    assert type(loaded) is type(index)
    assert len(loaded) == len(index) == 1200 - 7
    assert loaded.embedder_id == "toy-embedder"
    assert loaded.params() == index.params()
    for where in (None, {"lang": "en"}, {"lang": "xx"}):
        got, want = loaded.search_many(queries, k=25, where=where), index.search_many(queries, k=25, where=where)
        if kind == "chroma":  # Chroma may round the last float32 bit differently in a new collection
            assert [[h.id for h in hs] for hs in got] == [[h.id for h in hs] for hs in want]
            assert [h.score for hs in got for h in hs] == pytest.approx([h.score for hs in want for h in hs], abs=1e-6)
        else:
            assert got == want
    assert sorted(loaded.records(), key=lambda r: r.id) == sorted(index.records(), key=lambda r: r.id)
    # the loaded index stays writable
    loaded.upsert(["追加"], corpus[1][:1], ["new"])
    assert loaded.search(corpus[1][0], k=2)[0].id in ("追加", corpus[0][0])


def test_manifest_records_what_is_needed_to_check_a_load(corpus, tmp_path):
    index = build("hnsw", corpus, tmp_path)
    snapshot = index.save(tmp_path / "saved")
    folder, manifest = read_snapshot(tmp_path / "saved")
    assert folder == snapshot
    assert manifest["jp_rerank_version"] == __version__
    assert manifest["embedder_id"] == "toy-embedder"
    assert (manifest["dim"], manifest["metric"], manifest["normalize"]) == (DIM, "cosine", True)
    assert manifest["backend"] == "faiss"
    assert manifest["params"]["kind"] == "hnsw"
    assert manifest["count"] == 1193
    assert set(manifest["files"]) == {"index.faiss", "docs.jsonl", "tombstones.npy"}
    for name, info in manifest["files"].items():
        assert info["bytes"] == (folder / name).stat().st_size
        assert len(info["sha256"]) == 64
    rows = [json.loads(line) for line in (folder / "docs.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows[0] == {"label": 7, "id": "文書-7", "text": corpus[2][7], "metadata": corpus[3][7]}
    assert not any(p.suffix in (".pkl", ".pickle") for p in folder.iterdir())


def test_loading_with_another_embedder_or_class_raises(corpus, tmp_path):
    build("flat", corpus, tmp_path).save(tmp_path / "saved")
    with pytest.raises(IndexMismatchError, match="built with embedder 'toy-embedder', but embedder 'other-model'"):
        load_index(tmp_path / "saved", embedder_id="other-model")
    with pytest.raises(IndexMismatchError, match="holds a 'faiss' index, not a ExactIndex"):
        ExactIndex.load(tmp_path / "saved")
    assert isinstance(FaissIndex.load(tmp_path / "saved"), FaissIndex)  # no embedder given: nothing to compare


def test_version_mismatch_is_logged(corpus, tmp_path, monkeypatch, caplog):
    build("exact", corpus, tmp_path).save(tmp_path / "saved")
    monkeypatch.setattr(persist, "__version__", "9.9.9")
    with caplog.at_level(logging.WARNING, logger="jp_rerank.snapshots"):
        load_index(tmp_path / "saved")
    assert f"saved by jp-rerank {__version__} (this is 9.9.9)" in caplog.text


def current_snapshot(root: Path) -> Path:
    return root / json.loads((root / "CURRENT").read_text())["snapshot"]


@pytest.mark.parametrize(
    ("damage", "error", "match"),
    [
        ("flip_index", IndexCorruptedError, "index.faiss does not match the SHA-256"),
        ("truncate_docs", IndexCorruptedError, r"docs.jsonl has \d+ bytes, the manifest recorded \d+ \(truncated\?\)"),
        ("remove_docs", IndexCorruptedError, "docs.jsonl is missing"),
        ("edit_manifest", IndexCorruptedError, "manifest.json does not match the checksum recorded in CURRENT"),
        ("garbage_current", IndexCorruptedError, "CURRENT is unreadable"),
        ("remove_current", FileNotFoundError, "is not a saved jp-rerank index"),
        ("remove_snapshot", IndexCorruptedError, "has no manifest.json"),
    ],
)
def test_corrupt_files_raise_clear_errors(damage, error, match, corpus, tmp_path):
    root = tmp_path / "saved"
    build("flat", corpus, tmp_path).save(root)
    snap = current_snapshot(root)
    if damage == "flip_index":
        data = bytearray((snap / "index.faiss").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (snap / "index.faiss").write_bytes(bytes(data))
    elif damage == "truncate_docs":
        data = (snap / "docs.jsonl").read_bytes()
        (snap / "docs.jsonl").write_bytes(data[: len(data) // 2])
    elif damage == "remove_docs":
        (snap / "docs.jsonl").unlink()
    elif damage == "edit_manifest":
        manifest = json.loads((snap / "manifest.json").read_text())
        manifest["dim"] = 8
        (snap / "manifest.json").write_text(json.dumps(manifest))
    elif damage == "garbage_current":
        (root / "CURRENT").write_text("{not json")
    elif damage == "remove_current":
        (root / "CURRENT").unlink()
    elif damage == "remove_snapshot":
        for p in snap.iterdir():
            p.unlink()
        snap.rmdir()
    with pytest.raises(error, match=match):
        load_index(root)


def test_same_size_damage_is_caught_by_checksum_or_by_parsing(corpus, tmp_path):
    root = tmp_path / "saved"
    build("exact", corpus, tmp_path).save(root)
    docs = current_snapshot(root) / "docs.jsonl"
    data = docs.read_bytes()
    docs.write_bytes(b"#####" + data[5:])  # same size: only the checksum notices
    with pytest.raises(IndexCorruptedError, match=r"docs\.jsonl does not match the SHA-256"):
        load_index(root)
    with pytest.raises(IndexCorruptedError, match=r"docs\.jsonl line 1 is not a valid record"):
        load_index(root, verify=False)


def test_missing_directory_and_foreign_directory(tmp_path, corpus):
    with pytest.raises(FileNotFoundError, match="not a saved jp-rerank index"):
        load_index(tmp_path / "nothing-here")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"refusing to save into .*notes\.txt"):
        ExactIndex(DIM).save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_second_save_replaces_the_first_and_leaves_one_snapshot(corpus, tmp_path):
    ids, vectors, texts, _, _ = corpus
    root = tmp_path / "saved"
    index = ExactIndex(DIM)
    index.add(ids[:100], vectors[:100], texts[:100])
    first = index.save(root)
    index.add(ids[100:200], vectors[100:200], texts[100:200])
    second = index.save(root)
    assert first != second
    assert sorted(p.name for p in root.iterdir()) == sorted(["CURRENT", second.name])
    assert len(load_index(root)) == 200


@pytest.mark.parametrize("crash_at", ["payload", "manifest", "rename", "pointer"])
def test_a_save_that_dies_midway_leaves_the_previous_index_readable(crash_at, corpus, tmp_path, monkeypatch):
    ids, vectors, texts, metas, queries = corpus
    root = tmp_path / "saved"
    index = FaissIndex(DIM, kind="flat")
    index.add(ids[:500], vectors[:500], texts[:500], metas[:500])
    index.save(root)
    expected = index.search_many(queries, k=10)
    index.add(ids[500:], vectors[500:], texts[500:], metas[500:])

    class SimulatedCrashError(Exception):
        pass

    def boom(*args: object, **kwargs: object) -> None:
        raise SimulatedCrashError

    if crash_at == "payload":  # dies after writing part of the new files
        original = index._write_payload

        def partial(folder: Path) -> None:
            original(folder)
            (folder / "docs.jsonl").write_bytes(b'{"label": 0')
            raise SimulatedCrashError

        monkeypatch.setattr(index, "_write_payload", partial)
    elif crash_at == "manifest":
        monkeypatch.setattr(persist, "write_json", boom)
    elif crash_at == "rename":
        monkeypatch.setattr(persist.os, "rename", boom)
    else:
        monkeypatch.setattr(persist.os, "replace", boom)
    with pytest.raises(SimulatedCrashError):
        index.save(root)
    monkeypatch.undo()
    old = load_index(root)
    assert len(old) == 500
    assert old.search_many(queries, k=10) == expected
    index.save(root)  # the next save succeeds and removes the leftovers
    assert len(load_index(root)) == 1200
    assert len(list(root.iterdir())) == 2
    assert not any(p.name.startswith(".tmp-") for p in root.iterdir())


def test_untrained_ivfpq_round_trips(tmp_path):
    index = FaissIndex(DIM, kind="ivfpq", embedder_id="toy", pq_m=4)
    index.save(tmp_path / "empty")
    loaded = load_index(tmp_path / "empty")
    assert isinstance(loaded, FaissIndex)
    assert loaded.needs_training
    assert len(loaded) == 0
    assert os.listdir(tmp_path / "empty")  # a snapshot was written


@pytest.mark.parametrize("field", ["dim", "metric", "params"])
def test_a_manifest_missing_a_backend_field_is_a_corrupted_index(tmp_path: Path, field: str) -> None:
    """Checksums hold (the manifest is re-signed), but a field the backend needs is gone: a clear error."""
    import json

    from jp_rerank.durable_io import sha256_file
    from jp_rerank.snapshots import CURRENT_FILE, MANIFEST_FILE

    index = ExactIndex(DIM, embedder_id="toy")
    index.add(["a"], [np.ones(DIM, dtype=np.float32)], ["犬"])
    snapshot = index.save(tmp_path / "idx")
    manifest = json.loads((snapshot / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest.pop(field)
    (snapshot / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    pointer = json.loads((tmp_path / "idx" / CURRENT_FILE).read_text(encoding="utf-8"))
    pointer["manifest_sha256"] = sha256_file(snapshot / MANIFEST_FILE)
    (tmp_path / "idx" / CURRENT_FILE).write_text(json.dumps(pointer), encoding="utf-8")
    for load in (load_index, ExactIndex.load):
        with pytest.raises(IndexCorruptedError):
            load(tmp_path / "idx")
