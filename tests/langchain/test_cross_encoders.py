"""JapaneseCrossEncoder: input-order scores, mixed queries, and the one-line switch in CrossEncoderReranker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
from langchain_core.cross_encoders import BaseCrossEncoder
from langchain_core.documents import Document
from sentence_transformers import CrossEncoder

from jp_rerank import Reranker
from jp_rerank.data import load_demo_corpus
from langchain_jp_rerank import JapaneseCrossEncoder, JapaneseReranker

Q1 = "富士山の高さは？"
Q2 = "日本で一番長い川は何ですか？"


@pytest.fixture(scope="module")
def passages() -> list[str]:
    return [row["text"] for row in load_demo_corpus()[:8]]


def test_is_a_langchain_cross_encoder(reranker: Reranker) -> None:
    assert isinstance(JapaneseCrossEncoder(reranker=reranker), BaseCrossEncoder)


def test_scores_match_sentence_transformers(xlmr_ce_path: Path, passages: list[str]) -> None:
    pairs = [(Q1, p) for p in passages]
    got = JapaneseCrossEncoder(model_name=xlmr_ce_path, device="cpu", model_kwargs={"precision": "fp32"}).score(pairs)
    reference = CrossEncoder(str(xlmr_ce_path), device="cpu").predict(pairs)  # sigmoid for one-label models
    assert all(type(s) is float for s in got)
    np.testing.assert_allclose(got, reference, atol=1e-5)


def test_mixed_queries_keep_input_order(reranker: Reranker, passages: list[str]) -> None:
    pairs = [(Q1 if i % 3 else Q2, p) for i, p in enumerate(passages)]
    got = JapaneseCrossEncoder(reranker=reranker).score(pairs)
    expected = [float(reranker.score(q, [p])[0]) for q, p in pairs]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_empty_and_bad_pairs(reranker: Reranker) -> None:
    encoder = JapaneseCrossEncoder(reranker=reranker)
    assert encoder.score([]) == []
    with pytest.raises(TypeError, match=r"pairs\[1\] must be a \(query, passage\) pair"):
        encoder.score([(Q1, "a"), "not a pair"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"pairs\[0\]\[1\] must be a str"):
        encoder.score([(Q1, None)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="query is empty"):
        encoder.score([("", "a")])
    with pytest.raises(ValueError, match="either reranker= or model"):
        JapaneseCrossEncoder(reranker=reranker, model_name="xsmall")


def test_drop_in_for_cross_encoder_reranker(reranker: Reranker) -> None:
    docs = [Document(row["text"], id=row["id"]) for row in load_demo_corpus()[:10]]
    via_classic = CrossEncoderReranker(model=JapaneseCrossEncoder(reranker=reranker), top_n=3)
    ours = JapaneseReranker(reranker=reranker, top_n=3)
    assert [d.id for d in via_classic.compress_documents(docs, Q1)] == [d.id for d in ours.compress_documents(docs, Q1)]


def test_the_hugging_face_cross_encoder_swap_of_the_docstring(xlmr_ce_path: Path) -> None:
    """``HuggingFaceCrossEncoder(model_name=..., model_kwargs=...)`` → ``JapaneseCrossEncoder(...)``, same arguments."""
    docs = [Document(row["text"], id=row["id"]) for row in load_demo_corpus()[:10]]
    encoder = JapaneseCrossEncoder(model_name=str(xlmr_ce_path), model_kwargs={"device": "cpu", "precision": "fp32"})
    assert encoder.model_name == str(xlmr_ce_path)
    ranked = CrossEncoderReranker(model=encoder, top_n=3).compress_documents(docs, Q1)
    scores = CrossEncoder(str(xlmr_ce_path), device="cpu").predict([(Q1, d.page_content) for d in docs])
    assert [d.id for d in ranked] == [docs[i].id for i in np.argsort(-scores, kind="stable")[:3]]
    assert "HuggingFaceCrossEncoder(model_name=" in str(JapaneseCrossEncoder.__doc__)
