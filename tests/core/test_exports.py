"""OpenVINO exports made on first use of a backend asked for (``auto`` never picks one): cached, reused by another
process, safe when two processes export at once, a read-only model folder falls back to the user cache, and the
torch weights are let go."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from jp_rerank import Reranker
from jp_rerank.rerank import exports, plans

pytest.importorskip("openvino")
pytest.importorskip("nncf")

QUERY = "富士山の高さは何メートルですか？"
DOCS = ["富士山の標高は3776メートルです。", "京都には寺が多い。", "琵琶湖は日本一大きな湖です。"]


@pytest.fixture
def model(xlmr_ce_path: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(xlmr_ce_path, dst)
    return dst


@pytest.fixture
def openvino_int8_opted_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a user does process-wide to get OpenVINO int8 (``auto`` never picks an export plan by itself)."""
    monkeypatch.setenv(plans.BACKEND_ENV, "openvino-int8")


def test_an_opted_in_export_is_made_once_on_first_use_and_reused(
    model: Path, openvino_int8_opted_in: None, caplog: pytest.LogCaptureFixture, retrain_in_place: Callable[..., None]
) -> None:
    first = Reranker(model, device="cpu")
    with caplog.at_level("WARNING", logger="jp_rerank.rerank.exports"):
        scores = first.score(QUERY, DOCS)
    assert first.scoring_plan.label == "openvino-int8"
    assert "making the OpenVINO int8 export" in caplog.text  # it says what it is doing
    assert first._load().model is None  # the export serves: the torch weights are not kept
    folder = model / "openvino"
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest["files"]) == {"fp32", "int8"}
    assert manifest["calibration_batches"] > 0
    stamp = (folder / "model_int8.xml").stat().st_mtime_ns
    caplog.clear()
    second = Reranker(model, device="cpu")
    with caplog.at_level("WARNING", logger="jp_rerank.rerank.exports"):
        np.testing.assert_array_equal(second.score(QUERY, DOCS), scores)
    assert "making" not in caplog.text
    assert (folder / "model_int8.xml").stat().st_mtime_ns == stamp  # reused, not exported again
    assert first.model is not None  # a torch copy is still there on demand
    retrain_in_place(model)  # new weights: the export is stale and made again
    Reranker(model, device="cpu").load()
    assert (folder / "model_int8.xml").stat().st_mtime_ns != stamp
    assert not [p for p in model.iterdir() if p.name.startswith(".openvino")]  # no temporary folders left


def test_a_read_only_model_folder_exports_into_the_user_cache(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    monkeypatch.setenv(exports.CACHE_ENV, str(tmp_path / "cache"))
    mode = model.stat().st_mode
    model.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        reranker = Reranker(model, device="cpu", backend="openvino", precision="fp32")
        reranker.load()
        assert not (model / "openvino").exists()
        assert list((tmp_path / "cache" / "openvino").glob("model-*/model.xml"))
    finally:
        model.chmod(mode)


def test_the_read_only_fallback_folder_is_chosen_when_the_folder_is_not_writable(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same decision as above, without relying on file permissions (tests may run as root)."""
    monkeypatch.setenv(exports.CACHE_ENV, str(tmp_path / "cache"))
    source = Reranker(model).source
    assert exports.export_dir(source, "openvino") == model / "openvino"
    monkeypatch.setattr(exports, "_writable", lambda folder: False)
    assert exports.export_dir(source, "openvino").parent == tmp_path / "cache" / "openvino"


_CHILD = textwrap.dedent(
    """
    import json, sys
    from jp_rerank import Reranker
    r = Reranker(sys.argv[1], device="cpu", backend="openvino", precision="int8")
    print(json.dumps(r.score("富士山の高さは？", ["富士山は3776m", "京都の寺"]).tolist()))
    """
)


def test_two_processes_exporting_at_once_make_one_good_export(model: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(model)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e.decode()[-2000:] for _, e in outs]
    scores = [json.loads(o.decode().strip().splitlines()[-1]) for o, _ in outs]
    assert scores[0] == scores[1]
    errors = b"".join(e for _, e in outs).decode()
    printed = errors + b"".join(o for o, _ in outs).decode()
    for noise in ("Statistics collection", "━", "loss_type", "ForCausalLMLoss"):  # NNCF bars, transformers notices
        assert noise not in printed, printed[-3000:]
    assert errors.count("(once; cached in") == 1  # one exported...
    assert "waiting for it" in errors or "reusing" not in errors  # ...the other waited and reused it (or came late)
    found = exports.read_export(model / "openvino", "openvino")
    assert found is not None
    assert found.has(plans.int8_file_key(plans.int8_kernel()))
    assert found.has("fp32")
