"""Read training data (JSONL, BEIR folders, CSV) and passage pools into a :class:`TrainingSet`.

Every reader returns one :class:`~jp_rerank.training.TrainQuery` per distinct question (its positive and negative
passages, as text) and the passage pool used for mining hard negatives and for building the held-out candidates
(a BEIR corpus, a ``corpus`` file, or every passage the file mentions).

Formats (chosen by :func:`detect_format` from the path):

* **JSONL**, one question per line: ``{"query": str, "positive": str}`` or ``{"query": str, "positives": [str,
  ...]}``, with optional ``"negatives": [str, ...]`` and ``"qid"``. The FlagEmbedding names ``"pos"`` /
  ``"neg"`` are accepted too. Files written by :func:`~jp_rerank.training.save_jsonl` (for instance a mined set)
  read back as is.
* **BEIR folder**: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``; grades ``> 0`` are
  positives; the corpus is the pool.
* **CSV** (``.csv``; ``.tsv`` is tab-separated): ``query,passage,label`` with or without that header; one row per
  pair, grouped by question; ``label > 0`` is a positive, ``0`` a negative.

A malformed row raises :class:`TrainingDataError` naming the file and line. With ``skip_bad_rows=True`` such rows
are left out instead, counted in :attr:`TrainingSet.skipped` and reported in one warning. Files are read as bytes and
decoded line by line, so a line that is not valid UTF-8 is one bad row, as is a JSON line with NaN, an integer over
Python's 4300-digit limit or nesting deeper than Python can parse. Files may start with a UTF-8 byte-order mark and
use CRLF line ends.
"""

from __future__ import annotations

import codecs
import csv
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

from jp_rerank.errors import InputFormatError, TrainingDataError
from jp_rerank.records import decode_line, parse_json_line
from jp_rerank.training.trainingset import TrainingSet, TrainingSetBuilder, check_readable, short, text_value

__all__ = ["DataFormat", "detect_format", "load_corpus", "load_training_data"]

logger = logging.getLogger(__name__)

DataFormat = Literal["auto", "jsonl", "beir", "csv"]
"""Input formats of :func:`load_training_data` (``"auto"`` picks one from the path)."""

_CSV_COLUMNS = ("query", "passage", "label")


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


# ------------------------------------------------------------------------------------------ JSONL


def _raw_lines(fh: BinaryIO) -> Iterator[bytes]:
    """The lines of a binary file, ending in LF, CRLF or a lone CR (where text mode would split them)."""
    for chunk in fh:
        yield from chunk.splitlines(keepends=True)


def _json_lines(path: Path, skipper: _Skipper) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``("file:line", object)`` for each non-blank line that is a JSON object.

    The file is read as bytes and each line decoded on its own, so a line that is not UTF-8 is one bad row. Lines
    are strict JSON (:func:`jp_rerank.records.parse_json_line`): no NaN / Infinity, no integer over Python's digit
    limit, no nesting deeper than Python can parse, each refused naming its line.
    """
    with path.open("rb") as fh:
        for line_no, raw in enumerate(_raw_lines(fh), 1):
            where = f"{path}:{line_no}"
            try:
                line = decode_line(raw, line_no, str(path))
                if not line.strip():
                    continue
                row = parse_json_line(line, where)
            except (TrainingDataError, InputFormatError) as exc:  # both name ``where``
                skipper.bad(exc if isinstance(exc, TrainingDataError) else TrainingDataError(str(exc)))
                continue
            if not isinstance(row, dict):
                skipper.bad(TrainingDataError(f"{where}: expected a JSON object, got {type(row).__name__}"))
                continue
            yield where, row


def _first_key(row: dict[str, Any], *names: str) -> str | None:
    return next((name for name in names if name in row), None)


def _text_list(value: object, name: str, where: str, *, allow_empty: bool) -> list[str]:
    if isinstance(value, str) or not isinstance(value, list):
        raise TrainingDataError(f"{where}: {name!r} must be a list of strings, got {type(value).__name__}")
    if not value and not allow_empty:
        raise TrainingDataError(f"{where}: {name!r} is an empty list; give at least one passage")
    return [text_value(v, f"{name}[{i}]", where) for i, v in enumerate(value)]


def _add_jsonl_row(builder: TrainingSetBuilder, where: str, row: dict[str, Any]) -> None:
    if "query" not in row:
        raise TrainingDataError(f"{where}: missing field 'query' (got {sorted(row)})")
    query = text_value(row["query"], "query", where)
    pos_key = _first_key(row, "positives", "positive", "pos")
    if pos_key is None:
        raise TrainingDataError(f"{where}: missing field 'positive' or 'positives' (got {sorted(row)})")
    value = row[pos_key]
    positives = (
        [text_value(value, pos_key, where)]
        if pos_key == "positive" or (pos_key == "pos" and isinstance(value, str))
        else _text_list(value, pos_key, where, allow_empty=False)
    )
    neg_key = _first_key(row, "negatives", "neg")
    negatives = _text_list(row[neg_key], neg_key, where, allow_empty=True) if neg_key else []
    qid = row.get("qid", row.get("id"))
    builder.add(where, query, positives, negatives, qid=None if qid is None else str(qid))


def _read_jsonl(path: Path, skipper: _Skipper) -> TrainingSetBuilder:
    builder = TrainingSetBuilder()
    for where, row in _json_lines(path, skipper):
        try:
            _add_jsonl_row(builder, where, row)
        except TrainingDataError as exc:
            skipper.bad(exc)
    return builder


# ------------------------------------------------------------------------------------------ CSV


def _text_lines(path: Path, bad: dict[int, TrainingDataError]) -> Iterator[str]:
    """The decoded lines of ``path``; a line that is not UTF-8 is decoded with U+FFFD and its error put in ``bad``."""
    with path.open("rb") as fh:
        for line_no, raw in enumerate(_raw_lines(fh), 1):
            try:
                yield decode_line(raw, line_no, str(path))
            except InputFormatError as exc:
                bad[line_no] = TrainingDataError(str(exc))
                yield raw.removeprefix(codecs.BOM_UTF8).decode("utf-8", errors="replace")


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str], TrainingDataError | None]]:
    """Yield ``(last line number, columns, error)`` per record; ``error``: a line of it is not valid UTF-8."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    bad: dict[int, TrainingDataError] = {}
    reader = csv.reader(_text_lines(path, bad), delimiter=delimiter)
    first = 1
    try:
        for cols in reader:
            error = next((bad[n] for n in range(first, reader.line_num + 1) if n in bad), None)
            yield reader.line_num, cols, error
            first = reader.line_num + 1
    except csv.Error as exc:
        raise TrainingDataError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from exc


def _csv_pair(cols: list[str], columns: tuple[int, int, int], where: str) -> tuple[str, str, float]:
    if len(cols) <= max(columns):
        raise TrainingDataError(
            f"{where}: expected {max(columns) + 1} columns (query, passage, label), got {len(cols)}"
        )
    query = text_value(cols[columns[0]], "query", where)
    passage = text_value(cols[columns[1]], "passage", where)
    raw = cols[columns[2]].strip()
    try:
        label = float(raw)
    except ValueError:
        raise TrainingDataError(
            f"{where}: label {raw!r} is not a number (expected a header query,passage,label or rows of query, "
            "passage, label)"
        ) from None
    if not math.isfinite(label) or label < 0:
        raise TrainingDataError(f"{where}: label must be a finite number >= 0, got {raw!r}")
    return query, passage, label


def _csv_groups(path: Path, skipper: _Skipper) -> dict[str, dict[str, Any]]:
    """The rows of a CSV file grouped by question, in file order: ``{query: {"where", "pos", "neg", "lines"}}``."""
    grouped: dict[str, dict[str, Any]] = {}
    columns: tuple[int, int, int] = (0, 1, 2)
    for line_no, cols, error in _csv_rows(path):
        where = f"{path}:{line_no}"
        if error is not None:
            skipper.bad(error)
            continue
        if not cols or all(not c.strip() for c in cols):
            continue
        lowered = [c.strip().lower() for c in cols]
        if not grouped and set(_CSV_COLUMNS) <= set(lowered):
            columns = (lowered.index("query"), lowered.index("passage"), lowered.index("label"))
            continue
        try:
            query, passage, label = _csv_pair(cols, columns, where)
        except TrainingDataError as exc:
            skipper.bad(exc)
            continue
        group = grouped.setdefault(query, {"where": where, "pos": {}, "neg": {}, "lines": 0})
        target, other = ("pos", "neg") if label > 0 else ("neg", "pos")
        if passage in group[other]:
            skipper.bad(TrainingDataError(f"{where}: this passage has the opposite label at {group[other][passage]}"))
            continue
        group[target].setdefault(passage, where)
        group["lines"] += 1
    return grouped


def _read_csv(path: Path, skipper: _Skipper) -> TrainingSetBuilder:
    builder = TrainingSetBuilder()
    for query, group in _csv_groups(path, skipper).items():
        if not group["pos"]:
            error = TrainingDataError(f"{group['where']}: query {short(query)!r} has no row with label > 0")
            if not skipper.skip:
                raise error
            skipper.count += group["lines"] - 1  # bad() below counts one
            skipper.bad(error)
            continue
        builder.add(group["where"], query, list(group["pos"]), list(group["neg"]))
    return builder


# ------------------------------------------------------------------------------------------ corpus and BEIR


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
            check_readable(text, "the passage", where)
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


def _beir_queries(path: Path, skipper: _Skipper) -> dict[str, str]:
    queries: dict[str, str] = {}
    for where, row in _json_lines(path, skipper):
        try:
            if "_id" not in row:
                raise TrainingDataError(f"{where}: missing field '_id'")
            queries[str(row["_id"])] = text_value(row.get("text"), "text", where)
        except TrainingDataError as exc:
            skipper.bad(exc)
    return queries


def _qrels_row(cols: list[str], where: str, queries: dict[str, str], corpus: dict[str, str]) -> tuple[str, str, float]:
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
    return qid, did, grade


def _beir_judgements(
    path: Path, skipper: _Skipper, queries: dict[str, str], corpus: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Query id → ``{"where", "pos": [corpus ids], "neg": [corpus ids]}``, in file order."""
    judged: dict[str, dict[str, Any]] = {}
    for line_no, cols, error in _csv_rows(path):
        where = f"{path}:{line_no}"
        if not cols or (line_no == 1 and cols[0].strip().lower() in ("query-id", "query_id", "qid")):
            continue
        try:
            if error is not None:
                raise error
            qid, did, grade = _qrels_row(cols, where, queries, corpus)
        except TrainingDataError as exc:
            skipper.bad(exc)
            continue
        entry = judged.setdefault(qid, {"where": where, "pos": [], "neg": []})
        entry["pos" if grade > 0 else "neg"].append(did)
    return judged


def _read_beir(root: Path, skipper: _Skipper, *, split: str, with_title: bool) -> TrainingSetBuilder:
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (root / name).is_file():
            raise TrainingDataError(f"BEIR folder {root}: {name} not found")
    qrels_path = _qrels_file(root, split)
    corpus: dict[str, str] = {}
    for doc_id, text in _read_corpus_rows(root / "corpus.jsonl", skipper, with_title=with_title, require_id=True):
        assert doc_id is not None
        corpus[doc_id] = text
    queries = _beir_queries(root / "queries.jsonl", skipper)
    builder = TrainingSetBuilder()
    for did, text in corpus.items():
        builder.pool_text(text, did)
    for qid, entry in _beir_judgements(qrels_path, skipper, queries, corpus).items():
        if not entry["pos"]:
            continue  # judged only as irrelevant: nothing to learn from as a training question
        positives = [corpus[d] for d in entry["pos"]]
        negatives = [corpus[d] for d in entry["neg"] if corpus[d] not in set(positives)]
        try:
            builder.add(entry["where"], queries[qid], positives, negatives, qid=qid)
        except TrainingDataError as exc:
            skipper.bad(exc)
    return builder


# ------------------------------------------------------------------------------------------ entry points


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


def _checked_format(p: Path, data_format: DataFormat) -> Literal["jsonl", "beir", "csv"]:
    fmt = detect_format(p) if data_format == "auto" else data_format
    if fmt not in ("jsonl", "beir", "csv"):
        raise ValueError(f"data_format must be auto, jsonl, beir or csv, got {data_format!r}")
    if not p.exists():
        raise FileNotFoundError(f"training data not found: {p}")
    if fmt == "beir" and not p.is_dir():
        raise TrainingDataError(f"{p}: a BEIR dataset is a folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    if fmt != "beir" and p.is_dir():
        raise TrainingDataError(f"{p} is a folder; give a {fmt.upper()} file, or data_format='beir'")
    return fmt


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
    fmt = _checked_format(p, data_format)
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
