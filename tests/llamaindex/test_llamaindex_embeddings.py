from __future__ import annotations

import asyncio
import copy
import pickle
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from sentence_transformers import SentenceTransformer

from jp_rerank import DEFAULT_EMBEDDER, Embedder, get_preset, normalize_text
from llamaindex_jp_rerank import JapaneseEmbedding

QUERY = "富士山の高さは？"


class _ThreadRecordingEmbedder(Embedder):
    """A real embedder that records which threads ran the model."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.threads: set[int] = set()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.threads.add(threading.get_ident())
        return super().embed_documents(texts)

    def embed_query(self, query: str) -> np.ndarray:
        self.threads.add(threading.get_ident())
        return super().embed_query(query)


def test_query_and_text_use_the_model_prompts(dense_path: Path) -> None:
    emb = JapaneseEmbedding(embedder=Embedder(dense_path, device="cpu", precision="fp32"))
    st = SentenceTransformer(str(dense_path), device="cpu")
    q = emb.get_query_embedding(QUERY)
    t = emb.get_text_embedding(QUERY)
    assert all(type(x) is float for x in q)
    text = normalize_text(QUERY)  # the engine normalises text (NFKC) before the model sees it
    np.testing.assert_allclose(q, st.encode_query([text], normalize_embeddings=True)[0], atol=1e-5)
    np.testing.assert_allclose(t, st.encode_document([text], normalize_embeddings=True)[0], atol=1e-5)
    assert not np.allclose(q, t)  # "query: " and "passage: " prompts differ


def test_text_batch_is_one_engine_call(dense_path: Path, demo_corpus: list[dict[str, str]]) -> None:
    calls: list[int] = []

    class Counting(Embedder):
        def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
            calls.append(len(texts))
            return super().embed_documents(texts)

    engine = Counting(dense_path)
    emb = JapaneseEmbedding(embedder=engine, embed_batch_size=20)
    texts = [d["text"] for d in demo_corpus[:30]]
    vectors = emb.get_text_embedding_batch(texts)
    assert calls == [20, 10]
    np.testing.assert_allclose(vectors, engine.embed_documents(texts), atol=1e-5)


def test_concurrent_async_batches_match_sync(embedder: Embedder, demo_corpus: list[dict[str, str]]) -> None:
    texts = [d["text"] for d in demo_corpus[:24]]
    emb = JapaneseEmbedding(embedder=embedder, embed_batch_size=2, num_workers=12)
    sync = emb.get_text_embedding_batch(texts)

    async def fan_out() -> list[list[list[float]]]:
        return await asyncio.gather(*(emb.aget_text_embedding_batch(texts) for _ in range(2)))

    for result in asyncio.run(fan_out()):
        assert len(result) == len(texts)
        np.testing.assert_allclose(result, sync, rtol=0, atol=1e-6)


def test_concurrent_batches_never_enter_the_shared_model_at_once(
    dense_path: Path, demo_corpus: list[dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Embedder(dense_path).load()
    model = engine.model
    encode = model.encode
    active = [0]
    most = [0]
    guard = threading.Lock()

    def tracking_encode(*args: Any, **kwargs: Any) -> Any:
        with guard:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            time.sleep(0.005)  # widen the window in which an unguarded second call would overlap
            return encode(*args, **kwargs)
        finally:
            with guard:
                active[0] -= 1

    monkeypatch.setattr(model, "encode", tracking_encode)
    emb = JapaneseEmbedding(embedder=engine, embed_batch_size=1, num_workers=8)
    texts = [d["text"] for d in demo_corpus[:16]]
    out = asyncio.run(emb.aget_text_embedding_batch(texts))
    assert len(out) == 16
    assert most[0] == 1


def test_async_runs_the_model_off_the_event_loop_thread(dense_path: Path) -> None:
    engine = _ThreadRecordingEmbedder(dense_path)
    emb = JapaneseEmbedding(embedder=engine)

    async def run() -> tuple[int, list[float], list[float], list[list[float]]]:
        loop_thread = threading.get_ident()
        q = await emb.aget_query_embedding(QUERY)
        t = await emb.aget_text_embedding("東京タワー")
        many = await emb.aget_text_embedding_batch(["京都", "大阪"])
        return loop_thread, q, t, many

    loop_thread, q, t, many = asyncio.run(run())
    assert engine.threads
    assert loop_thread not in engine.threads
    np.testing.assert_allclose(q, emb.get_query_embedding(QUERY), atol=1e-6)
    np.testing.assert_allclose(t, emb.get_text_embedding("東京タワー"), atol=1e-6)
    assert len(many) == 2


def test_builds_engine_from_a_path_with_options(dense_path: Path) -> None:
    emb = JapaneseEmbedding(dense_path, truncate_dim=16, query_instruction="検索クエリ: ")
    assert emb.truncate_dim == 16
    assert emb.model_name == str(dense_path.resolve())
    assert len(emb.get_query_embedding(QUERY)) == 16
    assert emb.embedder.prefix("query") == "検索クエリ: "
    assert emb.embedder.prefix("document") == "passage: "  # the model's own prompt is kept


def test_static_embedder_works(static_path: Path) -> None:
    emb = JapaneseEmbedding(static_path)
    vectors = emb.get_text_embedding_batch(["富士山", "東京"])
    assert np.asarray(vectors).shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_default_model_comes_from_presets() -> None:
    assert JapaneseEmbedding().model_name == get_preset(DEFAULT_EMBEDDER).model_id


def test_bad_input_uses_engine_errors(embedder: Embedder) -> None:
    emb = JapaneseEmbedding(embedder=embedder)
    with pytest.raises(ValueError, match="query is empty"):
        emb.get_query_embedding(" ")
    with pytest.raises(ValueError, match="an engine was injected"):
        JapaneseEmbedding(embedder=embedder, truncate_dim=8)
    with pytest.raises(TypeError, match=r"expected a jp_rerank\.Embedder"):
        JapaneseEmbedding(embedder="static-ja")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="truncate_dim must be positive"):
        JapaneseEmbedding(truncate_dim=0)


def test_embedding_callbacks_fire(embedder: Embedder) -> None:
    debug = LlamaDebugHandler()
    emb = JapaneseEmbedding(embedder=embedder, callback_manager=CallbackManager([debug]))
    emb.get_text_embedding_batch(["京都", "大阪", "奈良"])
    pairs = debug.get_event_pairs(CBEventType.EMBEDDING)
    assert len(pairs) == 1


def test_serialises_without_the_engine(embedder: Embedder) -> None:
    data = JapaneseEmbedding(embedder=embedder).to_dict()
    assert data["class_name"] == "JapaneseEmbedding"
    assert data["model_name"] == embedder.model_id
    assert "_engine" not in data


# ------------------------------------------------------------------------------ names from HuggingFaceEmbedding


def test_hugging_face_embedding_arguments_carry_over(dense_noprompt_path: Path, tmp_path: Path) -> None:
    emb = JapaneseEmbedding(
        model_name=str(dense_noprompt_path),
        query_instruction="query: ",
        text_instruction="passage: ",
        normalize=False,
        max_length=64,
        device="cpu",
        cache_folder=tmp_path,
        trust_remote_code=False,
        show_progress_bar=False,
        model_kwargs={"batch_size": 4, "precision": "fp32"},
        embed_batch_size=8,
    )
    engine = emb.embedder
    assert (engine.prefix("query"), engine.prefix("document")) == ("query: ", "passage: ")
    assert engine.normalize_embeddings is False
    assert engine.model.max_seq_length == 64
    assert engine.batch_size == 4
    assert engine._load_kwargs["cache_folder"] == str(tmp_path)
    st = SentenceTransformer(str(dense_noprompt_path), device="cpu")
    expected = st.encode(["query: " + normalize_text(QUERY)], normalize_embeddings=False)[0]
    np.testing.assert_allclose(emb.get_query_embedding(QUERY), expected, atol=1e-5)


@pytest.mark.usefixtures("tiny_hub")
def test_preset_and_model_kwargs_reach_the_engine(dense_noprompt_path: Path) -> None:
    emb = JapaneseEmbedding(dense_noprompt_path, preset="me5-small", model_kwargs={"device": "cpu"})
    assert emb.embedder.prefix("document") == "passage: "
    assert emb.embedder.device == "cpu"
    assert JapaneseEmbedding("me5-small").embedder.prefix("query") == "query: "  # a hub model saved without prompts
    with pytest.raises(ValueError, match="device is given twice with different values"):
        JapaneseEmbedding(dense_noprompt_path, device="cuda", model_kwargs={"device": "cpu"})
    with pytest.raises(TypeError, match=r"model_kwargs has 'tokenizer_name', which jp_rerank\.Embedder does not"):
        JapaneseEmbedding(dense_noprompt_path, model_kwargs={"tokenizer_name": "x"})


def test_an_injected_embedder_takes_no_model_kwargs(embedder: Embedder) -> None:
    with pytest.raises(ValueError, match=r"\['model_kwargs'\] cannot be set here"):
        JapaneseEmbedding(embedder=embedder, model_kwargs={"batch_size": 2})


def test_pickled_embedding_works_and_keeps_its_options(dense_path: Path) -> None:
    debug = LlamaDebugHandler()
    emb = JapaneseEmbedding(
        dense_path,
        device="cpu",
        truncate_dim=16,
        query_instruction="検索クエリ: ",
        callback_manager=CallbackManager([debug]),
    )
    expected = emb.get_query_embedding(QUERY)
    back = pickle.loads(pickle.dumps(emb))
    assert back.embedder._model is None  # reloaded on first use
    assert back.truncate_dim == 16
    assert back.embedder.prefix("query") == "検索クエリ: "
    assert back.get_query_embedding(QUERY) == expected
    assert back.get_text_embedding_batch(["京都", "大阪"]) == emb.get_text_embedding_batch(["京都", "大阪"])
    twin = copy.deepcopy(emb)
    assert twin.embedder.model is emb.embedder.model
    assert twin.get_query_embedding(QUERY) == expected
