from __future__ import annotations

import subprocess
import sys

import llamaindex_jp_rerank


def test_all_is_pinned() -> None:
    assert sorted(llamaindex_jp_rerank.__all__) == [
        "JapaneseEmbedding",
        "JapaneseRerank",
        "JapaneseRetriever",
        "RerankedNode",
    ]
    for name in llamaindex_jp_rerank.__all__:
        assert getattr(llamaindex_jp_rerank, name).__module__.startswith("llamaindex_jp_rerank.")


def test_missing_llama_index_names_the_extra() -> None:
    code = "import sys; sys.modules['llama_index.core'] = None; import llamaindex_jp_rerank"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0
    assert "'llama_index.core' is required" in out.stderr
    assert 'pip install "jp-rerank[llamaindex]"' in out.stderr


def test_import_does_not_load_models_or_torch() -> None:
    code = (
        "import sys, llamaindex_jp_rerank;"
        "print([m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
