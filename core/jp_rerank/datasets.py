"""Loading retrieval datasets in BEIR format (``corpus.jsonl``, ``queries.jsonl``, ``qrels/*.tsv``)."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DATA_ENV", "BeirDataset", "default_data_dir", "load_beir"]

DATA_ENV = "JP_RERANK_DATA"
"""Environment variable naming a folder of datasets (e.g. ``../shared/data``)."""


@dataclass(frozen=True)
class BeirDataset:
    """A retrieval dataset: passages, questions and graded relevance judgements.

    Attributes:
        corpus: Passage id → ``{"title": ..., "text": ...}``.
        queries: Query id → question text (only queries that have judgements in ``qrels``).
        qrels: Query id → {passage id → relevance grade}.
        name: Folder name of the dataset.
    """

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    name: str = ""
    doc_ids: list[str] = field(default_factory=list)

    def passages(self, *, with_title: bool = False) -> list[str]:
        """Return passage texts in ``doc_ids`` order (``title + " " + text`` when ``with_title``)."""
        out = []
        for doc_id in self.doc_ids:
            doc = self.corpus[doc_id]
            text = doc.get("text", "")
            title = doc.get("title", "")
            out.append(f"{title} {text}" if with_title and title else text)
        return out


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


def load_beir(path: str | os.PathLike[str], *, split: str = "test") -> BeirDataset:
    """Load a BEIR-format folder.

    Args:
        path: Folder holding ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.
        split: Which qrels file to read.

    Returns:
        The dataset, with queries restricted to those that have judgements.

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
    with qrels_path.open(encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        for line_no, cols in enumerate(reader, 1):
            if not cols or (line_no == 1 and cols[0] in {"query-id", "query_id", "qid"}):
                continue
            if len(cols) < 3:
                raise ValueError(f"{qrels_path}:{line_no}: expected 3 tab-separated columns")
            qid, did, grade = cols[0], cols[1], cols[2]
            try:
                qrels.setdefault(qid, {})[did] = int(float(grade))
            except ValueError as exc:
                raise ValueError(f"{qrels_path}:{line_no}: relevance {grade!r} is not a number") from exc
    queries = {qid: all_queries[qid] for qid in qrels if qid in all_queries}
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, name=root.name, doc_ids=list(corpus))


def default_data_dir() -> Path | None:
    """Return the folder named by ``JP_RERANK_DATA``, or ``../shared/data`` beside the checkout, if present."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    candidate = Path(__file__).resolve().parents[3] / "shared" / "data"
    return candidate if candidate.is_dir() else None
