"""The LangChain package: pinned public names, a light import, and only ``langchain_core`` from LangChain."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import langchain_jp_rerank

PACKAGE_DIR = Path(langchain_jp_rerank.__file__).parent


def test_all_is_pinned() -> None:
    assert langchain_jp_rerank.__all__ == [
        "JapaneseCrossEncoder",
        "JapaneseEmbeddings",
        "JapaneseReranker",
        "JapaneseRetriever",
    ]
    for name in langchain_jp_rerank.__all__:
        assert getattr(langchain_jp_rerank, name).__module__.startswith("langchain_jp_rerank.")


def test_import_is_light() -> None:
    heavy = ("torch", "transformers", "sentence_transformers", "bm25s", "faiss", "chromadb", "llama_index")
    code = (
        "import sys, json, langchain_jp_rerank;"
        "langchain_jp_rerank.JapaneseReranker(); langchain_jp_rerank.JapaneseEmbeddings();"
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_only_langchain_core_is_imported() -> None:
    imported: set[str] = set()
    for path in PACKAGE_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    langchain_modules = {m for m in imported if m.startswith("langchain")} - {"langchain_jp_rerank"}
    assert langchain_modules == {"langchain_core"}
