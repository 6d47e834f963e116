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

import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jp_rerank.defaults import DEFAULT_BM25_TOKENIZER
from jp_rerank.distributed.cluster import RayConfig, ray_session, run_pool
from jp_rerank.distributed.corpus import DEFAULT_CHUNK_BYTES, CorpusChunk, CorpusFormatError, plan_corpus
from jp_rerank.distributed.embed import EmbedderSource
from jp_rerank.distributed.index_merge import Assembler
from jp_rerank.distributed.index_worker import IndexWorker, trained_files, vectors_of
from jp_rerank.index.faiss_kinds import DEFAULT_PQ_NBITS, min_train_size
from jp_rerank.pipeline.folder import SEARCH_INDEX_BACKEND, write_search_index
from jp_rerank.snapshot_ledger import TMP_PREFIX

__all__ = ["BuildReport", "build_index"]

logger = logging.getLogger(__name__)

_STAGING_PREFIX = ".tmp-ray-"  # a name write_snapshot leaves alone (it deletes only what its ledger records)
_TRAINED_BACKEND = "faiss-ivfpq"  # the one backend that is trained before vectors are added


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
        ValueError: If there is nothing to build, the input is malformed or has a repeated id, or (checked before
            the job starts) the corpus or training sample is too small to train an IVF-PQ index.
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
    vector_backend = None if embedder is None else backend
    options = dict(index_options or {})
    sample = _sample_size(train_size, batch_size) if vector_backend == _TRAINED_BACKEND else None
    if sample is not None:
        _check_trainable(chunks, sample, options)
    workers = {"embedder": embedder, "embedder_options": embedder_options, "bm25": bm25_spec, "threads": config.threads}
    return _build(
        target, chunks, workers, config, backend=vector_backend, index_options=options, bm25=bm25_spec, sample=sample
    )


def _check_out(out: Path, *, overwrite: bool) -> None:
    """Fail before any work if ``out`` cannot be replaced (``jp-rerank index`` fails only at the end)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    entries = [p for p in out.iterdir() if not p.name.startswith(TMP_PREFIX)]
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


def _check_trainable(chunks: Sequence[CorpusChunk], sample: int, index_options: Mapping[str, Any]) -> None:
    r"""Fail before the job starts if the IVF-PQ index cannot be trained on this corpus (or this sample).

    The planned chunks count the lines of JSONL files (blank ones included) and the rows of Parquet files; CSV
    and text files are counted here by their line breaks (``\n`` and ``\r`` alike: a header, blank lines and
    quoted multi-line records only make fewer passages). Each is an upper bound of the passages.
    """
    nlist, pq_nbits = index_options.get("nlist"), index_options.get("pq_nbits", DEFAULT_PQ_NBITS)
    if not isinstance(pq_nbits, int) or not isinstance(nlist, int | None):
        return  # the index itself names the bad option
    needed = min_train_size(nlist, pq_nbits)
    at_most = sum(c.lines if c.lines >= 0 else _most_records(c.path) for c in chunks)
    if at_most < needed:
        raise ValueError(
            f"the corpus holds at most {at_most} passages, too few to train a {_TRAINED_BACKEND!r} index (it needs "
            f"at least {needed} vectors); build a flat index instead (backend='faiss-flat', or `jp-rerank "
            "build-index --backend faiss-flat`), or index a larger corpus"
        )
    if sample < needed:
        raise ValueError(
            f"train_size gives a training sample of {sample} vectors, too few to train a {_TRAINED_BACKEND!r} index "
            f"(it needs at least {needed}); raise train_size (--train-size) to {needed} or more"
        )


def _most_records(path: str) -> int:
    """An upper bound of the records of a CSV or text file: its line breaks plus one (read in blocks, no parsing)."""
    breaks = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            breaks += block.count(b"\n") + block.count(b"\r")
    return breaks + 1


def _build(
    target: Path,
    chunks: Sequence[CorpusChunk],
    workers: Mapping[str, Any],
    config: RayConfig,
    *,
    backend: str | None,
    index_options: Mapping[str, Any],
    bm25: str | None,
    sample: int | None,
) -> BuildReport:
    """Run the job into a staging folder inside ``target`` and switch the result in; on failure, remove both.

    Args:
        target: The index folder.
        chunks: The planned corpus.
        workers: :class:`~jp_rerank.distributed.index_worker.IndexWorker` setup arguments.
        config: Cluster and pool.
        backend: Vector index backend (``None``: BM25 only).
        index_options: Keyword arguments of the vector index.
        bm25: BM25 tokenizer spec (``None``: no BM25).
        sample: Training sample of an index trained first (``None``: no training).
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f"{_STAGING_PREFIX}{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    asm = Assembler(staging, backend=backend, index_options=index_options, bm25=bm25 is not None)
    try:
        with ray_session(config):
            trained_on, head_passages = _run_pools(chunks, workers, config, asm, sample, timings)
        asm.close()
        _save(target, asm, bm25, config, len(chunks), timings)
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
        vector_backend=asm.backend if asm.index is not None else None,
        bm25=bm25,
        trained_on=trained_on,
        head_passages=head_passages,
        chunks=len(chunks),
        seconds=seconds,
        timings=timings,
    )


def _run_pools(
    chunks: Sequence[CorpusChunk],
    workers: Mapping[str, Any],
    config: RayConfig,
    asm: Assembler,
    sample: int | None,
    timings: dict[str, float],
) -> tuple[int, int]:
    """Process every chunk on the actors into ``asm``: the training head first (``sample`` not ``None``), then the rest.

    Returns:
        Vectors the index was trained on, and passages embedded before training.
    """
    done = trained_on = head_passages = 0
    kwargs = dict(workers)
    if sample is not None:
        done, trained_on, trained = _head(chunks, kwargs, config, asm, sample, timings)
        head_passages = asm.count
        if done < len(chunks) and trained is not None:
            kwargs["trained_index"] = trained
    t0 = time.perf_counter()
    merge0 = asm.merge_seconds
    rest = chunks[done:]
    items = [dict(c.to_item(), item=i) for i, c in enumerate(rest)]  # positions within this pass
    for row in _logged(run_pool(items, IndexWorker, kwargs, config, name="index"), len(rest)):
        table, ids, texts, metas = asm.records(dict(row, item=int(row["item"]) + done), chunks)
        asm.append(table, ids, texts, metas, vectors_of(table))
    timings["rest"] = time.perf_counter() - t0
    timings["merge"] = asm.merge_seconds - merge0
    return trained_on, head_passages


def _save(
    target: Path, asm: Assembler, bm25: str | None, config: RayConfig, chunks: int, timings: dict[str, float]
) -> None:
    """Build the BM25 side from the workers' tokens and write the search-index snapshot into ``target``."""
    if asm.count == 0:
        raise CorpusFormatError("the input files hold no passages")
    t0 = time.perf_counter()
    bm25_index = None if bm25 is None else asm.build_bm25(bm25)
    timings["bm25"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_search_index(
        target,
        passages=asm.passages_path,
        count=asm.count,
        bm25=bm25_index,
        vectors=asm.index,
        vector_backend=asm.backend if asm.index is not None else None,
        extra_manifest={"build": {"engine": "ray", "workers": config.workers, "chunks": chunks}},
    )
    timings["save"] = time.perf_counter() - t0


def _fmt(timings: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())


def _head(
    chunks: Sequence[CorpusChunk],
    kwargs: Mapping[str, Any],
    config: RayConfig,
    asm: Assembler,
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
            vectors = vectors_of(table)
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
    trained = trained_files(index) if _is_ivf(index) else None
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


def _is_ivf(index: Any) -> bool:
    return type(index).__name__ == "FaissIndex" and getattr(index, "kind", None) == "ivfpq"
