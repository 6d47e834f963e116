"""Retrieval datasets: BEIR-format folders, and the JQaRA / JaCWIR reranking sets.

A BEIR folder holds ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``. For reranking sets, where
each question comes with a fixed list of candidate passages, the folder also holds ``candidates/<split>.tsv``
(``query-id``, ``corpus-id`` per line, in candidate order). :func:`save_beir` writes that layout, so a set
fetched once from the Hugging Face hub can be kept as a local copy and loaded offline with :func:`load_beir`.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jp_rerank.errors import DatasetUnavailableError
from jp_rerank.extras import require

__all__ = [
    "DATA_ENV",
    "BeirDataset",
    "DatasetUnavailableError",
    "default_data_dir",
    "jacwir_from_rows",
    "jqara_from_rows",
    "load_beir",
    "load_jacwir",
    "load_jqara",
    "save_beir",
]

logger = logging.getLogger(__name__)

DATA_ENV = "JP_RERANK_DATA"
"""Environment variable naming a folder of datasets (e.g. ``../shared/data``)."""

JQARA_REPO = "hotchpotch/JQaRA"
JACWIR_REPO = "hotchpotch/JaCWIR"

_QUERY_ID_HEADERS = {"query-id", "query_id", "qid"}


@dataclass(frozen=True)
class BeirDataset:
    """A retrieval dataset: passages, questions and graded relevance judgements.

    Attributes:
        corpus: Passage id → ``{"title": ..., "text": ...}``.
        queries: Query id → question text (only queries that have judgements in ``qrels``).
        qrels: Query id → {passage id → relevance grade}.
        name: Folder name of the dataset.
        doc_ids: Passage ids in corpus order.
        candidates: Query id → candidate passage ids to rerank, in candidate order (reranking sets only;
            empty for plain retrieval sets).

    Example:
        >>> ds = BeirDataset(
        ...     corpus={"d1": {"title": "富士山", "text": "日本一高い山。"}},
        ...     queries={"q1": "日本一高い山は？"},
        ...     qrels={"q1": {"d1": 1}},
        ...     doc_ids=["d1"],
        ... )
        >>> ds.passage("d1", with_title=True)
        '富士山 日本一高い山。'
    """

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    name: str = ""
    doc_ids: list[str] = field(default_factory=list)
    candidates: dict[str, list[str]] = field(default_factory=dict)

    def passage(self, doc_id: str, *, with_title: bool = False) -> str:
        """Return one passage's text (``title + " " + text`` when ``with_title`` and it has a title).

        Raises:
            KeyError: If ``doc_id`` is not in the corpus.
        """
        try:
            doc = self.corpus[doc_id]
        except KeyError:
            raise KeyError(f"passage id {doc_id!r} is not in the corpus of dataset {self.name!r}") from None
        text, title = doc.get("text", ""), doc.get("title", "")
        return f"{title} {text}" if with_title and title else text

    def passages(self, *, with_title: bool = False) -> list[str]:
        """Return passage texts in ``doc_ids`` order (``title + " " + text`` when ``with_title``)."""
        return [self.passage(doc_id, with_title=with_title) for doc_id in self.doc_ids]


def _iter_jsonl(path: Path) -> Iterator[dict[str, object]]:
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or "_id" not in row:
                raise ValueError(f"{path}:{line_no}: expected an object with an '_id' field")
            yield row


def _iter_tsv(path: Path, n_cols: int) -> Iterator[tuple[int, list[str]]]:
    with path.open(encoding="utf-8", newline="") as fh:
        for line_no, cols in enumerate(csv.reader(fh, delimiter="\t"), 1):
            if not cols or (line_no == 1 and cols[0] in _QUERY_ID_HEADERS):
                continue
            if len(cols) < n_cols:
                raise ValueError(f"{path}:{line_no}: expected {n_cols} tab-separated columns")
            yield line_no, cols


def _read_candidates(path: Path, corpus: Mapping[str, object], queries: Mapping[str, str]) -> dict[str, list[str]]:
    candidates: dict[str, list[str]] = {}
    for line_no, cols in _iter_tsv(path, 2):
        qid, did = cols[0], cols[1]
        if did not in corpus:
            raise ValueError(f"{path}:{line_no}: candidate {did!r} is not in corpus.jsonl")
        if qid in queries:
            candidates.setdefault(qid, []).append(did)
    return candidates


def load_beir(path: str | os.PathLike[str], *, split: str = "test") -> BeirDataset:
    """Load a BEIR-format folder (with ``candidates/<split>.tsv`` when it is a reranking set).

    Args:
        path: Folder holding ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``, and optionally
            ``candidates/<split>.tsv``.
        split: Which qrels (and candidates) file to read.

    Returns:
        The dataset, with queries (and candidates) restricted to those that have judgements.

    Raises:
        FileNotFoundError: If a required file is missing (the message names it).
        ValueError: If a file is malformed (the message names file and line).

    Example:
        >>> import os
        >>> ds = load_beir(os.environ["JP_RERANK_DATA"] + "/jsquad-valid")  # doctest: +SKIP
        >>> len(ds.corpus)  # doctest: +SKIP
        1145
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"BEIR dataset folder not found: {root}")
    corpus_path, queries_path = root / "corpus.jsonl", root / "queries.jsonl"
    qrels_path = root / "qrels" / f"{split}.tsv"
    for required in (corpus_path, queries_path, qrels_path):
        if not required.is_file():
            raise FileNotFoundError(f"BEIR dataset file not found: {required}")
    corpus: dict[str, dict[str, str]] = {}
    for row in _iter_jsonl(corpus_path):
        corpus[str(row["_id"])] = {"title": str(row.get("title") or ""), "text": str(row.get("text") or "")}
    all_queries = {str(row["_id"]): str(row.get("text") or "") for row in _iter_jsonl(queries_path)}
    qrels: dict[str, dict[str, int]] = {}
    for line_no, cols in _iter_tsv(qrels_path, 3):
        qid, did, grade = cols[0], cols[1], cols[2]
        try:
            qrels.setdefault(qid, {})[did] = int(float(grade))
        except ValueError as exc:
            raise ValueError(f"{qrels_path}:{line_no}: relevance {grade!r} is not a number") from exc
    queries = {qid: all_queries[qid] for qid in qrels if qid in all_queries}
    candidates_path = root / "candidates" / f"{split}.tsv"
    candidates = _read_candidates(candidates_path, corpus, queries) if candidates_path.is_file() else {}
    return BeirDataset(
        corpus=corpus,
        queries=queries,
        qrels=qrels,
        name=root.name,
        doc_ids=list(corpus),
        candidates=candidates,
    )


def _write_atomic(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.writelines(lines)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_beir(
    dataset: BeirDataset, path: str | os.PathLike[str], *, split: str = "test", overwrite: bool = False
) -> Path:
    """Write ``dataset`` as a BEIR folder that :func:`load_beir` reads back (the local-copy format).

    Writes ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv`` and, when the dataset has candidates,
    ``candidates/<split>.tsv``; each file is written to a temporary name and renamed into place.

    Args:
        dataset: The dataset to write.
        path: Target folder (created if needed).
        split: Name of the qrels/candidates files.
        overwrite: Replace files that already exist.

    Returns:
        The folder path.

    Raises:
        FileExistsError: If a target file exists and ``overwrite`` is false.

    Example:
        >>> import tempfile
        >>> ds = BeirDataset({"d1": {"title": "", "text": "本文"}}, {"q1": "質問"}, {"q1": {"d1": 1}})
        >>> folder = save_beir(ds, tempfile.mkdtemp() + "/tiny")
        >>> load_beir(folder).qrels
        {'q1': {'d1': 1}}
    """
    root = Path(path)
    files = {
        "corpus": root / "corpus.jsonl",
        "queries": root / "queries.jsonl",
        "qrels": root / "qrels" / f"{split}.tsv",
        "candidates": root / "candidates" / f"{split}.tsv",
    }
    if not overwrite:
        for target in files.values():
            if target.exists():
                raise FileExistsError(f"{target} already exists; pass overwrite=True to replace it")
    doc_ids = dataset.doc_ids or list(dataset.corpus)

    def row(obj: dict[str, str]) -> str:
        return json.dumps(obj, ensure_ascii=False) + "\n"

    corpus = ((did, dataset.corpus[did]) for did in doc_ids)
    _write_atomic(
        files["corpus"],
        (row({"_id": did, "title": doc.get("title", ""), "text": doc.get("text", "")}) for did, doc in corpus),
    )
    _write_atomic(files["queries"], (row({"_id": qid, "text": text}) for qid, text in dataset.queries.items()))
    qrels_lines = [f"{qid}\t{did}\t{grade}\n" for qid, judged in dataset.qrels.items() for did, grade in judged.items()]
    _write_atomic(files["qrels"], ["query-id\tcorpus-id\tscore\n", *qrels_lines])
    if dataset.candidates:
        cand_lines = [f"{qid}\t{did}\n" for qid, dids in dataset.candidates.items() for did in dids]
        _write_atomic(files["candidates"], ["query-id\tcorpus-id\n", *cand_lines])
    return root


def default_data_dir() -> Path | None:
    """Return the folder named by ``JP_RERANK_DATA`` (``None`` when it is not set).

    Example:
        >>> import os
        >>> os.environ.pop(DATA_ENV, None) and None
        >>> default_data_dir() is None
        True
    """
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else None


# --- JQaRA / JaCWIR --------------------------------------------------------------------------------


def _field(row: Mapping[str, Any], name: str, where: str) -> Any:
    try:
        return row[name]
    except KeyError:
        raise ValueError(f"{where}: missing column {name!r} (got {sorted(row)})") from None


def _shuffled(ids: list[str], seed: str) -> list[str]:
    # A fixed pseudo-random order (string seeds are stable across runs) so that candidate order, which breaks
    # score ties, cannot leak the labels (hub rows may list positives first).
    out = list(ids)
    random.Random(seed).shuffle(out)
    return out


def jqara_from_rows(rows: Iterable[Mapping[str, Any]], *, name: str = "jqara") -> BeirDataset:
    """Build a reranking dataset from JQaRA rows (one row per question–passage pair, as on the hub).

    Each row needs ``q_id``, ``question``, ``passage_row_id``, ``title``, ``text`` and ``label``. Every
    question keeps its candidate passages (100 in JQaRA), judged with their label (``1`` relevant, ``0``
    not); passages are shared by id across questions. Candidate lists are put in a fixed pseudo-random order
    (see the module note in :mod:`jp_rerank.evaluation.metrics` on ties). Score passages as ``title + " " + text``
    (``with_title=True``).

    Raises:
        ValueError: If a column is missing or there are no rows.

    Example:
        >>> rows = [
        ...     {"q_id": "1", "question": "日本一高い山は？", "passage_row_id": 7, "title": "富士山",
        ...      "text": "日本一高い山。", "label": 1},
        ... ]
        >>> jqara_from_rows(rows).candidates
        {'1': ['7']}
    """
    corpus: dict[str, dict[str, str]] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    ordered: dict[str, list[str]] = {}
    renamed = 0
    for i, row in enumerate(rows):
        where = f"{name} row {i}"
        qid = str(_field(row, "q_id", where))
        pid = str(_field(row, "passage_row_id", where))
        doc = {"title": str(_field(row, "title", where) or ""), "text": str(_field(row, "text", where) or "")}
        if corpus.get(pid, doc) != doc:  # same id, different text: keep both under distinct ids
            pid, renamed = f"{pid}@{qid}", renamed + 1
        corpus[pid] = doc
        queries.setdefault(qid, str(_field(row, "question", where) or ""))
        qrels.setdefault(qid, {})[pid] = int(_field(row, "label", where))
        cands = ordered.setdefault(qid, [])
        if pid not in cands:
            cands.append(pid)
    if not queries:
        raise ValueError(f"{name}: no rows")
    if renamed:
        logger.info("%s: %d passages reuse an id with different text and were given distinct ids", name, renamed)
    candidates = {qid: _shuffled(dids, f"{name}:{qid}") for qid, dids in ordered.items()}
    return BeirDataset(corpus, queries, qrels, name=name, doc_ids=list(corpus), candidates=candidates)


def jacwir_from_rows(
    collection: Iterable[Mapping[str, Any]], eval_rows: Iterable[Mapping[str, Any]], *, name: str = "jacwir"
) -> BeirDataset:
    """Build a reranking dataset from JaCWIR's ``collection`` and ``eval`` rows (as on the hub).

    Collection rows need ``doc_id``, ``title``, ``description``; eval rows need ``query``, ``positive`` (one
    doc id) and ``negatives`` (doc ids). Query ids are the eval row numbers (``"0"``, ``"1"``, ...). Each
    query's candidates are its positive and negatives in a fixed pseudo-random order; only passages that are
    some query's candidate are kept. Passage text is the page title and description (``with_title=True``).

    Raises:
        ValueError: If a column is missing, a candidate is not in the collection, or there are no eval rows.
    """
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    candidates: dict[str, list[str]] = {}
    for i, row in enumerate(eval_rows):
        where, qid = f"{name} eval row {i}", str(i)
        positive = str(_field(row, "positive", where))
        negatives = [str(did) for did in _field(row, "negatives", where) if str(did) != positive]
        queries[qid] = str(_field(row, "query", where) or "")
        qrels[qid] = {positive: 1}
        candidates[qid] = _shuffled(list(dict.fromkeys([positive, *negatives])), f"{name}:{qid}")
    if not queries:
        raise ValueError(f"{name}: no eval rows")
    wanted = {did for dids in candidates.values() for did in dids}
    corpus: dict[str, dict[str, str]] = {}
    for i, row in enumerate(collection):
        did = str(_field(row, "doc_id", f"{name} collection row {i}"))
        if did in wanted:
            where = f"{name} collection row {i}"
            corpus[did] = {
                "title": str(_field(row, "title", where) or ""),
                "text": str(_field(row, "description", where) or ""),
            }
    missing = wanted - corpus.keys()
    if missing:
        raise ValueError(f"{name}: {len(missing)} candidate ids are not in the collection, e.g. {min(missing)!r}")
    return BeirDataset(corpus, queries, qrels, name=name, doc_ids=list(corpus), candidates=candidates)


_LOCAL_HINT = (
    "pass path= to a local copy: a folder written by jp_rerank.evaluation.datasets.save_beir "
    "(corpus.jsonl, queries.jsonl, qrels/<split>.tsv, candidates/<split>.tsv), or a local clone of the "
    "dataset repository (loaded with the 'datasets' package)"
)


def _load_hub_split(repo: str, config: str | None, split: str, cache_dir: str | None) -> Any:
    hf_datasets = require("datasets", "eval")
    try:
        return hf_datasets.load_dataset(repo, config, split=split, cache_dir=cache_dir)
    except Exception as exc:  # the hub stack raises many types (connection, HTTP, offline, missing cache)
        offline = " (offline mode is on: HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)" if _offline() else ""
        raise DatasetUnavailableError(
            f"could not load {repo!r} split {split!r} from the Hugging Face hub{offline}: "
            f"{type(exc).__name__}: {exc}; the hub may be unreachable; {_LOCAL_HINT}"
        ) from exc


def _offline() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _is_beir_folder(path: Path) -> bool:
    return (path / "corpus.jsonl").is_file()


def load_jqara(
    split: str = "test", *, path: str | os.PathLike[str] | None = None, cache_dir: str | None = None
) -> BeirDataset:
    """Load JQaRA (hotchpotch/JQaRA): Japanese questions with 100 candidate Wikipedia passages each.

    Args:
        split: ``"test"`` (1,667 questions) or ``"dev"``.
        path: A local copy instead of the hub: a folder written by :func:`save_beir` (read without extra
            packages), or a local clone of the dataset repository (read with ``datasets``).
        cache_dir: Cache folder for the ``datasets`` library.

    Returns:
        A dataset with ``candidates``; score passages with ``with_title=True`` (``title + " " + text``).

    Raises:
        ImportError: If the hub (or a repository clone) is used and ``datasets`` is not installed.
        DatasetUnavailableError: If the hub cannot be reached and nothing is cached.
        FileNotFoundError: If ``path`` does not exist.

    Example:
        >>> ds = load_jqara("test")  # doctest: +SKIP
        >>> save_beir(ds, "data/jqara", split="test")  # keep a local copy  # doctest: +SKIP
        >>> ds = load_jqara("test", path="data/jqara")  # later, offline  # doctest: +SKIP
    """
    if path is not None:
        root = Path(path)
        if not root.exists():
            raise FileNotFoundError(f"JQaRA local copy not found: {root}")
        if _is_beir_folder(root):
            return load_beir(root, split=split)
        return jqara_from_rows(_load_hub_split(str(root), None, split, cache_dir), name="jqara")
    return jqara_from_rows(_load_hub_split(JQARA_REPO, None, split, cache_dir), name="jqara")


def load_jacwir(*, path: str | os.PathLike[str] | None = None, cache_dir: str | None = None) -> BeirDataset:
    """Load JaCWIR (hotchpotch/JaCWIR): 5,000 Japanese web questions, each with 1 positive and 99 negatives.

    Args:
        path: A local copy instead of the hub: a folder written by :func:`save_beir` with split ``"eval"``, or
            a local clone of the dataset repository (read with ``datasets``).
        cache_dir: Cache folder for the ``datasets`` library.

    Returns:
        A dataset with ``candidates`` (split name ``"eval"``); score passages with ``with_title=True``.

    Raises:
        ImportError: If the hub (or a repository clone) is used and ``datasets`` is not installed.
        DatasetUnavailableError: If the hub cannot be reached and nothing is cached.
        FileNotFoundError: If ``path`` does not exist.

    Example:
        >>> ds = load_jacwir()  # doctest: +SKIP
        >>> len(ds.queries)  # doctest: +SKIP
        5000
    """
    source = JACWIR_REPO
    if path is not None:
        root = Path(path)
        if not root.exists():
            raise FileNotFoundError(f"JaCWIR local copy not found: {root}")
        if _is_beir_folder(root):
            return load_beir(root, split="eval")
        source = str(root)
    eval_rows = _load_hub_split(source, "eval", "eval", cache_dir)
    collection = _load_hub_split(source, "collection", "collection", cache_dir)
    return jacwir_from_rows(collection, eval_rows, name="jacwir")
