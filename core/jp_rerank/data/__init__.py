"""Bundled Japanese demo corpus and questions (original text written for jp-rerank).

The corpus holds short passages on geography, history, food, technology, seasons, transport, science and
daily life, including near-duplicates and distractors so that reranking has work to do. Each question names
the passages that answer it. The texts are also the training text of the tiny tokenizers in
:mod:`jp_rerank.testing`.

Example:
    >>> from jp_rerank.data import load_demo_corpus, load_demo_queries
    >>> docs = load_demo_corpus()
    >>> sorted(docs[0])
    ['id', 'source', 'text', 'title']
    >>> load_demo_queries()[0]["relevant"][0] in {d["id"] for d in docs}
    True
"""

from __future__ import annotations

import json
from importlib import resources

__all__ = ["CORPUS_FILE", "QUERIES_FILE", "demo_texts", "load_demo_corpus", "load_demo_queries"]

CORPUS_FILE = "demo_corpus.jsonl"
"""File name of the bundled passages (``{"id", "title", "text", "source"}`` per line)."""
QUERIES_FILE = "demo_queries.jsonl"
"""File name of the bundled questions (``{"id", "text", "relevant"}`` per line)."""


def _read_jsonl(name: str) -> list[dict[str, object]]:
    text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    rows: list[dict[str, object]] = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row, dict):
            raise ValueError(f"{name}:{line_no}: expected a JSON object")
        rows.append(row)
    return rows


def load_demo_corpus() -> list[dict[str, str]]:
    """Return the bundled passages, a fresh list on every call.

    Returns:
        One dict per passage with string fields ``id``, ``title``, ``text`` and ``source``.

    Example:
        >>> len(load_demo_corpus()) >= 40
        True
    """
    return [{key: str(value) for key, value in row.items()} for row in _read_jsonl(CORPUS_FILE)]


def load_demo_queries() -> list[dict[str, object]]:
    """Return the bundled questions, a fresh list on every call.

    Returns:
        One dict per question: ``id`` (str), ``text`` (str) and ``relevant`` (list of passage ids).

    Example:
        >>> q = load_demo_queries()[0]
        >>> q["id"], q["text"]
        ('q-01', '富士山の高さは？')
    """
    out: list[dict[str, object]] = []
    for row in _read_jsonl(QUERIES_FILE):
        relevant = row.get("relevant")
        if not isinstance(relevant, list):
            raise ValueError(f"{QUERIES_FILE}: query {row.get('id')!r} has no 'relevant' list")
        out.append({"id": str(row["id"]), "text": str(row["text"]), "relevant": [str(r) for r in relevant]})
    return out


def demo_texts() -> list[str]:
    """Return every bundled text (passage titles, passages and questions), e.g. to train a tokenizer.

    Example:
        >>> "富士山の高さは？" in demo_texts()
        True
    """
    texts: list[str] = []
    for doc in load_demo_corpus():
        texts.extend((doc["title"], doc["text"]))
    texts.extend(str(q["text"]) for q in load_demo_queries())
    return texts
