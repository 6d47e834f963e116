"""Training data for rerankers: read JSONL, BEIR folders and CSV into one shape, split it, save it.

Every reader returns a :class:`TrainingSet`: one :class:`TrainQuery` per distinct question (its positive and
negative passages, as text) and the passage pool used for mining hard negatives and for building the held-out
candidates (a BEIR corpus, a ``corpus`` file, or every passage the file mentions).

Formats (chosen by :func:`detect_format` from the path):

* **JSONL**, one question per line: ``{"query": str, "positive": str}`` or ``{"query": str, "positives": [str,
  ...]}``, with optional ``"negatives": [str, ...]`` and ``"qid"``. The FlagEmbedding names ``"pos"`` /
  ``"neg"`` are accepted too. Files written by :func:`save_jsonl` (for instance a mined set) read back as is.
* **BEIR folder**: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``; grades ``> 0`` are
  positives; the corpus is the pool.
* **CSV** (``.csv``; ``.tsv`` is tab-separated): ``query,passage,label`` with or without that header; one row per
  pair, grouped by question; ``label > 0`` is a positive, ``0`` a negative.

A malformed row raises :class:`TrainingDataError` naming the file and line. With ``skip_bad_rows=True`` such rows
are left out instead, counted in :attr:`TrainingSet.skipped` and reported in one warning. Files may start with a
UTF-8 byte-order mark and use CRLF line ends.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import random
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from jp_rerank.checks import DEFAULT_MAX_CHARS, is_blank
from jp_rerank.errors import TrainingDataError

__all__ = [
    "DataFormat",
    "TrainQuery",
    "TrainingSet",
    "detect_format",
    "load_corpus",
    "load_training_data",
    "save_jsonl",
    "split_heldout",
]

logger = logging.getLogger(__name__)

DataFormat = Literal["auto", "jsonl", "beir", "csv"]
"""Input formats of :func:`load_training_data` (``"auto"`` picks one from the path)."""

_ENCODING = "utf-8-sig"  # reads plain UTF-8 too, and drops a leading byte-order mark
_CSV_COLUMNS = ("query", "passage", "label")


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
        builder = _Builder("memory")
        for i, (query, positive) in enumerate(pairs):
            builder.add(f"pair {i}", _text(query, "query", f"pair {i}"), [_text(positive, "positive", f"pair {i}")])
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


# ------------------------------------------------------------------------------------------ building


class _Builder:
    """Collects questions (merging repeats) and the passage pool while a file is read."""

    def __init__(self, stem: str) -> None:
        self.stem = stem
        self.order: list[str] = []
        self.items: dict[str, dict[str, Any]] = {}
        self.pool: dict[str, str] = {}
        self.text_ids: dict[str, str] = {}

    def pool_text(self, text: str, doc_id: str | None = None) -> str:
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
        clash = set(positives) & set(negatives)
        if clash:
            raise TrainingDataError(f"{where}: a passage is both positive and negative: {_short(min(clash))!r}")
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
        for text in positives:
            item["pos"].setdefault(text, None)
            self.pool_text(text)
        for text in negatives:
            item["neg"].setdefault(text, None)
            self.pool_text(text)

    def build(self, *, source: str, fmt: str, skipped: int) -> TrainingSet:
        queries = []
        seen_qids: set[str] = set()
        for text in self.order:
            item = self.items[text]
            qid = str(item["qid"])
            if qid in seen_qids:  # the same qid given to two different questions: keep both, distinctly
                qid = f"{qid}@{item['source']}"
            seen_qids.add(qid)
            queries.append(
                TrainQuery(
                    query=text,
                    positives=tuple(item["pos"]),
                    negatives=tuple(item["neg"]),
                    qid=qid,
                    source=str(item["source"]),
                )
            )
        return TrainingSet(queries=tuple(queries), corpus=dict(self.pool), source=source, format=fmt, skipped=skipped)


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _text(value: object, name: str, where: str) -> str:
    if not isinstance(value, str):
        raise TrainingDataError(f"{where}: {name!r} must be a string, got {type(value).__name__}")
    _check_readable(value, repr(name), where)
    return value


def _check_readable(text: str, name: str, where: str) -> None:
    """Refuse what no model can read, naming the row: blank after normalisation, or over the engine's cap."""
    if is_blank(text):
        what = "empty" if not text.strip() else "only invisible characters (empty once normalised)"
        raise TrainingDataError(f"{where}: {name} is {what}")
    if len(text) > DEFAULT_MAX_CHARS:
        raise TrainingDataError(
            f"{where}: {name} has {len(text):,} characters, over the {DEFAULT_MAX_CHARS:,} a reranker scores"
        )


def _text_list(value: object, name: str, where: str, *, allow_empty: bool) -> list[str]:
    if isinstance(value, str) or not isinstance(value, list):
        raise TrainingDataError(f"{where}: {name!r} must be a list of strings, got {type(value).__name__}")
    if not value and not allow_empty:
        raise TrainingDataError(f"{where}: {name!r} is an empty list; give at least one passage")
    return [_text(v, f"{name}[{i}]", where) for i, v in enumerate(value)]


class _Skipper:
    """Raises on the first bad row, or counts bad rows when skipping is on."""

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.count = 0
        self.first: str | None = None

    def bad(self, error: TrainingDataError) -> None:
        if not self.skip:
            raise error
        self.count += 1
        if self.first is None:
            self.first = str(error)
        logger.debug("skipped bad row: %s", error)

    def report(self, source: str) -> None:
        if self.count:
            logger.warning("%s: skipped %d bad rows (first: %s)", source, self.count, self.first)


# ------------------------------------------------------------------------------------------ readers


def detect_format(path: str | os.PathLike[str]) -> Literal["jsonl", "beir", "csv"]:
    """Guess the format of ``path``: a folder is BEIR, ``.csv``/``.tsv`` is CSV, anything else JSONL.

    Raises:
        FileNotFoundError: If ``path`` does not exist.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> detect_format(folder)
        'beir'
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"training data not found: {p}")
    if p.is_dir():
        return "beir"
    return "csv" if p.suffix.lower() in (".csv", ".tsv") else "jsonl"


def _json_lines(path: Path, skipper: _Skipper) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``("file:line", object)`` for each non-blank line that is a JSON object."""
    with path.open(encoding=_ENCODING, newline=None) as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                skipper.bad(TrainingDataError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})"))
                continue
            if not isinstance(row, dict):
                skipper.bad(TrainingDataError(f"{where}: expected a JSON object, got {type(row).__name__}"))
                continue
            yield where, row


def _first_key(row: dict[str, Any], *names: str) -> str | None:
    return next((name for name in names if name in row), None)


def _read_jsonl(path: Path, skipper: _Skipper) -> _Builder:
    builder = _Builder(path.stem)
    for where, row in _json_lines(path, skipper):
        try:
            query = _text(row.get("query"), "query", where) if "query" in row else None
            if query is None:
                raise TrainingDataError(f"{where}: missing field 'query' (got {sorted(row)})")
            pos_key = _first_key(row, "positives", "positive", "pos")
            if pos_key is None:
                raise TrainingDataError(f"{where}: missing field 'positive' or 'positives' (got {sorted(row)})")
            value = row[pos_key]
            positives = (
                [_text(value, pos_key, where)]
                if pos_key == "positive" or (pos_key == "pos" and isinstance(value, str))
                else _text_list(value, pos_key, where, allow_empty=False)
            )
            neg_key = _first_key(row, "negatives", "neg")
            negatives = _text_list(row[neg_key], neg_key, where, allow_empty=True) if neg_key else []
            qid = row.get("qid", row.get("id"))
            builder.add(where, query, positives, negatives, qid=None if qid is None else str(qid))
        except TrainingDataError as exc:
            skipper.bad(exc)
    return builder


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(encoding=_ENCODING, newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            for cols in reader:
                yield reader.line_num, cols
        except csv.Error as exc:
            raise TrainingDataError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from exc


def _read_csv(path: Path, skipper: _Skipper) -> _Builder:
    builder = _Builder(path.stem)
    grouped: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    columns: tuple[int, int, int] = (0, 1, 2)
    for line_no, cols in _csv_rows(path):
        where = f"{path}:{line_no}"
        if not cols or all(not c.strip() for c in cols):
            continue
        lowered = [c.strip().lower() for c in cols]
        if not order and not grouped and set(_CSV_COLUMNS) <= set(lowered):
            columns = (lowered.index("query"), lowered.index("passage"), lowered.index("label"))
            continue
        try:
            if len(cols) <= max(columns):
                raise TrainingDataError(
                    f"{where}: expected {max(columns) + 1} columns (query, passage, label), got {len(cols)}"
                )
            query = _text(cols[columns[0]], "query", where)
            passage = _text(cols[columns[1]], "passage", where)
            raw = cols[columns[2]].strip()
            try:
                label = float(raw)
            except ValueError:
                raise TrainingDataError(
                    f"{where}: label {raw!r} is not a number (expected a header query,passage,label or rows "
                    "of query, passage, label)"
                ) from None
            if not math.isfinite(label) or label < 0:
                raise TrainingDataError(f"{where}: label must be a finite number >= 0, got {raw!r}")
        except TrainingDataError as exc:
            skipper.bad(exc)
            continue
        group = grouped.get(query)
        if group is None:
            group = grouped[query] = {"where": where, "pos": {}, "neg": {}, "lines": 0}
            order.append(query)
        target, other = ("pos", "neg") if label > 0 else ("neg", "pos")
        if passage in group[other]:
            skipper.bad(TrainingDataError(f"{where}: this passage has the opposite label at {group[other][passage]}"))
            continue
        group[target].setdefault(passage, where)
        group["lines"] += 1
    for query in order:
        group = grouped[query]
        if not group["pos"]:
            error = TrainingDataError(f"{group['where']}: query {_short(query)!r} has no row with label > 0")
            if not skipper.skip:
                raise error
            skipper.count += group["lines"] - 1  # bad() below counts one
            skipper.bad(error)
            continue
        builder.add(group["where"], query, list(group["pos"]), list(group["neg"]))
    return builder


def _passage_text(row: dict[str, Any], where: str, *, with_title: bool) -> str:
    text = row.get("text")
    if not isinstance(text, str):
        raise TrainingDataError(f"{where}: field 'text' missing or not a string")
    title = row.get("title")
    title = title.strip() if isinstance(title, str) else ""
    return f"{title} {text}" if with_title and title else text


def _read_corpus_rows(
    path: Path, skipper: _Skipper, *, with_title: bool, require_id: bool
) -> Iterator[tuple[str | None, str]]:
    for where, row in _json_lines(path, skipper):
        try:
            raw_id = row.get("_id", row.get("id"))
            if require_id and raw_id is None:
                raise TrainingDataError(f"{where}: missing field '_id'")
            text = _passage_text(row, where, with_title=with_title)
            _check_readable(text, "the passage", where)
        except TrainingDataError as exc:
            skipper.bad(exc)
            continue
        yield (None if raw_id is None else str(raw_id)), text


def _qrels_file(root: Path, split: str) -> Path:
    qrels = root / "qrels" / f"{split}.tsv"
    if qrels.is_file():
        return qrels
    available = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
    if len(available) == 1:
        logger.info("%s: no qrels/%s.tsv; using the only judgements file qrels/%s.tsv", root, split, available[0])
        return root / "qrels" / f"{available[0]}.tsv"
    raise TrainingDataError(
        f"BEIR folder {root}: qrels/{split}.tsv not found"
        + (f" (available splits: {', '.join(available)})" if available else "")
    )


def _read_beir(root: Path, skipper: _Skipper, *, split: str, with_title: bool) -> _Builder:
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (root / name).is_file():
            raise TrainingDataError(f"BEIR folder {root}: {name} not found")
    qrels_path = _qrels_file(root, split)
    corpus: dict[str, str] = {}
    for doc_id, text in _read_corpus_rows(root / "corpus.jsonl", skipper, with_title=with_title, require_id=True):
        assert doc_id is not None
        corpus[doc_id] = text
    queries: dict[str, str] = {}
    for where, row in _json_lines(root / "queries.jsonl", skipper):
        try:
            if "_id" not in row:
                raise TrainingDataError(f"{where}: missing field '_id'")
            queries[str(row["_id"])] = _text(row.get("text"), "text", where)
        except TrainingDataError as exc:
            skipper.bad(exc)
    judged: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    with qrels_path.open(encoding=_ENCODING, newline="") as fh:
        for line_no, cols in enumerate(csv.reader(fh, delimiter="\t"), 1):
            where = f"{qrels_path}:{line_no}"
            if not cols or (line_no == 1 and cols[0].strip().lower() in ("query-id", "query_id", "qid")):
                continue
            try:
                if len(cols) < 3:
                    raise TrainingDataError(f"{where}: expected 3 tab-separated columns (query-id, corpus-id, score)")
                qid, did, raw = cols[0].strip(), cols[1].strip(), cols[2].strip()
                try:
                    grade = float(raw)
                except ValueError:
                    raise TrainingDataError(f"{where}: relevance {raw!r} is not a number") from None
                if qid not in queries:
                    raise TrainingDataError(f"{where}: query id {qid!r} is not in queries.jsonl")
                if did not in corpus:
                    raise TrainingDataError(f"{where}: corpus id {did!r} is not in corpus.jsonl")
            except TrainingDataError as exc:
                skipper.bad(exc)
                continue
            entry = judged.get(qid)
            if entry is None:
                entry = judged[qid] = {"where": where, "pos": [], "neg": []}
                order.append(qid)
            entry["pos" if grade > 0 else "neg"].append(did)
    builder = _Builder(root.name)
    for did, text in corpus.items():
        builder.pool_text(text, did)
    for qid in order:
        entry = judged[qid]
        if not entry["pos"]:
            continue  # judged only as irrelevant: nothing to learn from as a training question
        try:
            builder.add(
                entry["where"],
                queries[qid],
                [corpus[d] for d in entry["pos"]],
                [corpus[d] for d in entry["neg"] if corpus[d] not in {corpus[p] for p in entry["pos"]}],
                qid=qid,
            )
        except TrainingDataError as exc:
            skipper.bad(exc)
    return builder


def load_corpus(
    path: str | os.PathLike[str], *, with_title: bool = True, skip_bad_rows: bool = False
) -> dict[str, str]:
    r"""Read a passage pool: a BEIR folder's ``corpus.jsonl``, or a JSONL of ``{"text", "title"?, "_id"|"id"?}``.

    Returns:
        Passage id → text (ids ``"c0"``, ``"c1"``... where the file has none).

    Raises:
        TrainingDataError: On a malformed line (names file and line), unless ``skip_bad_rows``.
        FileNotFoundError: If the file does not exist.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "c.jsonl"
        >>> _ = f.write_text('{"_id": "d1", "title": "富士山", "text": "日本一高い山。"}\n', encoding="utf-8")
        >>> load_corpus(f)
        {'d1': '富士山 日本一高い山。'}
    """
    p = Path(path)
    if p.is_dir():
        p = p / "corpus.jsonl"
    if not p.is_file():
        raise FileNotFoundError(f"corpus file not found: {p}")
    skipper = _Skipper(skip_bad_rows)
    out: dict[str, str] = {}
    for i, (doc_id, text) in enumerate(_read_corpus_rows(p, skipper, with_title=with_title, require_id=False)):
        out[doc_id if doc_id is not None else f"c{i}"] = text
    skipper.report(str(p))
    return out


def load_training_data(
    path: str | os.PathLike[str],
    *,
    data_format: DataFormat = "auto",
    split: str = "train",
    corpus: str | os.PathLike[str] | None = None,
    with_title: bool = True,
    skip_bad_rows: bool = False,
) -> TrainingSet:
    r"""Read training questions from JSONL, a BEIR folder or CSV (see the module notes for each format).

    Args:
        path: The file or BEIR folder.
        data_format: ``"auto"`` (from the path, see :func:`detect_format`), ``"jsonl"``, ``"beir"`` or ``"csv"``.
        split: Which ``qrels/<split>.tsv`` of a BEIR folder (when it is missing and the folder has exactly one
            judgements file, that one is used).
        corpus: A passage pool to add (BEIR folder or JSONL, see :func:`load_corpus`): negatives are mined from
            it and held-out candidates searched in it. Without it the pool is what ``path`` holds.
        with_title: Prefix BEIR / corpus passages with their title (``title + " " + text``).
        skip_bad_rows: Leave malformed rows out (one warning with the count) instead of raising.

    Returns:
        The questions (repeats merged) and the passage pool.

    Raises:
        FileNotFoundError: If ``path`` (or ``corpus``) does not exist.
        TrainingDataError: On a malformed row (names file and line), or when no usable question is left.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "train.jsonl"
        >>> _ = f.write_text('{"query": "富士山の高さは？", "positive": "富士山は3776mです。"}\n', encoding="utf-8")
        >>> ts = load_training_data(f)
        >>> ts.queries[0].positives, ts.format
        (('富士山は3776mです。',), 'jsonl')
    """
    p = Path(path)
    fmt = detect_format(p) if data_format == "auto" else data_format
    if fmt not in ("jsonl", "beir", "csv"):
        raise ValueError(f"data_format must be auto, jsonl, beir or csv, got {data_format!r}")
    if not p.exists():
        raise FileNotFoundError(f"training data not found: {p}")
    if fmt == "beir" and not p.is_dir():
        raise TrainingDataError(f"{p}: a BEIR dataset is a folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    if fmt != "beir" and p.is_dir():
        raise TrainingDataError(f"{p} is a folder; give a {fmt.upper()} file, or data_format='beir'")
    skipper = _Skipper(skip_bad_rows)
    if fmt == "jsonl":
        builder = _read_jsonl(p, skipper)
    elif fmt == "csv":
        builder = _read_csv(p, skipper)
    else:
        builder = _read_beir(p, skipper, split=split, with_title=with_title)
    if corpus is not None:
        for doc_id, text in load_corpus(corpus, with_title=with_title, skip_bad_rows=skip_bad_rows).items():
            builder.pool_text(text, doc_id if doc_id not in builder.pool else None)
    skipper.report(str(p))
    result = builder.build(source=str(p), fmt=fmt, skipped=skipper.count)
    if not result.queries:
        raise TrainingDataError(f"{p}: no training question with a positive passage")
    logger.info(
        "read %s (%s): %d questions, %d pairs, pool of %d passages%s",
        p,
        fmt,
        len(result.queries),
        result.num_pairs,
        len(result.corpus),
        f", {result.skipped} bad rows skipped" if result.skipped else "",
    )
    return result


# ------------------------------------------------------------------------------------------ split / save


def _stable_key(seed: int, text: str) -> str:
    return hashlib.blake2b(f"{seed}\x00{text}".encode(), digest_size=8).hexdigest()


def split_heldout(training_set: TrainingSet, n: int, *, seed: int = 42) -> tuple[TrainingSet, TrainingSet]:
    """Hold out about ``n`` questions for evaluation, keeping questions that share a positive on one side.

    Questions whose positives overlap (e.g. several questions about one paragraph) form one group, and whole
    groups go to the held-out side, so held-out passages were never training positives. The choice depends only
    on ``seed`` and the question texts, not on file order. At most a fifth of the questions is held out.

    Returns:
        ``(train, heldout)``; ``heldout`` is empty when ``n <= 0`` or there are fewer than 10 questions.

    Example:
        >>> ts = TrainingSet.from_pairs([(f"質問{i}", f"文書{i}") for i in range(20)])
        >>> train, held = split_heldout(ts, 3)
        >>> len(train.queries), len(held.queries)
        (17, 3)
    """
    queries = training_set.queries
    limit = min(n, len(queries) // 5)
    if limit <= 0 or len(queries) < 10:
        return training_set, training_set.with_queries(())
    parent = list(range(len(queries)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, q in enumerate(queries):
        for text in q.positives:
            j = owner.setdefault(text, i)
            if j != i:
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(queries)):
        groups.setdefault(find(i), []).append(i)
    ordered = sorted(groups.values(), key=lambda g: _stable_key(seed, min(queries[i].query for i in g)))
    held: set[int] = set()
    for group in ordered:
        if len(held) >= limit:
            break
        if len(held) + len(group) <= limit:
            held.update(group)
    train = [q for i, q in enumerate(queries) if i not in held]
    heldout = [q for i, q in enumerate(queries) if i in held]
    return training_set.with_queries(train), training_set.with_queries(heldout)


def shuffled(items: Sequence[Any], seed: int | str) -> list[Any]:
    """Return a seeded shuffle of ``items`` (string seeds are stable across runs)."""
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


def save_jsonl(training_set: TrainingSet, path: str | os.PathLike[str]) -> Path:
    """Write the questions as JSONL that :func:`load_training_data` reads back (atomically: temp file + rename).

    Each line is ``{"qid", "query", "positives", "negatives"}``. Use it to keep a mined set and train on it again
    later without mining (questions that already have enough negatives are not mined again).

    Returns:
        The path written.

    Example:
        >>> import tempfile
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
