"""JapaneseEmbeddings: LangChain's standard embeddings suites plus our own contract (prompts, floats, async)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests
from sentence_transformers import SentenceTransformer

from jp_rerank import Embedder
from langchain_jp_rerank import JapaneseEmbeddings

QUERY = "富士山の高さは？"
TEXTS = ["富士山は日本一高い山です。", "京都には古い寺が多い。", "新幹線は速い列車です。"]


class TestJapaneseEmbeddingsUnit(EmbeddingsUnitTests):
    """LangChain's unit suite; built from a local StaticEmbedding model by path (nothing loads at init)."""

    @pytest.fixture(autouse=True)
    def _model_path(self, static_path: Path) -> None:
        self.path = static_path

    @property
    def embeddings_class(self) -> type[JapaneseEmbeddings]:
        return JapaneseEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model_name": str(self.path)}


# The suite's async tests are plain ``async def`` (LangChain runs them with asyncio_mode=auto); our pytest config
# is strict, so the class is marked for pytest-asyncio and the "sync test marked asyncio" notice is silenced.
@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore:.*is marked with '@pytest.mark.asyncio' but it is not an async function")
class TestJapaneseEmbeddingsIntegration(EmbeddingsIntegrationTests):
    """LangChain's integration suite on a tiny transformer embedder with saved query/passage prompts."""

    @pytest.fixture(autouse=True)
    def _model_path(self, dense_path: Path) -> None:
        self.path = dense_path

    @property
    def embeddings_class(self) -> type[JapaneseEmbeddings]:
        return JapaneseEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model_name": str(self.path), "device": "cpu"}


def test_prompts_match_sentence_transformers(dense_path: Path) -> None:
    emb = JapaneseEmbeddings(model_name=dense_path, device="cpu", model_kwargs={"precision": "fp32"})
    reference = SentenceTransformer(str(dense_path), device="cpu")
    expected_q = reference.encode_query([QUERY], normalize_embeddings=True)[0]
    expected_d = reference.encode_document(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(emb.embed_query(QUERY), expected_q, atol=1e-5)
    np.testing.assert_allclose(emb.embed_documents(TEXTS), expected_d, atol=1e-5)


def test_query_and_document_sides_differ_only_by_prompt(dense_path: Path, dense_noprompt_path: Path) -> None:
    with_prompts = JapaneseEmbeddings(model_name=dense_path)
    without = JapaneseEmbeddings(model_name=dense_noprompt_path)
    assert with_prompts.embedder.prefix("query") == "query: "
    assert with_prompts.embedder.prefix("document") == "passage: "
    assert not np.allclose(with_prompts.embed_query(TEXTS[0]), with_prompts.embed_documents([TEXTS[0]])[0])
    np.testing.assert_allclose(without.embed_query(TEXTS[0]), without.embed_documents([TEXTS[0]])[0], atol=1e-6)


def test_values_are_python_floats(embedder: Embedder) -> None:
    emb = JapaneseEmbeddings(embedder=embedder)
    vectors = emb.embed_documents(TEXTS)
    assert len(vectors) == len(TEXTS)
    assert all(type(x) is float for row in vectors for x in row)
    assert all(type(x) is float for x in emb.embed_query(QUERY))
    assert emb.embed_documents([]) == []


def test_injected_engine_is_shared(embedder: Embedder) -> None:
    a = JapaneseEmbeddings(embedder=embedder)
    b = JapaneseEmbeddings(embedder=embedder)
    assert a.embedder is b.embedder is embedder
    assert a.model_name == str(embedder.source.name)
    np.testing.assert_allclose(a.embed_query(QUERY), embedder.embed_query(QUERY))


def test_injection_conflicts_and_bad_inputs(embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="either embedder= or model_name"):
        JapaneseEmbeddings(embedder=embedder, model_name="static-ja")
    with pytest.raises(ValueError, match="extra"):
        JapaneseEmbeddings(model="static-ja")  # HuggingFaceEmbeddings' name only: model_name
    with pytest.raises(TypeError, match=r"embedder must be a jp_rerank\.Embedder"):
        JapaneseEmbeddings(embedder="static-ja")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="extra"):
        JapaneseEmbeddings(modle="static-ja")
    emb = JapaneseEmbeddings(embedder=embedder)
    with pytest.raises(ValueError, match="query is empty"):
        emb.embed_query("  ")
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        emb.embed_documents(["a", None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="frozen"):
        emb.model_name = "other"  # type: ignore[misc]


@pytest.mark.asyncio
async def test_async_runs_in_worker_thread_and_matches_sync(dense_path: Path) -> None:
    threads: list[int] = []

    class RecordingEmbedder(Embedder):
        def embed_documents(self, texts: Any) -> np.ndarray:
            threads.append(threading.get_ident())
            return super().embed_documents(texts)

    emb = JapaneseEmbeddings(embedder=RecordingEmbedder(dense_path))
    got = await emb.aembed_documents(TEXTS)
    assert threads
    assert threads[0] != threading.get_ident()
    assert got == emb.embed_documents(TEXTS)
    queries = [f"{t}について" for t in TEXTS] * 4
    results = await asyncio.gather(*(emb.aembed_query(q) for q in queries))
    assert results == [emb.embed_query(q) for q in queries]


def test_as_vector_store_embedding(embedder: Embedder) -> None:
    emb = JapaneseEmbeddings(embedder=embedder)
    store = InMemoryVectorStore.from_texts(TEXTS, emb, metadatas=[{"n": i} for i in range(len(TEXTS))])
    hits = store.similarity_search_with_score(QUERY, k=len(TEXTS))
    expected = np.asarray(emb.embed_documents(TEXTS)) @ np.asarray(emb.embed_query(QUERY))
    assert [doc.metadata["n"] for doc, _ in hits] == np.argsort(-expected, kind="stable").tolist()
    np.testing.assert_allclose([s for _, s in hits], np.sort(expected)[::-1], atol=1e-5)


# ------------------------------------------------------------------------------ names from HuggingFaceEmbeddings


@pytest.mark.parametrize("named_device", [None, "cpu"])
def test_hugging_face_embeddings_arguments_carry_over(
    dense_path: Path, named_device: str | None, capfd: pytest.CaptureFixture[str]
) -> None:
    """The arguments of a HuggingFaceEmbeddings(...) line work unchanged."""
    emb = JapaneseEmbeddings(
        model_name=str(dense_path),
        model_kwargs={"device": "cpu", "precision": "fp32"},
        encode_kwargs={"normalize_embeddings": False, "batch_size": 2},
        show_progress=True,
        device=named_device,
    )
    assert emb.model_name == str(dense_path)
    assert emb.device == emb.embedder.device == "cpu"
    assert emb.embedder.batch_size == 2
    assert emb.embedder.normalize_embeddings is False
    vectors = np.asarray(emb.embed_documents(TEXTS))
    reference = SentenceTransformer(str(dense_path), device="cpu").encode_document(TEXTS, normalize_embeddings=False)
    np.testing.assert_allclose(vectors, reference, atol=1e-5)
    assert "Batches" in capfd.readouterr().err  # show_progress reached sentence-transformers


def test_an_e5_migration_from_hugging_face_embeddings_runs_unchanged(
    dense_noprompt_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The HuggingFaceEmbeddings line e5 users write: prompts in encode_kwargs / query_encode_kwargs."""
    with caplog.at_level("INFO", logger="langchain_jp_rerank.embeddings"):
        emb = JapaneseEmbeddings(
            model_name=str(dense_noprompt_path),  # saved without prompts, like the hub's multilingual-e5
            model_kwargs={"device": "cpu", "precision": "fp32"},
            encode_kwargs={"normalize_embeddings": True, "prompt": "passage: ", "convert_to_numpy": True},
            query_encode_kwargs={"prompt": "query: ", "prompt_name": "query"},
            multi_process=False,
        )
    assert "replaces the model's document prompt" in caplog.text
    st = SentenceTransformer(str(dense_noprompt_path), device="cpu")
    np.testing.assert_allclose(
        np.asarray(emb.embed_documents(TEXTS)),
        st.encode(TEXTS, prompt="passage: ", normalize_embeddings=True),
        atol=1e-5,
    )
    query = st.encode([QUERY], prompt="query: ", normalize_embeddings=True)[0]
    np.testing.assert_allclose(np.asarray(emb.embed_query(QUERY)), query, atol=1e-5)
    other = JapaneseEmbeddings(model_name=str(dense_noprompt_path), query_encode_kwargs={"prompt": "検索クエリ: "})
    assert other.embedder.prefix("query") == "検索クエリ: "  # an explicit prompt replaces the preset's
    assert not np.allclose(other.embed_query(QUERY), emb.embed_query(QUERY), atol=1e-4)


def test_multi_process_is_accepted_and_explained(dense_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="langchain_jp_rerank.embeddings"):
        emb = JapaneseEmbeddings(model_name=str(dense_path), multi_process=True)
    assert "embed-corpus --ray" in caplog.text
    assert len(emb.embed_documents(TEXTS)) == len(TEXTS)


def test_encode_and_model_kwargs_errors(dense_path: Path, embedder: Embedder) -> None:
    with pytest.raises(TypeError, match=r"encode_kwargs has 'device'; JapaneseEmbeddings takes batch_size, "):
        JapaneseEmbeddings(model_name=dense_path, encode_kwargs={"device": "cpu"})
    with pytest.raises(ValueError, match=r"prompt_name'\] = 'retrieval'.*give the text itself"):
        JapaneseEmbeddings(model_name=dense_path, encode_kwargs={"prompt_name": "retrieval"})
    with pytest.raises(ValueError, match=r"would give document texts the query prompt"):
        JapaneseEmbeddings(model_name=dense_path, encode_kwargs={"prompt_name": "query"})
    with pytest.raises(ValueError, match=r"set batch_size differently"):
        JapaneseEmbeddings(
            model_name=dense_path, encode_kwargs={"batch_size": 2}, query_encode_kwargs={"batch_size": 3}
        )
    with pytest.raises(ValueError, match=r"batch_size is given twice with different values"):
        JapaneseEmbeddings(model_name=dense_path, encode_kwargs={"batch_size": 2}, model_kwargs={"batch_size": 4})
    with pytest.raises(TypeError, match=r"model_kwargs has 'model_kwargs', which jp_rerank\.Embedder does not"):
        JapaneseEmbeddings(model_name=dense_path, model_kwargs={"model_kwargs": {"torch_dtype": "auto"}})
    with pytest.raises(ValueError, match="either embedder= or encode_kwargs"):
        JapaneseEmbeddings(embedder=embedder, encode_kwargs={"batch_size": 2})
    with pytest.raises(ValueError, match="either embedder= or model_name, not both"):
        JapaneseEmbeddings(embedder=embedder, model_name="static-ja")


@pytest.mark.usefixtures("tiny_hub")
def test_preset_names_the_prompts_of_a_local_copy(dense_noprompt_path: Path) -> None:
    plain = JapaneseEmbeddings(model_name=dense_noprompt_path)
    named = JapaneseEmbeddings(model_name=dense_noprompt_path, preset="me5-small")
    assert plain.embedder.prefix("query") == ""
    assert (named.embedder.prefix("query"), named.embedder.prefix("document")) == ("query: ", "passage: ")
    assert JapaneseEmbeddings(model_name="me5-small").embedder.prefix("document") == "passage: "  # the hub alias


def test_embeddings_configured_alike_share_one_engine(dense_path: Path) -> None:
    a = JapaneseEmbeddings(model_name=dense_path, device="cpu")
    b = JapaneseEmbeddings(model_name=str(dense_path), model_kwargs={"device": "cpu"})
    assert a.embedder is b.embedder
    assert (
        JapaneseEmbeddings(model_name=dense_path, device="cpu", encode_kwargs={"batch_size": 3}).embedder
        is not a.embedder
    )
    pytest.importorskip("llama_index.core")
    from llamaindex_jp_rerank import JapaneseEmbedding

    assert JapaneseEmbedding(dense_path, device="cpu").embedder is a.embedder
