"""The driver side of :func:`~jp_rerank.distributed.build_index`: worker outputs merged in corpus order.

Passages go to ``passages.jsonl`` as they arrive, codes or vectors into the vector index, and BM25 tokens are kept
until every chunk is in, when the BM25 weights (which depend on the whole corpus) are built once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jp_rerank.distributed.corpus import CorpusChunk, CorpusFormatError
from jp_rerank.distributed.index_worker import column_matrix, read_table
from jp_rerank.index import EncodedBatch

__all__ = ["Assembler", "bm25_from_tokens"]


def bm25_from_tokens(
    spec: str, texts: list[str], ids: list[str], metas: list[dict[str, Any]], tokens: list[Any]
) -> Any:
    """The BM25 index of the passages from the tokens the workers computed (a few re-tokenised here to check).

    Consumes ``tokens``: each list is dropped once the index has taken it (they are most of the driver's memory).

    Raises:
        RuntimeError: If a checked passage's tokens differ from the driver's (another tokenizer version?).
    """
    from jp_rerank.lexical import BM25Index

    index = BM25Index(spec)
    for i in sorted({0, len(texts) // 2, len(texts) - 1}) if texts else []:
        if index.tokenize(texts[i]) != list(tokens[i]):
            raise RuntimeError(f"BM25 tokens of passage {ids[i]!r} differ between the workers and the driver")

    def handed_over() -> Iterator[list[str]]:
        for i in range(len(tokens)):
            words, tokens[i] = tokens[i], None
            yield words

    return index.index(texts, ids, metas, tokens=handed_over())


class Assembler:
    """Receives chunk outputs in corpus order and appends them to the passages, the vector index and BM25.

    Args:
        staging: Folder for ``passages.jsonl``.
        backend: Vector index backend (``None``: no vectors).
        index_options: Keyword arguments of the vector index.
        bm25: Whether to keep the BM25 tokens.
    """

    def __init__(self, staging: Path, *, backend: str | None, index_options: Mapping[str, Any], bm25: bool) -> None:
        self.backend = backend
        self.index_options = dict(index_options)
        self.index: Any = None
        self.embedder_id: str | None = None
        self.count = 0
        self.seen: set[str] = set()
        self.passages_path = staging / "passages.jsonl"
        self._passages = self.passages_path.open("w", encoding="utf-8")
        self.bm25 = bm25
        self.texts: list[str] = []
        self.ids: list[str] = []
        self.metas: list[dict[str, Any]] = []
        self.tokens: list[Any] = []
        self.merge_seconds = 0.0

    def records(
        self, row: Mapping[str, Any], chunks: Sequence[CorpusChunk]
    ) -> tuple[Any, list[str], list[str], list[dict[str, Any]]]:
        """Decode a worker's output row: its table, ids, texts and metadata (ids checked to be new)."""
        started = time.perf_counter()
        table = read_table(row["payload"])
        ids = [str(x) for x in table.column("id").to_pylist()]
        texts = [str(x) for x in table.column("text").to_pylist()]
        metas = [json.loads(m) for m in table.column("metadata").to_pylist()]
        path = chunks[int(row["item"])].path
        for doc_id in ids:
            if doc_id in self.seen:
                raise CorpusFormatError(f"{path}: duplicate passage id {doc_id!r}")
            self.seen.add(doc_id)
        if row["model_id"]:
            self.embedder_id = str(row["model_id"])
        self.merge_seconds += time.perf_counter() - started
        return table, ids, texts, metas

    def make_index(self, dim: int) -> Any:
        """Create the (empty) vector index."""
        from jp_rerank.index import make_index

        assert self.backend is not None
        self.index = make_index(self.backend, dim, embedder_id=self.embedder_id, **self.index_options)
        return self.index

    def append(
        self, table: Any, ids: list[str], texts: list[str], metas: list[dict[str, Any]], vectors: np.ndarray | None
    ) -> None:
        """Append one chunk's passages everywhere (codes when the table has them, else ``vectors``)."""
        started = time.perf_counter()
        for doc_id, text, meta in zip(ids, texts, metas, strict=True):
            self._passages.write(json.dumps({"id": doc_id, "text": text, "metadata": meta}, ensure_ascii=False) + "\n")
        if self.bm25:
            self.texts.extend(texts)
            self.ids.extend(ids)
            self.metas.extend(metas)
            self.tokens.extend(table.column("tokens").to_pylist())
        if self.backend is not None and ids:
            if "code" in table.column_names:
                codes = column_matrix(table, "code")
                refine = column_matrix(table, "refine_code") if "refine_code" in table.column_names else None
                self.index.add_encoded(EncodedBatch(ids, texts, metas, codes, refine))
            else:
                assert vectors is not None
                if self.index is None:
                    self.make_index(int(vectors.shape[1]))
                self.index.add(ids, vectors, texts, metas)
        self.count += len(ids)
        self.merge_seconds += time.perf_counter() - started

    def build_bm25(self, spec: str) -> Any:
        """The BM25 index of everything appended (:func:`bm25_from_tokens`); the kept tokens are released."""
        index = bm25_from_tokens(spec, self.texts, self.ids, self.metas, self.tokens)
        self.texts, self.ids, self.metas, self.tokens = [], [], [], []
        return index

    def close(self) -> None:
        """Close ``passages.jsonl``."""
        self._passages.close()
