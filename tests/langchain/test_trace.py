"""The README's trace of one LangChain rerank is the path a real call takes (issue 22: each function once, in order).

A profiled warm ``compress_documents`` call on a real (tiny) cross-encoder lists the jp-rerank functions it enters;
the README's numbered list under "One LangChain rerank, top to bottom" must be exactly that list.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from langchain_core.documents import Document

import jp_rerank
import langchain_jp_rerank
from langchain_jp_rerank import JapaneseReranker

README = Path(__file__).resolve().parents[2] / "README.md"
ROOTS = {
    str(Path(jp_rerank.__file__).parent): "jp_rerank",
    str(Path(langchain_jp_rerank.__file__).parent): "langchain_jp_rerank",
}


def _readme_trace() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("One LangChain rerank, top to bottom") : text.index("## Layout")]
    return re.findall(r"^\d+\. `([\w/.]+\.py:[\w.]+)`", section, flags=re.MULTILINE)


def _profiled_trace(reranker: JapaneseReranker, docs: list[Document], query: str) -> list[str]:
    seen: list[str] = []

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        code = frame.f_code
        if event != "call" or code.co_name.startswith("<"):  # comprehensions, lambdas, generated __init__s
            return
        for root, package in ROOTS.items():
            if code.co_filename.startswith(root + "/"):
                name = f"{package}/{Path(code.co_filename).relative_to(root).as_posix()}:{code.co_qualname}"
                if name not in seen:
                    seen.append(name)

    sys.setprofile(profile)
    try:
        reranker.compress_documents(docs, query)
    finally:
        sys.setprofile(None)
    return seen


@pytest.mark.skipif(sys.version_info < (3, 11), reason="code objects name their class from Python 3.11")
def test_the_readme_trace_is_the_path_of_a_real_call(xlmr_ce_path: Path) -> None:
    reranker = JapaneseReranker(model=str(xlmr_ce_path), model_kwargs={"device": "cpu"})
    docs = [Document("富士山は日本一高い山です。", id="a"), Document("京都には寺が多い。"), Document("東京は首都。")]
    reranker.compress_documents(docs, "富士山の高さは？")  # loads the model: the trace is of a warm call
    written = _readme_trace()
    assert written, "the README lists no trace"
    assert _profiled_trace(reranker, docs, "富士山の高さは？") == written
    before_forward = written.index("jp_rerank/rerank/backends.py:TorchBackend.logits")  # the function running it
    assert before_forward <= 14  # issue 22: at most half of the 28 it counted
