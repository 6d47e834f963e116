"""Session fixtures: tiny random-weight models built once per test session, offline (see ../conftest.py).

Each model fixture returns the ``pathlib.Path`` of a folder built with :mod:`jp_rerank.testing`; tests
load it themselves through the public APIs (``CrossEncoder(str(path))``, ``SentenceTransformer(...)``, ...).
The folders are shared by the whole session: read them, never write into them (copy with
``shutil.copytree`` first if a test must change files). ``reranker`` and ``embedder`` are engines loaded once
from two of them (on CPU), shared by the adapter and pipeline tests: inject them, never reconfigure them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jp_rerank import Embedder, Reranker, testing
from jp_rerank.data import load_demo_corpus, load_demo_queries
from jp_rerank.evaluation.datasets import default_data_dir


@pytest.fixture(scope="session")
def xlmr_ce_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny ``XLMRobertaForSequenceClassification`` cross-encoder with a Unigram tokenizer."""
    return testing.build_xlmr_cross_encoder(tmp_path_factory.mktemp("xlmr-ce"))


@pytest.fixture(scope="session")
def bert_ja_ce_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny ``BertForSequenceClassification`` cross-encoder with a MeCab ``BertJapaneseTokenizer``."""
    return testing.build_bert_ja_cross_encoder(tmp_path_factory.mktemp("bert-ja-ce"))


@pytest.fixture(scope="session")
def dense_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny sentence-transformers embedder with saved ``query: `` / ``passage: `` prompts."""
    return testing.build_dense_embedder(tmp_path_factory.mktemp("dense"))


@pytest.fixture(scope="session")
def dense_noprompt_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny sentence-transformers embedder without saved prompts."""
    return testing.build_dense_embedder(tmp_path_factory.mktemp("dense-noprompt"), prompts=None)


@pytest.fixture(scope="session")
def static_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sentence-transformers ``StaticEmbedding`` model (64 dimensions) over the Unigram tokenizer."""
    return testing.build_static_embedder(tmp_path_factory.mktemp("static"))


@pytest.fixture(scope="session")
def splade_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny sentence-transformers ``SparseEncoder`` (``BertForMaskedLM`` + ``SpladePooling``)."""
    return testing.build_splade_encoder(tmp_path_factory.mktemp("splade"))


@pytest.fixture(scope="session")
def reranker(xlmr_ce_path: Path) -> Reranker:
    """The tiny XLM-R cross-encoder, loaded once on CPU."""
    return Reranker(xlmr_ce_path, device="cpu").load()


@pytest.fixture(scope="session")
def embedder(dense_path: Path) -> Embedder:
    """The tiny dense embedder (with query/document prompts), loaded once on CPU."""
    return Embedder(dense_path, device="cpu").load()


@pytest.fixture
def demo_corpus() -> list[dict[str, str]]:
    """The bundled Japanese passages (a fresh list per test)."""
    return load_demo_corpus()


@pytest.fixture
def demo_queries() -> list[dict[str, object]]:
    """The bundled questions with their relevant passage ids (a fresh list per test)."""
    return load_demo_queries()


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The shared datasets folder (``JP_RERANK_DATA`` or ``../shared/data``); skips the test when absent."""
    path = default_data_dir() or Path(__file__).resolve().parents[2] / "shared" / "data"
    if path is None or not path.is_dir():
        pytest.skip("shared data folder not found (set JP_RERANK_DATA)")
    return path
