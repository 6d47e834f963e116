"""Model loading: copies and pickles of engines, shared engines, the wrong kind of model, an unreachable hub."""

from __future__ import annotations

import copy
import gc
import http.server
import json
import logging
import pickle
import shutil
import socket
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import CrossEncoder

from jp_rerank import Embedder, Reranker, SparseEmbedder, loading
from jp_rerank.engines import engine_options, shared_engine
from jp_rerank.errors import ModelLoadError
from jp_rerank.loading import hub_offline, hub_reachable, inspect_model_folder

QUERY = "富士山の高さは？"
DOCS = ["富士山は3776メートルです。", "京都には寺が多い。", "新幹線は速い。"]


# ------------------------------------------------------------------------------------------ copies and pickles


def test_deepcopy_shares_the_loaded_model_and_lock(xlmr_ce_path: Path, dense_path: Path, splade_path: Path) -> None:
    for engine in (
        Reranker(xlmr_ce_path, device="cpu").load(),
        Embedder(dense_path, device="cpu").load(),
        SparseEmbedder(splade_path, device="cpu").load(),
    ):
        twin = copy.deepcopy(engine)
        assert twin is not engine
        assert twin._lock is engine._lock  # one lock guards the one model
        for name in type(engine)._loaded_attrs:
            assert getattr(twin, name) is getattr(engine, name) is not None
        assert twin.source == engine.source
    reranker = Reranker(xlmr_ce_path, device="cpu", batch_size=8).load()
    twin = copy.deepcopy(reranker)
    twin.batch_size = 2  # settings are the copy's own
    assert reranker.batch_size == 8
    assert twin.rerank(QUERY, DOCS) == reranker.rerank(QUERY, DOCS)


def test_pickle_leaves_the_model_out_and_reloads_it_on_first_use(
    xlmr_ce_path: Path, dense_path: Path, splade_path: Path
) -> None:
    reranker = Reranker(xlmr_ce_path, device="cpu", max_length=64).load()
    embedder = Embedder(dense_path, device="cpu", truncate_dim=16).load()
    sparse = SparseEmbedder(splade_path, device="cpu").load()
    for engine in (reranker, embedder, sparse):
        data = pickle.dumps(engine)
        assert len(data) < 20_000  # settings only, not the weights
        back = pickle.loads(data)
        assert all(getattr(back, name) is None for name in type(engine)._loaded_attrs)
        assert back._lock is not engine._lock
    back_reranker = pickle.loads(pickle.dumps(reranker))
    assert back_reranker.rerank(QUERY, DOCS) == reranker.rerank(QUERY, DOCS)
    assert back_reranker.max_length == 64
    back_embedder = pickle.loads(pickle.dumps(embedder))
    np.testing.assert_array_equal(back_embedder.embed_documents(DOCS), embedder.embed_documents(DOCS))
    assert back_embedder.prefix("query") == "query: "
    back_sparse = pickle.loads(pickle.dumps(sparse))
    assert (back_sparse.embed_documents(DOCS) != sparse.embed_documents(DOCS)).nnz == 0
    # an unloaded engine pickles too, and a copy made before loading loads by itself
    assert pickle.loads(pickle.dumps(Reranker(xlmr_ce_path))).rerank(QUERY, DOCS) == reranker.rerank(QUERY, DOCS)


# ------------------------------------------------------------------------------------------ shared engines


def test_shared_engine_is_one_engine_per_model_and_options(xlmr_ce_path: Path, tmp_path: Path) -> None:
    a = shared_engine(Reranker, xlmr_ce_path, device="cpu")
    assert shared_engine(Reranker, str(xlmr_ce_path), device="cpu") is a  # str and Path: one folder
    assert shared_engine(Reranker, xlmr_ce_path, device="cpu", batch_size=32) is a  # the default, spelled out
    assert shared_engine(Reranker, xlmr_ce_path, device="cpu", batch_size=4) is not a
    assert shared_engine(Reranker, xlmr_ce_path) is not a  # device=None picks at load time: another setting
    assert shared_engine(Reranker, "xsmall") is shared_engine(
        Reranker, "hotchpotch/japanese-reranker-cross-encoder-xsmall-v1"
    )
    link = tmp_path / "link-to-model"
    link.symlink_to(xlmr_ce_path, target_is_directory=True)
    assert shared_engine(Reranker, link, device="cpu") is a  # resolved to the same folder
    with pytest.raises(TypeError, match="unexpected keyword argument 'top_k'"):
        shared_engine(Reranker, xlmr_ce_path, top_k=3)


def test_shared_engines_are_held_weakly(xlmr_ce_path: Path) -> None:
    engine = shared_engine(Reranker, xlmr_ce_path, device="cpu", max_length=77).load()
    assert shared_engine(Reranker, xlmr_ce_path, device="cpu", max_length=77) is engine
    held = weakref.ref(engine)
    del engine
    gc.collect()
    assert held() is None  # freed, with its model, once nothing uses it
    assert shared_engine(Reranker, xlmr_ce_path, device="cpu", max_length=77)._loaded is None  # a new one


def test_unhashable_options_give_a_new_engine(dense_path: Path) -> None:
    class Prefix(str):
        __hash__ = None  # type: ignore[assignment]

    a = shared_engine(Embedder, dense_path, query_prefix=Prefix("q: "))
    assert shared_engine(Embedder, dense_path, query_prefix=Prefix("q: ")) is not a


def test_engine_options_merge_named_options_and_model_kwargs() -> None:
    assert engine_options(Embedder, {"device": None}, {"device": "cpu"}) == {"device": "cpu"}
    assert engine_options(Embedder, {"device": "cpu"}, {"device": "cpu", "batch_size": 4}) == {
        "device": "cpu",
        "batch_size": 4,
    }
    with pytest.raises(ValueError, match=r"device is given twice with different values: device='cpu' and "):
        engine_options(Embedder, {"device": "cpu"}, {"device": "cuda"})
    with pytest.raises(TypeError, match=r"model_kwargs has 'torch_dtype', which jp_rerank\.Embedder does not take"):
        engine_options(Embedder, {}, {"torch_dtype": "auto"})
    with pytest.raises(ValueError, match="model_kwargs names the model"):
        engine_options(Reranker, {}, {"model_name": "xsmall"})
    with pytest.raises(TypeError, match="model_kwargs must be a dict"):
        engine_options(Reranker, {}, ["device"])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ the wrong kind of model


@pytest.fixture(scope="module")
def st_saved_cross_encoder(xlmr_ce_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cross-encoder saved by sentence-transformers itself (modules.json + model_type CrossEncoder)."""
    out = tmp_path_factory.mktemp("st-ce")
    CrossEncoder(str(xlmr_ce_path), device="cpu").save(str(out))
    return out


def test_embedder_folder_is_refused_as_a_reranker(dense_path: Path, static_path: Path, splade_path: Path) -> None:
    with pytest.raises(
        ModelLoadError,
        match=r"as a reranker \(cross-encoder\): it is a sentence-transformers embedder \(Transformer, Pooling, "
        r"Normalize\); load it with jp_rerank\.Embedder",
    ):
        Reranker(dense_path).load()
    with pytest.raises(ModelLoadError, match=r"it is a sentence-transformers embedder \(StaticEmbedding\)"):
        Reranker(static_path).rerank(QUERY, DOCS)
    with pytest.raises(ModelLoadError, match=r"sparse encoder .*load it with jp_rerank\.SparseEmbedder"):
        Reranker(splade_path).load()


def test_cross_encoder_folder_is_refused_as_an_embedder(
    xlmr_ce_path: Path, st_saved_cross_encoder: Path, splade_path: Path, dense_path: Path
) -> None:
    with pytest.raises(
        ModelLoadError,
        match=r"as a dense embedder: it is a transformers sequence-classification model "
        r"\(XLMRobertaForSequenceClassification\); load it with jp_rerank\.Reranker",
    ):
        Embedder(xlmr_ce_path).embed_query(QUERY)
    with pytest.raises(ModelLoadError, match=r"it is a sentence-transformers cross-encoder"):
        Embedder(st_saved_cross_encoder).load()
    with pytest.raises(ModelLoadError, match=r"as a dense embedder: it is a sentence-transformers sparse encoder"):
        Embedder(splade_path).load()
    with pytest.raises(ModelLoadError, match=r"as a sparse \(SPLADE\) encoder: .*load it with jp_rerank\.Embedder"):
        SparseEmbedder(dense_path).load()
    with pytest.raises(ModelLoadError, match=r"as a sparse \(SPLADE\) encoder: .*load it with jp_rerank\.Reranker"):
        SparseEmbedder(xlmr_ce_path).load()
    # the right kinds load, the sentence-transformers-saved cross-encoder included
    assert Reranker(st_saved_cross_encoder, device="cpu").score(QUERY, DOCS).shape == (3,)


@pytest.mark.usefixtures("tiny_hub")
def test_wrong_kind_through_a_hub_id_in_the_cache() -> None:
    # the session's HF cache holds a dense stand-in under me5-small's hub id and a cross-encoder under xsmall's
    with pytest.raises(ModelLoadError, match=r"cannot use 'intfloat/multilingual-e5-small' as a reranker"):
        Reranker("me5-small").load()
    with pytest.raises(ModelLoadError, match=r"cannot use 'hotchpotch/japanese-reranker-cross-encoder-xsmall-v1' as a"):
        Embedder("xsmall").load()


def test_plain_encoder_is_refused_as_a_reranker_with_the_reason(tmp_path: Path, dense_path: Path) -> None:
    plain = tmp_path / "encoder"
    plain.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(dense_path / name, plain / name)  # the transformer inside the embedder, without its modules
    assert inspect_model_folder(plain).kind == "encoder"
    with pytest.raises(ModelLoadError, match=r"plain transformers encoder \(XLMRobertaModel\).*randomly initialised"):
        Reranker(plain).load()
    assert Embedder(plain, device="cpu").embed_query(QUERY).shape == (32,)  # mean pooling: a valid embedder


def test_a_folder_that_is_no_model_is_a_clear_error_from_every_thread(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model", encoding="utf-8")
    reranker = Reranker(tmp_path)

    def call(_: int) -> BaseException | None:
        try:
            reranker.rerank(QUERY, DOCS)
        except BaseException as exc:  # the test inspects what each thread got
            return exc
        return None

    with ThreadPoolExecutor(8) as pool:
        errors = list(pool.map(call, range(16)))
    assert all(isinstance(e, ModelLoadError) for e in errors)
    assert "is not a model folder: it has neither config.json nor modules.json (it holds notes.txt)" in str(errors[0])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match=r"is not a model folder.*it is empty"):
        Embedder(empty).load()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelLoadError, match=r"config\.json cannot be read as JSON"):
        SparseEmbedder(broken).load()


def test_transformers_errors_on_a_local_folder_are_model_load_errors(tmp_path: Path, xlmr_ce_path: Path) -> None:
    folder = tmp_path / "ce"
    shutil.copytree(xlmr_ce_path, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    del config["model_type"]
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="could not load model from local directory"):
        Reranker(folder).load()  # transformers' ValueError, not a raw one


# ------------------------------------------------------------------------------------------ an unreachable hub


@pytest.fixture
def online_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline variables unset, as on a developer's machine, and no answer remembered from before."""
    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(loading, "_hub_answers", {})


@pytest.mark.usefixtures("online_mode")
@pytest.mark.filterwarnings("ignore:A test tried to use socket:UserWarning")  # pytest-socket: the hub is unreachable
@pytest.mark.usefixtures("tiny_hub")
def test_unreachable_hub_is_detected_once_and_the_process_goes_offline(caplog: pytest.LogCaptureFixture) -> None:
    # sockets are disabled in the tests, so the hub cannot be reached; the presets are in the session's cache
    assert not hub_offline()
    with caplog.at_level(logging.WARNING, logger="jp_rerank.loading"):
        scores = Reranker("xsmall", device="cpu").score(QUERY, DOCS)
        Embedder("me5-small", device="cpu").embed_query(QUERY)
        Reranker("xsmall", device="cpu", max_length=64).load()
    notes = [r.getMessage() for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert len(notes) == 1
    assert "loading models from the local Hugging Face cache only for the rest of this process" in notes[0]
    assert "HF_HUB_OFFLINE=1" in notes[0]
    assert scores.shape == (3,)
    assert hub_offline()
    with pytest.raises(ModelLoadError, match=r"the Hugging Face Hub cannot be reached .* not in it"):
        Reranker("small").load()  # not in the cache: a fast, clear error instead of minutes of retries


@pytest.mark.enable_socket
@pytest.mark.network
@pytest.mark.usefixtures("online_mode")
def test_a_hub_that_answers_is_reachable_and_one_that_hangs_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(404)  # any answer at all means the hub is there
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        assert hub_reachable(timeout=5)
        assert not hub_offline()
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        assert not hub_reachable(timeout=0.5)
        assert hub_offline()


def test_folder_kinds_from_their_files(tmp_path: Path) -> None:
    def folder(name: str, **files: object) -> Path:
        out = tmp_path / name
        out.mkdir()
        for file, content in files.items():
            (out / f"{file}.json").write_text(json.dumps(content), encoding="utf-8")
        return out

    classifier = {"architectures": ["ModernBertForSequenceClassification"], "model_type": "modernbert"}
    transformer_only = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    pooled = [*transformer_only, {"idx": 1, "name": "1", "path": "1_Pooling", "type": "x.Pooling"}]
    kinds = {
        "hf-ce": inspect_model_folder(folder("hf-ce", config=classifier)).kind,
        # a cross-encoder saved with modules.json but no model_type: the Transformer alone, a classification head
        "st-ce-old": inspect_model_folder(folder("st-ce-old", config=classifier, modules=transformer_only)).kind,
        "embedder": inspect_model_folder(
            folder("embedder", config={"architectures": ["BertModel"]}, modules=pooled)
        ).kind,
        "mlm": inspect_model_folder(folder("mlm", config={"architectures": ["BertForMaskedLM"]})).kind,
    }
    assert kinds == {"hf-ce": "cross-encoder", "st-ce-old": "cross-encoder", "embedder": "dense", "mlm": "masked-lm"}
