"""Build a ``jp-rerank search`` index folder (vectors + BM25) from millions of passages on a Ray cluster.

The result is the folder ``jp-rerank index`` writes (:mod:`jp_rerank.pipeline.folder`): one atomic, checksummed
snapshot holding ``passages.jsonl``, ``bm25/`` and ``vectors/``, loadable unchanged by ``jp-rerank search``,
:func:`~jp_rerank.pipeline.folder.load_search_index`, :func:`jp_rerank.index.load_index` (on ``vectors/``) and the
LangChain / LlamaIndex adapters. Given the same input it holds the same passages in the same order, the same BM25
index and, for faiss flat and IVF-PQ, the same faiss index as ``jp-rerank index`` (vectors within the embedder's
tolerance; byte-identical when they are identical, as with StaticEmbedding models).

How the work is split (W = workers):

1. **Head** (only for an index that must be trained, i.e. IVF-PQ): the actors embed (and tokenise, for BM25) the
   first chunks, enough for the training sample; the driver trains the index on the leading passages (the rule of
   :func:`jp_rerank.index.ingest`: whole batches of ``batch_size`` until at least ``train_size``) and adds them.
2. **Rest**: the actors read, embed and tokenise the other chunks, and for IVF-PQ also *encode* them with a copy of
   the trained index (coarse list + PQ code, the expensive part of adding to an IVF index), so only codes of
   ``pq_m + 2`` bytes per passage travel to the driver. Other backends receive the float32 vectors.
3. **Merge** (driver, serial): append codes / vectors, passages and BM25 tokens in corpus order, build the BM25
   weights, write the snapshot. This and the IVF training are the serial parts that bound the speed-up
   (``benchmarks/results/ray_scale.md``).

The snapshot is assembled in a staging folder inside the index folder and switched in by
:func:`jp_rerank.snapshots.write_snapshot` only when complete: a job that fails leaves the previous index in
place and readable.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jp_rerank.checks import storable_metadata
from jp_rerank.defaults import DEFAULT_BM25_TOKENIZER
from jp_rerank.distributed.cluster import ItemWorker, RayConfig, ray_session, run_pool, set_worker_threads
from jp_rerank.distributed.corpus import DEFAULT_CHUNK_BYTES, CorpusChunk, CorpusFormatError, plan_corpus, read_chunk
from jp_rerank.distributed.embed import EmbedderSource, embed_texts, make_embedder
from jp_rerank.index import EncodedBatch, FaissIndex
from jp_rerank.pipeline.folder import SEARCH_INDEX_BACKEND, write_search_index

__all__ = ["BuildReport", "build_index"]

logger = logging.getLogger(__name__)

_STAGING_PREFIX = ".tmp-ray-"  # a name write_snapshot leaves alone (it deletes only what its ledger records)


def _is_ivf(index: Any) -> bool:
    return type(index).__name__ == "FaissIndex" and getattr(index, "kind", None) == "ivfpq"


def _bm25_from_tokens(
    spec: str, texts: list[str], ids: list[str], metas: list[dict[str, Any]], tokens: list[Any]
) -> Any:
    """The BM25 index of the passages from the tokens the workers computed (a few re-tokenised here to check).

    Consumes ``tokens``: each list is dropped once the index has taken it (they are most of the driver's memory).
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


# --------------------------------------------------------------------------------------------------- workers


def _table_bytes(columns: Mapping[str, Any]) -> bytes:
    import pyarrow as pa

    table = pa.table(dict(columns))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _read_table(payload: bytes) -> Any:
    import pyarrow as pa

    return pa.ipc.open_stream(pa.py_buffer(payload)).read_all()


def _fixed(matrix: np.ndarray, *, binary: bool) -> Any:
    import pyarrow as pa

    rows, width = matrix.shape
    if binary:
        flat = pa.py_buffer(np.ascontiguousarray(matrix, dtype=np.uint8).tobytes())
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), rows, [None, flat])
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), type=pa.float32()), width)


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
        self._index: FaissIndex | None = None
        if trained_index is not None:
            from jp_rerank.index import load_index

            with tempfile.TemporaryDirectory(prefix="jp-rerank-trained-") as tmp:
                for rel, data in trained_index.items():
                    path = Path(tmp) / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                loaded = load_index(tmp)
                if not isinstance(loaded, FaissIndex):  # pragma: no cover - the driver trains a FaissIndex
                    raise TypeError(f"the trained index is a {type(loaded).__name__}, not a FaissIndex")
                self._index = loaded

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


# ----------------------------------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class BuildReport:
    """What :func:`build_index` built.

    Attributes:
        path: The index folder.
        count: Passages indexed.
        embedder_id: ``model_id`` of the embedder (``None``: BM25 only).
        dim: Vector dimension (0: BM25 only).
        vector_backend: The vector index backend (``None``: BM25 only).
        bm25: The BM25 tokenizer name (``None``: no BM25).
        trained_on: Vectors the index was trained on (0: no training).
        head_passages: Passages embedded before training (the chunks that hold the training sample).
        chunks: Work items.
        seconds: Wall time.
        timings: Seconds per phase (``head``: embedding the training sample, ``train``, ``rest``: the parallel
            pass, ``merge``: driver time spent decoding and appending chunk outputs inside it, ``bm25``,
            ``save``).

    Example:
        >>> BuildReport(Path("idx"), 10, None, 0, None, "mecab", 0, 0, 1, 0.5).count
        10
    """

    path: Path
    count: int
    embedder_id: str | None
    dim: int
    vector_backend: str | None
    bm25: str | None
    trained_on: int
    head_passages: int
    chunks: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


class _Assembler:
    """Driver side: receives chunk outputs in corpus order and appends them everywhere."""

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
        started = time.perf_counter()
        table = _read_table(row["payload"])
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
        from jp_rerank.index import make_index

        assert self.backend is not None
        self.index = make_index(self.backend, dim, embedder_id=self.embedder_id, **self.index_options)
        return self.index

    def append(
        self, table: Any, ids: list[str], texts: list[str], metas: list[dict[str, Any]], vectors: np.ndarray | None
    ) -> None:
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
                codes = _column_matrix(table, "code")
                refine = _column_matrix(table, "refine_code") if "refine_code" in table.column_names else None
                self.index.add_encoded(EncodedBatch(ids, texts, metas, codes, refine))
            else:
                assert vectors is not None
                if self.index is None:
                    self.make_index(int(vectors.shape[1]))
                self.index.add(ids, vectors, texts, metas)
        self.count += len(ids)
        self.merge_seconds += time.perf_counter() - started

    def close(self) -> None:
        self._passages.close()


def _column_matrix(table: Any, name: str) -> np.ndarray:
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


def _vectors(table: Any) -> np.ndarray | None:
    return _column_matrix(table, "vector") if "vector" in table.column_names else None


def _check_out(out: Path, *, overwrite: bool) -> None:
    """Fail before any work if ``out`` cannot be replaced (``jp-rerank index`` fails only at the end)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    entries = [p for p in out.iterdir() if not p.name.startswith(".tmp-")]
    if not entries:
        return
    if not overwrite:
        raise FileExistsError(f"{out} already exists (use overwrite=True / --overwrite to replace it)")
    from jp_rerank.snapshots import read_snapshot

    try:
        _, manifest = read_snapshot(out, verify=False)
    except (FileNotFoundError, ValueError) as exc:
        raise FileExistsError(f"{out} holds something other than a jp-rerank index; refusing to replace it") from exc
    if manifest.get("backend") != SEARCH_INDEX_BACKEND:
        raise FileExistsError(
            f"{out} holds a {manifest.get('backend')!r} index, not a search index; refusing to replace it"
        )


def _sample_size(train_size: int, batch_size: int) -> int:
    """Training vectors :func:`jp_rerank.index.ingest` uses: whole batches until at least ``train_size``."""
    return math.ceil(train_size / batch_size) * batch_size


def _trained_files(index: Any) -> dict[str, bytes]:
    """The files of ``index`` saved (empty, trained) through its public ``save``, to rebuild it in workers."""
    with tempfile.TemporaryDirectory(prefix="jp-rerank-trained-") as tmp:
        index.save(tmp)
        return {p.relative_to(tmp).as_posix(): p.read_bytes() for p in Path(tmp).rglob("*") if p.is_file()}


def build_index(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    embedder: EmbedderSource | None = None,
    embedder_options: Mapping[str, Any] | None = None,
    backend: str = "faiss-ivfpq",
    index_options: Mapping[str, Any] | None = None,
    bm25: str | None = DEFAULT_BM25_TOKENIZER,
    text_field: str = "text",
    id_field: str | None = None,
    train_size: int = 100_000,
    batch_size: int = 256,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    overwrite: bool = False,
    config: RayConfig | None = None,
) -> BuildReport:
    """Embed, tokenise and index a corpus with a pool of Ray actors into a ``jp-rerank search`` folder.

    Args:
        inputs: Corpus files, globs or folders (see :mod:`jp_rerank.distributed.corpus`).
        out: Index folder to create, or to replace atomically with ``overwrite``.
        embedder: Dense embedder (model name / path or factory, see :data:`~jp_rerank.distributed.embed.
            EmbedderSource`); ``None`` builds BM25 only.
        embedder_options: :class:`jp_rerank.Embedder` keyword arguments.
        backend: Vector index (:func:`jp_rerank.index.make_index` name): ``"faiss-ivfpq"`` for millions,
            ``"faiss-flat"``, ``"faiss-hnsw"``, ``"exact"``.
        index_options: Keyword arguments of the index (faiss: ``nlist``, ``pq_m``, ``nprobe``, ``refine``...).
        bm25: BM25 tokenizer spec (``"mecab"``, ``"char1-2"``...), or ``None`` / ``"none"`` for no BM25 side.
        text_field: Field holding the passage text.
        id_field: Field holding the id (default ``"_id"`` for BEIR folders, else ``"id"``).
        train_size: IVF-PQ training sample (the leading passages, in whole ``batch_size`` batches, as
            :func:`jp_rerank.index.ingest` takes them).
        batch_size: See ``train_size`` (embedding batches are the embedder's own ``batch_size``).
        chunk_bytes: Input bytes per work item.
        overwrite: Replace an existing index folder.
        config: Cluster and pool (default: a local Ray, 2 actors of 1 CPU).

    Returns:
        A :class:`BuildReport`.

    Raises:
        ValueError: If there is nothing to build, or the input is malformed or has a repeated id.
        FileExistsError: If ``out`` exists and ``overwrite`` is false, or it holds something else.
        ModelLoadError: If the embedder cannot be loaded.

    Example:
        >>> build_index(["corpus.jsonl"], "idx", embedder="static-ja", index_options={"nlist": 4096})  # doctest: +SKIP
        BuildReport(path=PosixPath('idx'), count=1000000, ...)
    """
    config = config or RayConfig()
    bm25_spec = None if bm25 in (None, "none") else bm25
    if embedder is None and bm25_spec is None:
        raise ValueError("nothing to build: give an embedder and/or a BM25 tokenizer")
    target = Path(out).expanduser().resolve()
    _check_out(target, overwrite=overwrite)
    chunks = plan_corpus(inputs, text_field=text_field, id_field=id_field, chunk_bytes=chunk_bytes)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f"{_STAGING_PREFIX}{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    asm = _Assembler(
        staging,
        backend=backend if embedder is not None else None,
        index_options=index_options or {},
        bm25=bm25_spec is not None,
    )
    kwargs: dict[str, Any] = {
        "embedder": embedder,
        "embedder_options": embedder_options,
        "bm25": bm25_spec,
        "threads": config.threads,
    }
    trained_on = head_passages = 0
    try:
        with ray_session(config):
            done = 0
            if embedder is not None and backend == "faiss-ivfpq":  # the one backend that is trained first
                done, trained_on, trained = _head(
                    chunks, kwargs, config, asm, _sample_size(train_size, batch_size), timings
                )
                head_passages = asm.count
                if done < len(chunks) and trained is not None:
                    kwargs["trained_index"] = trained
            t0 = time.perf_counter()
            merge0 = asm.merge_seconds
            rest = chunks[done:]
            items = [dict(c.to_item(), item=i) for i, c in enumerate(rest)]  # positions within this pass
            for row in _logged(run_pool(items, IndexWorker, kwargs, config, name="index"), len(rest)):
                row = dict(row, item=int(row["item"]) + done)
                table, ids, texts, metas = asm.records(row, chunks)
                asm.append(table, ids, texts, metas, _vectors(table))
            timings["rest"] = time.perf_counter() - t0
            timings["merge"] = asm.merge_seconds - merge0
        asm.close()
        if asm.count == 0:
            raise CorpusFormatError("the input files hold no passages")
        t0 = time.perf_counter()
        bm25_index = None
        if bm25_spec is not None:
            bm25_index = _bm25_from_tokens(bm25_spec, asm.texts, asm.ids, asm.metas, asm.tokens)
            asm.texts, asm.ids, asm.metas, asm.tokens = [], [], [], []
        timings["bm25"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        extra = {"build": {"engine": "ray", "workers": config.workers, "chunks": len(chunks)}}
        write_search_index(
            target,
            passages=asm.passages_path,
            count=asm.count,
            bm25=bm25_index,
            vectors=asm.index,
            vector_backend=backend if asm.index is not None else None,
            extra_manifest=extra,
        )
        timings["save"] = time.perf_counter() - t0
    except BaseException:
        asm.close()
        shutil.rmtree(staging, ignore_errors=True)
        if created and target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    seconds = time.perf_counter() - started
    logger.info("indexed %d passages into %s in %.1f s (%s)", asm.count, target, seconds, _fmt(timings))
    return BuildReport(
        path=target,
        count=asm.count,
        embedder_id=asm.embedder_id,
        dim=0 if asm.index is None else int(asm.index.dim),
        vector_backend=backend if asm.index is not None else None,
        bm25=None if bm25_spec is None else bm25_spec,
        trained_on=trained_on,
        head_passages=head_passages,
        chunks=len(chunks),
        seconds=seconds,
        timings=timings,
    )


def _fmt(timings: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())


def _head(
    chunks: Sequence[CorpusChunk],
    kwargs: Mapping[str, Any],
    config: RayConfig,
    asm: _Assembler,
    sample: int,
    timings: dict[str, float],
) -> tuple[int, int, dict[str, bytes] | None]:
    """Embed leading chunks until ``sample`` passages, train the index on them and add them.

    Returns:
        Chunks consumed, vectors trained on, and the files of the trained (still empty) IVF-PQ index for the
        workers (``None`` if the index is not an IVF-PQ faiss index).
    """
    t0 = time.perf_counter()
    held: list[tuple[Any, list[str], list[str], list[dict[str, Any]], np.ndarray]] = []
    done = n_held = 0
    while n_held < sample and done < len(chunks):
        take, lines = done, 0
        while take < len(chunks) and (lines < sample - n_held or take == done):
            lines += max(chunks[take].lines, 1)
            take += 1
        items = [dict(c.to_item(), item=i) for i, c in enumerate(chunks[done:take])]
        for row in run_pool(items, IndexWorker, kwargs, config, name="index (training sample)"):
            row = dict(row, item=int(row["item"]) + done)
            table, ids, texts, metas = asm.records(row, chunks)
            vectors = _vectors(table)
            assert vectors is not None
            held.append((table, ids, texts, metas, vectors))
            n_held += len(ids)
        done = take
    timings["head"] = time.perf_counter() - t0
    if not held:
        return done, 0, None
    t0 = time.perf_counter()
    dim = int(held[0][4].shape[1])
    index = asm.make_index(dim)
    train = np.concatenate([h[4] for h in held])[:sample]
    logger.info("training %s on %d vectors", type(index).__name__, train.shape[0])
    index.train(train)
    trained = _trained_files(index) if _is_ivf(index) else None
    timings["train"] = time.perf_counter() - t0
    for table, ids, texts, metas, vectors in held:
        asm.append(table, ids, texts, metas, vectors)
    return done, int(train.shape[0]), trained


def _logged(rows: Iterator[dict[str, Any]], total: int) -> Iterator[dict[str, Any]]:
    started = time.perf_counter()
    step = max(1, total // 20)
    passages = 0
    for done, row in enumerate(rows, 1):
        passages += int(row["n"])
        if done % step == 0 or done == total:
            rate = passages / max(time.perf_counter() - started, 1e-9)
            logger.info("indexed %d/%d chunks, %d passages (%.0f/s)", done, total, passages, rate)
        yield row
