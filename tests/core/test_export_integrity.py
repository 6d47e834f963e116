"""Exports against an attacker: weights replaced in place with their old times, hub revisions, damaged files,
read-only homes and caches, and what a killed exporter leaves behind (issue 25, items 1-4).

Each test builds the situation as a user gets into it (``cp -p`` keeps times, ``tar -x`` restores them, a container
mounts a read-only root) and checks the scores against torch fp32 on the weights that are really on disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from jp_rerank import Reranker
from jp_rerank.rerank import exports

pytest.importorskip("onnxruntime")

QUERY = "富士山の高さは何メートルですか？"
DOCS = ["富士山の標高は3776メートルです。", "京都には寺が多い。", "琵琶湖は日本一大きな湖です。", "短い。"]


@pytest.fixture
def model(xlmr_ce_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(exports.CACHE_ENV, str(tmp_path / "cache"))
    dst = tmp_path / "model"
    shutil.copytree(xlmr_ce_path, dst)
    return dst


def _fp32(folder: Path) -> np.ndarray:
    return Reranker(folder, device="cpu", backend="torch", precision="fp32", activation="none").score(QUERY, DOCS)


def _onnx(folder: Path) -> Reranker:
    return Reranker(folder, device="cpu", backend="onnx", precision="fp32", activation="none")


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_weights_replaced_in_place_with_old_times_are_never_served_from_the_old_export(
    model: Path, backend: str, retrain_in_place: Callable[..., None]
) -> None:
    if backend == "openvino":
        pytest.importorskip("openvino")
    old = Reranker(model, device="cpu", backend=backend, precision="fp32", activation="none").score(QUERY, DOCS)
    np.testing.assert_allclose(old, _fp32(model), atol=1e-5)
    retrain_in_place(model, keep_times=True)
    new_fp32 = _fp32(model)
    assert np.abs(new_fp32 - old).max() > 0.1  # the new weights score differently
    again = Reranker(model, device="cpu", backend=backend, precision="fp32", activation="none").score(QUERY, DOCS)
    np.testing.assert_allclose(again, new_fp32, atol=1e-5)


def test_hub_snapshots_are_told_apart_by_their_blobs(tmp_path: Path, xlmr_ce_path: Path) -> None:
    """Two revisions in a Hugging Face cache: snapshot files are links to blobs named by their SHA-256."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(xlmr_ce_path)
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    snapshots, digests = [], []
    for revision, content in (("aaa", b"weights of revision one"), ("bbb", b"weights of revision two")):
        digest = hashlib.sha256(content).hexdigest()
        (blobs / digest).write_bytes(content)
        snap = tmp_path / "snapshots" / revision
        snap.mkdir(parents=True)
        (snap / "model.safetensors").symlink_to(blobs / digest)
        snapshots.append(snap)
        digests.append(digest)
    assert [exports.file_digest(s / "model.safetensors") for s in snapshots] == digests
    one, two = (exports.fingerprint(s, config) for s in snapshots)
    assert one != two  # the newer revision's export is never served for the older, nor the other way round
    assert exports.fingerprint(snapshots[0], config) == one  # stable


def test_local_folder_hash_is_read_once_and_again_after_any_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(exports.CACHE_ENV, str(tmp_path / "cache"))
    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 1000)
    first = exports.file_digest(path)
    reads: list[Path] = []
    real_open = Path.open

    def counting_open(self: Path, mode: str = "r", *args: object, **kwargs: object) -> object:
        if self == path.resolve() and "r" in mode:
            reads.append(self)
        return real_open(self, mode, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", counting_open)
    assert exports.file_digest(path) == first
    assert reads == []  # remembered by inode, size, mtime and ctime
    stat = path.stat()
    path.write_bytes(b"b" * 1000)  # same size...
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ...same mtime: ctime still moved
    assert exports.file_digest(path) != first
    assert len(reads) == 1


@pytest.mark.parametrize("damage", ["truncate-bin", "delete-bin", "truncate-xml", "flip-bytes", "zero-weights"])
def test_a_damaged_openvino_export_is_made_again_with_one_warning(
    model: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("openvino")
    expected = Reranker(model, device="cpu", backend="openvino", precision="fp32", activation="none").score(QUERY, DOCS)
    folder = model / "openvino"
    xml, binary = folder / "model.xml", folder / "model.bin"
    if damage == "truncate-bin":
        binary.write_bytes(binary.read_bytes()[: binary.stat().st_size // 2])
    elif damage == "delete-bin":
        binary.unlink()
    elif damage == "truncate-xml":
        xml.write_bytes(xml.read_bytes()[:200])
    elif damage == "flip-bytes":
        data = bytearray(binary.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 64] = bytes(b ^ 0xFF for b in data[len(data) // 2 : len(data) // 2 + 64])
        binary.write_bytes(bytes(data))
    else:
        binary.write_bytes(bytes(binary.stat().st_size))
    with caplog.at_level(logging.WARNING, logger="jp_rerank.rerank.exports"):
        got = Reranker(model, device="cpu", backend="openvino", precision="fp32", activation="none").score(QUERY, DOCS)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert sum("cannot be used (it is damaged" in r.getMessage() for r in caplog.records) == 1


def test_an_export_made_another_way_by_an_earlier_version_is_made_again(
    model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An earlier jp-rerank quantised differently: same weights, same file names, a valid graph, other scores."""
    import json

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    expected = _fp32(model)
    np.testing.assert_allclose(_onnx(model).score(QUERY, DOCS), expected, atol=1e-5)
    folder = model / "onnx"
    manifest = json.loads((folder / exports.MANIFEST).read_text(encoding="utf-8"))
    quantize_dynamic(
        str(folder / "model.onnx"),
        str(folder / "older.onnx"),
        weight_type=QuantType.QUInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    (folder / "older.onnx").replace(folder / "model.onnx")
    manifest.pop("recipe")  # what the earlier version wrote: no recipe, checksums of its own files
    manifest["sha256"]["model.onnx"] = exports.file_digest(folder / "model.onnx")
    (folder / exports.MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="jp_rerank.rerank.exports"):
        got = _onnx(model).score(QUERY, DOCS)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert sum("it was made another way" in r.getMessage() for r in caplog.records) == 1
    assert json.loads((folder / exports.MANIFEST).read_text(encoding="utf-8"))["recipe"].startswith("onnx-")


def test_a_read_only_home_and_cache_fall_back_to_torch_with_one_warning(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A container with a read-only root: no writable model folder, home, XDG cache or JP_RERANK_CACHE.

    Tests may run as root, who writes into read-only folders, so "cannot be written" is made with paths under a
    regular file (creating anything there fails with an OSError for every user).
    """
    expected = _fp32(model)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv(exports.CACHE_ENV, str(blocker / "cache"))
    monkeypatch.setattr(exports, "_writable", lambda folder: False)
    monkeypatch.delenv("JP_RERANK_BACKEND", raising=False)
    monkeypatch.setattr("jp_rerank.rerank.scoring.plan_scoring", _auto_plan_onnx)
    with caplog.at_level(logging.WARNING):
        reranker = Reranker(model, device="cpu", activation="none")
        got = reranker.score(QUERY, DOCS)
    assert reranker.scoring_plan.label == "torch-fp32"
    assert "could not be used" in reranker.scoring_plan.reason
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert sum("could not be used" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(NotADirectoryError):  # an explicit choice is not silently replaced
        Reranker(model, device="cpu", backend="onnx", precision="fp32").load()


def _auto_plan_onnx(*args: object, **kwargs: object) -> object:
    """What ``auto`` returns on a CPU where an export backend is the choice."""
    from jp_rerank.rerank.plans import ScoringPlan

    return ScoringPlan("onnx", "fp32", "auto (test)")


def test_the_lock_falls_back_to_a_per_user_temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv(exports.CACHE_ENV, str(blocker / "cache"))
    monkeypatch.setattr(exports.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    lock = exports._lock_path(tmp_path / "model" / "onnx")
    assert lock.parent.parent == tmp_path / "tmp"
    assert lock.is_file()


def test_what_a_killed_exporter_left_is_removed_and_nothing_else(model: Path) -> None:
    leftovers = [model / ".onnx-k2j3h4", model / ".onnx.old-4242"]
    for path in leftovers:
        path.mkdir()
        (path / "model.onnx").write_bytes(b"half")
    own = model / ".onnx-notes.txt"  # a user's file that merely looks alike: not a folder, kept
    own.write_text("mine")
    other = model / ".git"
    other.mkdir()
    _onnx(model).load()
    assert not any(p.exists() for p in leftovers)
    assert own.is_file()
    assert other.is_dir()
    assert sorted(p.name for p in model.iterdir() if p.name.startswith(".")) == [".git", ".onnx-notes.txt"]
