"""The worker side of :func:`~jp_rerank.distributed.build_index`, and the Arrow payload it sends to the driver.

An :class:`IndexWorker` reads one chunk, embeds and tokenises its passages and, for IVF-PQ, encodes them with a
copy of the trained index. Its output is one Arrow IPC stream with the columns ``id``, ``text``, ``metadata``
(JSON), ``tokens`` (BM25), and either ``code`` / ``refine_code`` (IVF-PQ codes, fixed-size binary) or ``vector``
(float32, fixed-size list).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jp_rerank.checks import storable_metadata
from jp_rerank.distributed.cluster import ItemWorker, set_worker_threads
from jp_rerank.distributed.corpus import CorpusChunk, read_chunk
from jp_rerank.distributed.embed import EmbedderSource, embed_texts, make_embedder
from jp_rerank.index import FaissIndex

__all__ = ["IndexWorker", "column_matrix", "read_table", "trained_files", "vectors_of"]


def _table_bytes(columns: Mapping[str, Any]) -> bytes:
    import pyarrow as pa

    table = pa.table(dict(columns))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def read_table(payload: bytes) -> Any:
    """The Arrow table of a worker's ``payload``."""
    import pyarrow as pa

    return pa.ipc.open_stream(pa.py_buffer(payload)).read_all()


def _fixed(matrix: np.ndarray, *, binary: bool) -> Any:
    import pyarrow as pa

    rows, width = matrix.shape
    if binary:
        flat = pa.py_buffer(np.ascontiguousarray(matrix, dtype=np.uint8).tobytes())
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), rows, [None, flat])
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), type=pa.float32()), width)


def column_matrix(table: Any, name: str) -> np.ndarray:
    """A fixed-size binary (codes, uint8) or fixed-size list (vectors, float32) column as a 2-D array."""
    column = table.column(name).combine_chunks()
    if name in ("code", "refine_code"):
        width = column.type.byte_width
        data = column.buffers()[1]
        return np.frombuffer(data, dtype=np.uint8, count=len(column) * width, offset=column.offset * width).reshape(
            -1, width
        )
    width = column.type.list_size
    return np.asarray(column.flatten(), dtype=np.float32).reshape(-1, width)


def vectors_of(table: Any) -> np.ndarray | None:
    """The float32 vectors of a payload table (``None`` when it holds codes, or no vectors)."""
    return column_matrix(table, "vector") if "vector" in table.column_names else None


def trained_files(index: Any) -> dict[str, bytes]:
    """The files of ``index`` saved (empty, trained) through its public ``save``, to rebuild it in workers."""
    with tempfile.TemporaryDirectory(prefix="jp-rerank-trained-") as tmp:
        index.save(tmp)
        return {p.relative_to(tmp).as_posix(): p.read_bytes() for p in Path(tmp).rglob("*") if p.is_file()}


def _load_trained(files: Mapping[str, bytes]) -> FaissIndex:
    """Rebuild the index :func:`trained_files` saved."""
    from jp_rerank.index import load_index

    with tempfile.TemporaryDirectory(prefix="jp-rerank-trained-") as tmp:
        for rel, data in files.items():
            path = Path(tmp) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        loaded = load_index(tmp)
    if not isinstance(loaded, FaissIndex):  # pragma: no cover - the driver trains a FaissIndex
        raise TypeError(f"the trained index is a {type(loaded).__name__}, not a FaissIndex")
    return loaded


class IndexWorker(ItemWorker):
    """Ray Data actor: reads a chunk, embeds, tokenises for BM25 and (IVF-PQ) encodes its passages.

    Example:
        >>> IndexWorker.process.__doc__.split(";")[0]
        'One chunk in'
    """

    def setup(  # type: ignore[override]
        self,
        *,
        embedder: EmbedderSource | None,
        embedder_options: Mapping[str, Any] | None,
        bm25: str | None,
        threads: int,
        trained_index: Mapping[str, bytes] | None = None,
    ) -> None:
        """Limit threads, load the embedder and tokenizer, and rebuild the trained index (IVF-PQ)."""
        set_worker_threads(threads)
        self._embedder = None if embedder is None else make_embedder(embedder, embedder_options)
        self._bm25 = None
        if bm25 is not None:
            from jp_rerank.lexical import BM25Index

            self._bm25 = BM25Index(bm25)
        self._index = None if trained_index is None else _load_trained(trained_index)

    def process(self, item: dict[str, Any]) -> dict[str, Any]:
        """One chunk in; out: ``n``, ``model_id`` and an Arrow IPC ``payload`` of its passages."""
        chunk = CorpusChunk.from_item(item)
        records = read_chunk(chunk)
        ids = [r["id"] for r in records]
        texts = [r["text"] for r in records]
        metas = [storable_metadata(r["metadata"], name=f"passage {r['id']!r} metadata") for r in records]
        columns: dict[str, Any] = {"id": ids, "text": texts}
        if self._bm25 is not None:
            columns["tokens"] = [self._bm25.tokenize(t) for t in texts]
        if self._embedder is not None:
            vectors = embed_texts(self._embedder, texts)
            if vectors.ndim != 2 or vectors.shape[0] != len(records):
                raise ValueError(f"the embedder returned shape {vectors.shape} for {len(records)} passages")
            if self._index is not None:
                encoded = self._index.encode(ids, vectors, texts, metas)
                metas = encoded.metadatas
                columns["code"] = _fixed(encoded.codes, binary=True)
                if encoded.refine_codes is not None:
                    columns["refine_code"] = _fixed(encoded.refine_codes, binary=True)
            else:
                columns["vector"] = _fixed(vectors, binary=False)
        columns["metadata"] = [json.dumps(m, ensure_ascii=False) for m in metas]
        model_id = "" if self._embedder is None else str(getattr(self._embedder, "model_id", ""))
        return {"n": len(records), "model_id": model_id, "payload": _table_bytes(columns)}
