"""Embedder: prompts, parity with sentence-transformers encode, Matryoshka truncation, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from jp_rerank import Embedder

TEXTS = ["富士山は日本一高い山です。", "京都には寺が多い。", "ﾃｽﾄ ＡＢＣ"]
QUERY = "日本で一番高い山は？"


def test_dense_uses_saved_prompts_like_encode_query_and_document(dense_path: Path) -> None:
    emb = Embedder(dense_path, device="cpu", normalize=False)
    st = SentenceTransformer(str(dense_path), device="cpu")
    assert emb.prefix("query") == "query: "
    assert emb.prefix("document") == "passage: "
    docs = emb.embed_documents(TEXTS)
    assert docs.dtype == np.float32
    assert docs.shape == (3, emb.dim)
    ref_docs = st.encode_document(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(docs, ref_docs, atol=1e-5)
    np.testing.assert_allclose(
        emb.embed_query(QUERY), st.encode_query([QUERY], normalize_embeddings=True)[0], atol=1e-5
    )
    # the prompt really changes the vector
    plain = st.encode([QUERY], normalize_embeddings=True)[0]
    assert not np.allclose(emb.embed_query(QUERY), plain, atol=1e-4)


def test_prefix_override_for_model_without_saved_prompts(dense_noprompt_path: Path) -> None:
    emb = Embedder(dense_noprompt_path, device="cpu", normalize=False, query_prefix="検索クエリ: ", document_prefix="")
    st = SentenceTransformer(str(dense_noprompt_path), device="cpu")
    expected = st.encode(["検索クエリ: " + QUERY], normalize_embeddings=True)[0]
    np.testing.assert_allclose(emb.embed_query(QUERY), expected, atol=1e-5)
    assert Embedder(dense_noprompt_path, device="cpu").prefix("query") == ""


def test_normalisation_applies_to_inputs(dense_path: Path) -> None:
    emb = Embedder(dense_path, device="cpu")
    np.testing.assert_allclose(emb.embed_documents(["ﾃｽﾄ　ＡＢＣ"]), emb.embed_documents(["テスト ABC"]), atol=1e-6)


def test_static_embedding_matches_sentence_transformers(static_path: Path) -> None:
    emb = Embedder(static_path, device="cpu", normalize=False)
    st = SentenceTransformer(str(static_path), device="cpu")
    np.testing.assert_allclose(emb.embed_documents(TEXTS), st.encode(TEXTS, normalize_embeddings=True), atol=1e-5)


def test_matryoshka_truncation_renormalises(static_path: Path) -> None:
    full = Embedder(static_path, device="cpu")
    small = Embedder(static_path, device="cpu", truncate_dim=16)
    assert small.dim == 16
    vecs = small.embed_documents(TEXTS)
    assert vecs.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    head = full.embed_documents(TEXTS)[:, :16]
    np.testing.assert_allclose(vecs, head / np.linalg.norm(head, axis=1, keepdims=True), atol=1e-5)
    with pytest.raises(ValueError, match="exceeds the model's dimension"):
        Embedder(static_path, device="cpu", truncate_dim=100_000).load()


def test_bad_inputs(static_path: Path) -> None:
    emb = Embedder(static_path, device="cpu")
    assert emb.embed_documents([]).shape == (0, emb.dim)
    with pytest.raises(ValueError, match="query is empty"):
        emb.embed_query("  ")
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got int"):
        emb.embed_documents(["a", 1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="truncate_dim must be positive"):
        Embedder(static_path, truncate_dim=0)
    with pytest.raises(TypeError, match="query_prefix"):
        Embedder(static_path, query_prefix=3)  # type: ignore[arg-type]
