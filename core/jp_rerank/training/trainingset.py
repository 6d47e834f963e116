"""The training set in memory: :class:`TrainQuery`, :class:`TrainingSet`, and :func:`save_jsonl` to keep one.

Every reader of :mod:`jp_rerank.training.readers` fills a :class:`TrainingSetBuilder`, which merges repeated
questions and collects the passage pool (the passages searched for hard negatives and held-out candidates).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jp_rerank.checks import DEFAULT_MAX_CHARS, is_blank
from jp_rerank.errors import TrainingDataError

__all__ = ["TrainQuery", "TrainingSet", "TrainingSetBuilder", "check_readable", "save_jsonl", "short", "text_value"]


@dataclass(frozen=True)
class TrainQuery:
    """One question with its relevant passages and, optionally, known irrelevant ones.

    Attributes:
        query: The question.
        positives: Relevant passages (text), at least one.
        negatives: Irrelevant passages (text): given in the data, or mined (see
            :func:`jp_rerank.training.mine_hard_negatives`).
        qid: An id for the question (the BEIR query id, the ``qid`` field, or ``"<file>:<line>"``).
        source: Where the question was read (``"file:line"``), for messages.

    Example:
        >>> TrainQuery("富士山の高さは？", ("富士山は3776mです。",)).positives
        ('富士山は3776mです。',)
    """

    query: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...] = ()
    qid: str = ""
    source: str = ""


@dataclass(frozen=True)
class TrainingSet:
    """Questions to train on plus the passage pool they come from.

    Attributes:
        queries: One entry per distinct question, in file order.
        corpus: Passage id → text: the pool searched for hard negatives and held-out candidates.
        source: The file or folder read.
        format: ``"jsonl"``, ``"beir"``, ``"csv"`` or ``"memory"``.
        skipped: Rows left out by ``skip_bad_rows``.

    Example:
        >>> ts = TrainingSet.from_pairs([("富士山の高さは？", "富士山は3776mです。")])
        >>> len(ts.queries), len(ts.corpus)
        (1, 1)
    """

    queries: tuple[TrainQuery, ...]
    corpus: dict[str, str] = field(default_factory=dict)
    source: str = ""
    format: str = "memory"
    skipped: int = 0

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]], *, corpus: Iterable[str] = ()) -> TrainingSet:
        """Build a set from ``(question, relevant passage)`` pairs; repeated questions are merged.

        Args:
            pairs: ``(query, positive)`` tuples.
            corpus: More passages for the pool (besides the positives).
        """
        builder = TrainingSetBuilder()
        for i, (query, positive) in enumerate(pairs):
            where = f"pair {i}"
            builder.add(where, text_value(query, "query", where), [text_value(positive, "positive", where)])
        for text in corpus:
            builder.pool_text(text)
        return builder.build(source="memory", fmt="memory", skipped=0)

    @property
    def num_pairs(self) -> int:
        """Number of (question, passage) pairs: every positive and every negative."""
        return sum(len(q.positives) + len(q.negatives) for q in self.queries)

    def with_queries(self, queries: Sequence[TrainQuery]) -> TrainingSet:
        """Return a copy holding ``queries`` instead (same pool and source)."""
        return replace(self, queries=tuple(queries))


class TrainingSetBuilder:
    """Collects questions (merging repeats) and the passage pool while a file is read.

    Example:
        >>> b = TrainingSetBuilder()
        >>> b.add("a.jsonl:1", "質問", ["文書"])
        >>> b.add("a.jsonl:2", "質問", ["別の文書"])
        >>> b.build(source="a.jsonl", fmt="jsonl", skipped=0).queries[0].positives
        ('文書', '別の文書')
    """

    def __init__(self) -> None:
        self.order: list[str] = []
        self.items: dict[str, dict[str, Any]] = {}
        self.pool: dict[str, str] = {}
        self.text_ids: dict[str, str] = {}

    def pool_text(self, text: str, doc_id: str | None = None) -> str:
        """Add a passage to the pool (once per text) and return its id."""
        known = self.text_ids.get(text)
        if known is not None:
            return known
        did = doc_id if doc_id is not None else f"p{len(self.pool)}"
        while did in self.pool:  # an explicit id clashing with a generated one
            did = f"{did}_"
        self.pool[did] = text
        self.text_ids[text] = did
        return did

    def add(
        self,
        where: str,
        query: str,
        positives: Sequence[str],
        negatives: Sequence[str] = (),
        qid: str | None = None,
    ) -> None:
        """Add a question read at ``where``, merged with an earlier one of the same text.

        Raises:
            TrainingDataError: A passage is both positive and negative for the question.
        """
        clash = set(positives) & set(negatives)
        if clash:
            raise TrainingDataError(f"{where}: a passage is both positive and negative: {short(min(clash))!r}")
        item = self.items.get(query)
        if item is None:
            item = {"qid": qid or where, "source": where, "pos": {}, "neg": {}}
            self.items[query] = item
            self.order.append(query)
        elif set(positives) & set(item["neg"]) or set(negatives) & set(item["pos"]):
            raise TrainingDataError(
                f"{where}: contradicts {item['source']} for the same query (a passage is positive in one, negative "
                "in the other)"
            )
        for key, texts in (("pos", positives), ("neg", negatives)):
            for text in texts:
                item[key].setdefault(text, None)
                self.pool_text(text)

    def build(self, *, source: str, fmt: str, skipped: int) -> TrainingSet:
        """The questions collected so far, in reading order, with the pool."""
        queries = []
        seen_qids: set[str] = set()
        for text in self.order:
            item = self.items[text]
            qid = str(item["qid"])
            if qid in seen_qids:  # the same qid given to two different questions: keep both, distinctly
                qid = f"{qid}@{item['source']}"
            seen_qids.add(qid)
            positives, negatives = tuple(item["pos"]), tuple(item["neg"])
            queries.append(TrainQuery(text, positives, negatives, qid=qid, source=str(item["source"])))
        return TrainingSet(queries=tuple(queries), corpus=dict(self.pool), source=source, format=fmt, skipped=skipped)


def short(text: str, n: int = 40) -> str:
    """``text`` cut to ``n`` characters for a message."""
    return text if len(text) <= n else text[: n - 1] + "…"


def text_value(value: object, name: str, where: str) -> str:
    """Return ``value`` if it is a readable string, else raise :class:`TrainingDataError` naming the field."""
    if not isinstance(value, str):
        raise TrainingDataError(f"{where}: {name!r} must be a string, got {type(value).__name__}")
    check_readable(value, repr(name), where)
    return value


def check_readable(text: str, name: str, where: str) -> None:
    """Refuse what no model can read, naming the row: blank after normalisation, over the engine's cap, not text."""
    if is_blank(text):
        what = "empty" if not text.strip() else "only invisible characters (empty once normalised)"
        raise TrainingDataError(f"{where}: {name} is {what}")
    if len(text) > DEFAULT_MAX_CHARS:
        raise TrainingDataError(
            f"{where}: {name} has {len(text):,} characters, over the {DEFAULT_MAX_CHARS:,} a reranker scores"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate such as JSON's "\ud800": no file or tokenizer takes it
        raise TrainingDataError(
            f"{where}: {name} holds a lone surrogate U+{ord(text[exc.start]):04X} at character {exc.start}, which is "
            "not valid Unicode text"
        ) from None


def save_jsonl(training_set: TrainingSet, path: str | os.PathLike[str]) -> Path:
    """Write the questions as JSONL that :func:`load_training_data` reads back (atomically: temp file + rename).

    Each line is ``{"qid", "query", "positives", "negatives"}``. Use it to keep a mined set and train on it again
    later without mining (questions that already have enough negatives are not mined again).

    Returns:
        The path written.

    Example:
        >>> import tempfile
        >>> from jp_rerank.training import load_training_data
        >>> ts = TrainingSet.from_pairs([("質問", "文書")])
        >>> out = save_jsonl(ts, tempfile.mkdtemp() + "/mined.jsonl")
        >>> load_training_data(out).queries[0].positives
        ('文書',)

    Raises:
        TypeError: ``training_set`` is not a :class:`TrainingSet` (e.g. the ``(set, stats)`` pair that
            :func:`~jp_rerank.training.mine_hard_negatives` returns).
    """
    if not isinstance(training_set, TrainingSet):
        hint = " (mine_hard_negatives returns (set, stats): pass the set)" if isinstance(training_set, tuple) else ""
        raise TypeError(f"save_jsonl takes a TrainingSet, not {type(training_set).__name__}{hint}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            for q in training_set.queries:
                row = {"qid": q.qid, "query": q.query, "positives": list(q.positives), "negatives": list(q.negatives)}
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
