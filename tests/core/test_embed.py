"""Embedder: prompts, parity with sentence-transformers encode, Matryoshka truncation, errors."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from jp_rerank import Embedder

TEXTS = ["富士山は日本一高い山です。", "京都には寺が多い。", "ﾃｽﾄ ＡＢＣ"]
QUERY = "日本で一番高い山は？"


def test_dense_uses_saved_prompts_like_encode_query_and_document(dense_path: Path) -> None:
    emb = Embedder(dense_path, device="cpu", normalize_text=False, precision="fp32")
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
    emb = Embedder(
        dense_noprompt_path,
        device="cpu",
        normalize_text=False,
        precision="fp32",
        query_prefix="検索クエリ: ",
        document_prefix="",
    )
    st = SentenceTransformer(str(dense_noprompt_path), device="cpu")
    expected = st.encode(["検索クエリ: " + QUERY], normalize_embeddings=True)[0]
    np.testing.assert_allclose(emb.embed_query(QUERY), expected, atol=1e-5)
    assert Embedder(dense_noprompt_path, device="cpu").prefix("query") == ""
    with pytest.raises(ValueError, match=r"side must be 'query' or 'document' \(passages are the document side\)"):
        emb.prefix("passage")  # type: ignore[arg-type]


def test_normalisation_applies_to_inputs(dense_path: Path) -> None:
    emb = Embedder(dense_path, device="cpu")
    np.testing.assert_allclose(emb.embed_documents(["ﾃｽﾄ　ＡＢＣ"]), emb.embed_documents(["テスト ABC"]), atol=1e-6)


def test_static_embedding_matches_sentence_transformers(static_path: Path) -> None:
    emb = Embedder(static_path, device="cpu", normalize_text=False)
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


# ------------------------------------------------------------------------------ models saved without prompts


def _prefix_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "needs query/passage prefixes" in r.getMessage()]


@pytest.mark.usefixtures("tiny_hub")
def test_hub_model_saved_without_prompts_gets_the_presets_prefixes_through_the_alias() -> None:
    # The session's HF cache holds me5-small's stand-in saved as the real upload is: no prompts.
    emb = Embedder("me5-small", device="cpu", normalize_text=False, precision="fp32")
    st = SentenceTransformer(str(emb.model_folder()), device="cpu")  # the same cached snapshot, loaded by path
    assert not any(st.prompts.get(side) for side in ("query", "document"))  # sentence-transformers has none
    assert (emb.prefix("query"), emb.prefix("document")) == ("query: ", "passage: ")
    np.testing.assert_allclose(
        emb.embed_query(QUERY), st.encode(["query: " + QUERY], normalize_embeddings=True)[0], atol=1e-5
    )
    np.testing.assert_allclose(
        emb.embed_documents(TEXTS), st.encode(["passage: " + t for t in TEXTS], normalize_embeddings=True), atol=1e-5
    )
    # what sentence-transformers' own encode_query gives such a model: no prefix, a different vector
    assert not np.allclose(emb.embed_query(QUERY), st.encode_query([QUERY], normalize_embeddings=True)[0], atol=1e-4)


def test_local_folder_saved_without_prompts_with_and_without_preset(dense_noprompt_path: Path, tmp_path: Path) -> None:
    assert Embedder(dense_noprompt_path).prefix("query") == ""  # an unknown folder: no prefix, no preset
    named = Embedder(dense_noprompt_path, preset="me5-small")
    assert (named.prefix("query"), named.prefix("document")) == ("query: ", "passage: ")
    assert named.preset is not None
    assert named.preset.alias == "me5-small"
    copy = tmp_path / "multilingual-e5-small"  # as `hf download intfloat/multilingual-e5-small --local-dir` names it
    shutil.copytree(dense_noprompt_path, copy)
    recognised = Embedder(copy)
    assert (recognised.prefix("query"), recognised.prefix("document")) == ("query: ", "passage: ")
    with pytest.raises(KeyError, match="unknown model preset 'me5-smal'"):
        Embedder(dense_noprompt_path, preset="me5-smal")


def test_saved_prompts_win_over_the_preset_and_empty_ones_count_as_missing(dense_path: Path) -> None:
    emb = Embedder(dense_path, preset="ruri-v3-30m")  # the model's own saved prompts come first
    assert (emb.prefix("query"), emb.prefix("document")) == ("query: ", "passage: ")
    override = Embedder(dense_path, preset="me5-small", query_prefix="", document_prefix="文書: ")
    assert (override.prefix("query"), override.prefix("document")) == ("", "文書: ")  # arguments come first


def test_a_prefix_family_without_prefixes_warns_once_per_model(
    dense_noprompt_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "multilingual-e5-small-finetuned"  # an E5 model, but no preset of that name
    shutil.copytree(dense_noprompt_path, folder)
    with caplog.at_level(logging.WARNING, logger="jp_rerank.embed.dense"):
        for _ in range(3):  # several engines, loads and calls
            emb = Embedder(folder, device="cpu")
            emb.embed_query(QUERY)
            emb.embed_documents(TEXTS)
    notes = _prefix_warnings(caplog)
    assert len(notes) == 1
    assert "multilingual-E5 model" in notes[0]
    assert "preset=... (e.g. 'me5-small')" in notes[0]
    caplog.clear()
    other = tmp_path / "ruri-v3-30m-local-copy-v2"
    shutil.copytree(dense_noprompt_path, other)
    with caplog.at_level(logging.WARNING, logger="jp_rerank.embed.dense"):
        Embedder(other).load()
        Embedder(folder, preset="me5-small").load()  # with its preset: prefixes, no warning
        Embedder(folder, query_prefix="query: ", document_prefix="passage: ").load()
    assert [("Ruri" in n) for n in _prefix_warnings(caplog)] == [True]


def test_show_progress_bar_reaches_sentence_transformers(dense_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    Embedder(dense_path, device="cpu").embed_documents(TEXTS)
    assert "Batches" not in capfd.readouterr().err
    Embedder(dense_path, device="cpu", show_progress_bar=True).embed_documents(TEXTS)
    assert "Batches" in capfd.readouterr().err
