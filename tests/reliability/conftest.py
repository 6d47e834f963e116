"""Shared engines and broken models for the reliability tests.

The "broken" models are copies of the session's tiny models whose embedding row of the unknown token (``<unk>``)
is NaN: any text containing a character outside the toy vocabulary (e.g. ``猫``) makes the forward pass return
NaN, while other texts score normally. That is how a model with a corrupted weight, or an fp16 overflow, shows up.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jp_rerank import Embedder, Reranker

POISON = "猫"
"""A character outside the toy vocabularies: it tokenizes to ``<unk>``, whose embedding the broken models poison."""


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Run torch ops on one intra-op thread (the tiny models gain nothing from more; shared CI cores do suffer)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def poison() -> str:
    """:data:`POISON`, for test modules (they cannot import this conftest)."""
    return POISON


@pytest.fixture(scope="module")
def module_reranker(xlmr_ce_path: Path) -> Reranker:
    """A reranker of this test module's own (the session's ``reranker`` stays untouched by these attacks)."""
    return Reranker(xlmr_ce_path, device="cpu").load()


@pytest.fixture(scope="module")
def module_embedder(dense_path: Path) -> Embedder:
    """An embedder of this test module's own."""
    return Embedder(dense_path, device="cpu").load()


@pytest.fixture(scope="session")
def nan_ce_path(xlmr_ce_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny cross-encoder that returns NaN for any pair containing :data:`POISON`."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("nan-ce")
    tok = AutoTokenizer.from_pretrained(xlmr_ce_path)
    assert tok.unk_token_id in tok(POISON, add_special_tokens=False)["input_ids"]
    model = AutoModelForSequenceClassification.from_pretrained(xlmr_ce_path)
    with torch.no_grad():
        model.get_input_embeddings().weight[tok.unk_token_id] = float("nan")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def nan_dense_path(dense_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny dense embedder that returns NaN vectors for texts containing :data:`POISON`."""
    import torch
    from sentence_transformers import SentenceTransformer

    out = tmp_path_factory.mktemp("nan-dense")
    st = SentenceTransformer(str(dense_path), device="cpu")
    tok = st.tokenizer
    assert tok.unk_token_id in tok(POISON, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        st[0].auto_model.get_input_embeddings().weight[tok.unk_token_id] = float("nan")
    st.save(str(out))
    return out
