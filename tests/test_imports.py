"""Public names are pinned, and importing the engine stays light (no torch/faiss/chromadb/langchain/llama_index)."""

from __future__ import annotations

import json
import subprocess
import sys

import jp_rerank

HEAVY = (
    "torch",
    "transformers",
    "sentence_transformers",
    "faiss",
    "chromadb",
    "langchain_core",
    "llama_index",
)


def test_engine_all_is_pinned() -> None:
    assert sorted(jp_rerank.__all__) == sorted(
        [
            "DEFAULT_EMBEDDER",
            "DEFAULT_RERANKER",
            "DEFAULT_SPARSE",
            "BM25Index",
            "DenseRetriever",
            "Embedder",
            "FirstStage",
            "IndexCorruptedError",
            "IndexMismatchError",
            "JpRerankError",
            "ModelLoadError",
            "ModelPreset",
            "RerankResult",
            "Reranker",
            "SearchHit",
            "SparseEmbedder",
            "SparseIndex",
            "TwoStageRetriever",
            "__version__",
            "get_preset",
            "list_presets",
            "normalize_text",
            "train",
        ]
    )
    for name in jp_rerank.__all__:
        assert hasattr(jp_rerank, name)


def test_import_does_not_load_heavy_modules() -> None:
    code = (
        "import sys, json, jp_rerank, jp_rerank.cli, jp_rerank.index, jp_rerank.lexical, jp_rerank.pipeline,"
        " jp_rerank.evaluation, jp_rerank.fusion, jp_rerank.testing;"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
