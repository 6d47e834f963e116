"""Embed a corpus on a Ray cluster: one embedder per actor, each chunk written to its own Parquet file.

Output folder (written next to its final place and renamed into it when complete, so a failed job leaves the
previous output, or none, never a partial one)::

    embeddings/
      manifest.json            format, embedder id, dim, count, and rows / bytes / SHA-256 of every part
      part-000000.parquet      columns: id (string), vector (fixed-size list of float32),
      part-000001.parquet      and, unless with_text=False, text (string) and metadata (JSON string)
      ...

Part ``i`` holds the passages of corpus chunk ``i`` in file order, so reading the parts in order gives the corpus
order. Each part is written by the worker that embedded it, under a temporary name then renamed, so a worker that
dies half-way leaves nothing that counts, and its retry writes the part again; the driver then checks that every
part is there with the number of rows the worker reported. On a cluster, the output folder must be on storage
that every node mounts at the same path. :func:`load_embeddings` reads the folder back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jp_rerank.distributed.cluster import ItemWorker, RayConfig, ray_session, run_pool, set_worker_threads
from jp_rerank.distributed.corpus import DEFAULT_CHUNK_BYTES, CorpusChunk, plan_corpus, read_chunk

__all__ = [
    "EMBEDDINGS_FORMAT",
    "EmbedReport",
    "EmbedderSource",
    "embed_corpus",
    "iter_embeddings",
    "load_embeddings",
    "make_embedder",
]

logger = logging.getLogger(__name__)

EMBEDDINGS_FORMAT = "jp-rerank-embeddings"
"""``format`` recorded in the manifest of an embeddings folder."""
_FORMAT_VERSION = 1
_MANIFEST = "manifest.json"
_SLICE = 4096  # texts per embed_documents call inside a chunk (the Embedder caps one call at 100,000)

EmbedderSource = str | os.PathLike[str] | Callable[[], Any]
"""A model (alias, hub id, local path) loaded as :class:`jp_rerank.Embedder` in every worker, or a picklable
zero-argument callable that returns an embedder (anything with ``embed_documents(texts) -> float32 (n, dim)``
and ``model_id``), for an embedder configured in code."""


def make_embedder(source: EmbedderSource, options: Mapping[str, Any] | None = None) -> Any:
    """Build (and load) the embedder a worker uses.

    Args:
        source: See :data:`EmbedderSource`.
        options: Keyword arguments of :class:`jp_rerank.Embedder` (``device``, ``batch_size``,
            ``truncate_dim``...); only for a model name or path.

    Example:
        >>> make_embedder(lambda: "my embedder")
        'my embedder'
    """
    if callable(source) and not isinstance(source, str | os.PathLike):
        if options:
            raise ValueError("embedder options apply to a model name or path, not to an embedder factory")
        embedder = source()
    else:
        from jp_rerank.embed import Embedder

        embedder = Embedder(source, **dict(options or {}))
    load = getattr(embedder, "load", None)
    if callable(load):
        load()  # load the model once, in the worker's __init__
    return embedder


def embed_texts(embedder: Any, texts: list[str]) -> np.ndarray:
    """``embedder.embed_documents`` over ``texts`` in slices; float32 ``(len(texts), dim)``."""
    parts = [
        np.asarray(embedder.embed_documents(texts[i : i + _SLICE]), dtype=np.float32)
        for i in range(0, len(texts), _SLICE)
    ]
    if not parts:
        return np.asarray(embedder.embed_documents([]), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(parts))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _part_name(item: int) -> str:
    return f"part-{item:06d}.parquet"


def write_part(
    folder: Path, item: int, records: Sequence[Mapping[str, Any]], vectors: np.ndarray, *, with_text: bool
) -> dict[str, Any]:
    """Write one Parquet part atomically (temporary name, then rename); returns its rows, bytes and SHA-256."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = int(vectors.shape[1])
    columns: dict[str, Any] = {
        "id": pa.array([r["id"] for r in records], type=pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), type=pa.float32()), dim),
    }
    if with_text:
        columns["text"] = pa.array([r["text"] for r in records], type=pa.string())
        columns["metadata"] = pa.array(
            [json.dumps(r["metadata"], ensure_ascii=False) for r in records], type=pa.string()
        )
    final = folder / _part_name(item)
    tmp = folder / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    pq.write_table(pa.table(columns), tmp)
    os.replace(tmp, final)
    return {"file": final.name, "rows": len(records), "bytes": final.stat().st_size, "sha256": _sha256(final)}


class EmbedWorker(ItemWorker):
    """Ray Data actor: reads a chunk, embeds its passages, writes its Parquet part.

    Example:
        >>> EmbedWorker.process.__doc__.split(";")[0]
        'Embed one chunk and write its part'
    """

    def setup(  # type: ignore[override]
        self,
        *,
        embedder: EmbedderSource,
        embedder_options: Mapping[str, Any] | None,
        threads: int,
        out_dir: str,
        with_text: bool,
    ) -> None:
        """Limit threads and load the embedder."""
        set_worker_threads(threads)
        self._embedder = make_embedder(embedder, embedder_options)
        self._out = Path(out_dir)
        self._with_text = with_text

    def process(self, item: dict[str, Any]) -> dict[str, Any]:
        """Embed one chunk and write its part; returns the part's file, rows, bytes, SHA-256 and the dim."""
        chunk = CorpusChunk.from_item(item)
        records = read_chunk(chunk)
        vectors = embed_texts(self._embedder, [r["text"] for r in records])
        if vectors.ndim != 2 or vectors.shape[0] != len(records):
            raise ValueError(f"the embedder returned shape {vectors.shape} for {len(records)} passages")
        part = write_part(self._out, chunk.item, records, vectors, with_text=self._with_text)
        return dict(part, dim=int(vectors.shape[1]), model_id=str(getattr(self._embedder, "model_id", "")))


@dataclass(frozen=True)
class EmbedReport:
    """What :func:`embed_corpus` wrote.

    Attributes:
        path: The output folder.
        count: Passages embedded.
        dim: Vector dimension.
        embedder_id: ``model_id`` of the embedder.
        parts: Parquet files written (one per chunk).
        seconds: Wall time of the job.

    Example:
        >>> EmbedReport(Path("out"), 10, 64, "static", 1, 0.5).count
        10
    """

    path: Path
    count: int
    dim: int
    embedder_id: str
    parts: int
    seconds: float


def _check_replaceable(out: Path, *, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(f"{out} already exists (use overwrite=True / --overwrite to replace it)")
    manifest = out / _MANIFEST
    try:
        fmt = json.loads(manifest.read_text(encoding="utf-8")).get("format")
    except (OSError, ValueError, AttributeError):
        fmt = None
    if fmt != EMBEDDINGS_FORMAT:
        raise FileExistsError(f"{out} holds something other than a jp-rerank embeddings folder; refusing to replace it")


def swap_into_place(tmp: Path, out: Path) -> None:
    """Move the finished folder ``tmp`` to ``out``, replacing what is there (two renames; the old copy last)."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def embed_corpus(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    embedder: EmbedderSource,
    embedder_options: Mapping[str, Any] | None = None,
    text_field: str = "text",
    id_field: str | None = None,
    with_text: bool = True,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    overwrite: bool = False,
    config: RayConfig | None = None,
) -> EmbedReport:
    """Embed every passage of a corpus with a pool of Ray actors and write the vectors with their ids.

    Args:
        inputs: Corpus files, globs or folders (JSONL, Parquet, CSV, text, BEIR; see
            :mod:`jp_rerank.distributed.corpus`).
        out: Output folder (see the module docs).
        embedder: Model name / path, or a factory (see :data:`EmbedderSource`).
        embedder_options: :class:`jp_rerank.Embedder` keyword arguments (e.g. ``{"device": "cpu"}``).
        text_field: Field holding the passage text.
        id_field: Field holding the id (default ``"_id"`` for BEIR folders, else ``"id"``).
        with_text: Also store each passage's text and metadata (needed to build an index from the folder).
        chunk_bytes: Input bytes per work item.
        overwrite: Replace an existing embeddings folder.
        config: Cluster and pool (default: a local Ray, 2 actors of 1 CPU).

    Returns:
        An :class:`EmbedReport`.

    Raises:
        FileExistsError: If ``out`` exists and ``overwrite`` is false, or it holds something else.
        CorpusFormatError: On a missing or malformed input.
        ModelLoadError: If the embedder cannot be loaded.
        RuntimeError: If a part is missing after the job (e.g. the folder is not shared with the workers).

    Example:
        >>> embed_corpus(["corpus.jsonl"], "emb", embedder="static-ja")  # doctest: +SKIP
        EmbedReport(path=PosixPath('emb'), count=1000000, dim=1024, ...)
    """
    config = config or RayConfig()
    target = Path(out).expanduser().resolve()
    _check_replaceable(target, overwrite=overwrite)
    chunks = plan_corpus(inputs, text_field=text_field, id_field=id_field, chunk_bytes=chunk_bytes)
    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        workers = {
            "embedder": embedder,
            "embedder_options": embedder_options,
            "threads": config.threads,
            "out_dir": str(tmp),
            "with_text": with_text,
        }
        parts, dim, model_id = _embed_parts(chunks, workers, config)
        _verify_parts(tmp, parts)
        count = _write_manifest(tmp, parts, dim=dim, embedder_id=model_id, with_text=with_text, chunks=chunks)
        swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - started
    logger.info("embedded %d passages into %s in %.1f s", count, target, seconds)
    return EmbedReport(target, count, dim, model_id, len(parts), seconds)


def _embed_parts(
    chunks: Sequence[CorpusChunk], workers: Mapping[str, Any], config: RayConfig
) -> tuple[list[dict[str, Any]], int, str]:
    """Run the :class:`EmbedWorker` pool over ``chunks``; returns the parts written, the dim and the embedder id."""
    parts: list[dict[str, Any]] = []
    dim, model_id = 0, ""
    with ray_session(config):
        rows = run_pool([c.to_item() for c in chunks], EmbedWorker, workers, config, name="embed")
        for row in _progress(rows, chunks):
            parts.append({key: row[key] for key in ("file", "rows", "bytes", "sha256")})
            dim, model_id = int(row["dim"]), str(row["model_id"])
    return parts, dim, model_id


def _write_manifest(
    folder: Path,
    parts: Sequence[Mapping[str, Any]],
    *,
    dim: int,
    embedder_id: str,
    with_text: bool,
    chunks: Sequence[CorpusChunk],
) -> int:
    """Write the manifest of an embeddings folder (flushed to disk); returns the number of passages."""
    count = sum(int(part["rows"]) for part in parts)
    manifest = {
        "format": EMBEDDINGS_FORMAT,
        "format_version": _FORMAT_VERSION,
        "jp_rerank_version": _version(),
        "created_unix": time.time(),
        "embedder_id": embedder_id,
        "dim": dim,
        "count": count,
        "with_text": with_text,
        "inputs": sorted({c.path for c in chunks}),
        "parts": list(parts),
    }
    with (folder / _MANIFEST).open("w", encoding="utf-8") as fh:
        json.dump(manifest, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    return count


def _version() -> str:
    from jp_rerank._version import __version__

    return __version__


def _progress(rows: Iterator[dict[str, Any]], chunks: Sequence[CorpusChunk]) -> Iterator[dict[str, Any]]:
    """Log progress every ~5% of the chunks."""
    started = time.perf_counter()
    step = max(1, len(chunks) // 20)
    passages = 0
    for done, row in enumerate(rows, 1):
        passages += int(row.get("rows", row.get("n", 0)))
        if done % step == 0 or done == len(chunks):
            rate = passages / max(time.perf_counter() - started, 1e-9)
            logger.info("%d/%d chunks, %d passages (%.0f/s)", done, len(chunks), passages, rate)
        yield row


def _verify_parts(folder: Path, parts: Sequence[Mapping[str, Any]]) -> None:
    """Every reported part exists with the reported size and row count (cheap: Parquet footers only)."""
    import pyarrow.parquet as pq

    for part in parts:
        path = folder / str(part["file"])
        if not path.is_file():
            raise RuntimeError(
                f"{path} was reported written by a worker but is not visible here: on a cluster, the output folder "
                "must be on storage every node mounts at the same path"
            )
        if path.stat().st_size != part["bytes"] or pq.ParquetFile(path).metadata.num_rows != part["rows"]:
            raise RuntimeError(f"{path} does not hold what its worker reported (rewritten by another job?)")


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of an embeddings folder.

    Raises:
        FileNotFoundError: If ``path`` is not an embeddings folder.
    """
    manifest_path = Path(path) / _MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{path} is not a jp-rerank embeddings folder (no {_MANIFEST})")
    manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("format") != EMBEDDINGS_FORMAT or manifest.get("format_version") != _FORMAT_VERSION:
        raise FileNotFoundError(f"{path} holds {manifest.get('format')!r}, not a {EMBEDDINGS_FORMAT!r} folder")
    return manifest


def iter_embeddings(
    path: str | os.PathLike[str], *, verify: bool = True
) -> Iterator[tuple[list[str], np.ndarray, list[str] | None, list[dict[str, Any]] | None]]:
    """Yield ``(ids, vectors, texts, metadatas)`` part by part, in corpus order (texts ``None`` without text).

    Args:
        path: An embeddings folder written by :func:`embed_corpus`.
        verify: Check each part's SHA-256 against the manifest first.

    Raises:
        FileNotFoundError: If ``path`` is not an embeddings folder.
        ValueError: If a part does not match the manifest.
    """
    import pyarrow.parquet as pq

    root = Path(path)
    manifest = read_manifest(root)
    dim = int(manifest["dim"])
    for part in manifest["parts"]:
        file = root / part["file"]
        if verify and _sha256(file) != part["sha256"]:
            raise ValueError(f"{file} does not match the SHA-256 in the manifest")
        table = pq.read_table(file)
        vectors = np.asarray(table.column("vector").combine_chunks().values, dtype=np.float32).reshape(-1, dim)
        ids = [str(i) for i in table.column("id").to_pylist()]
        texts = metas = None
        if "text" in table.column_names:
            texts = [str(t) for t in table.column("text").to_pylist()]
            metas = [json.loads(m) for m in table.column("metadata").to_pylist()]
        yield ids, vectors, texts, metas


def load_embeddings(path: str | os.PathLike[str], *, verify: bool = True) -> tuple[list[str], np.ndarray]:
    """All ids and vectors of an embeddings folder, in corpus order.

    Example:
        >>> ids, vectors = load_embeddings("emb")  # doctest: +SKIP
        >>> vectors.shape  # doctest: +SKIP
        (1000000, 1024)
    """
    ids: list[str] = []
    blocks: list[np.ndarray] = []
    for part_ids, vectors, _, _ in iter_embeddings(path, verify=verify):
        ids.extend(part_ids)
        blocks.append(vectors)
    dim = int(read_manifest(path)["dim"])
    return ids, (np.concatenate(blocks) if blocks else np.zeros((0, dim), dtype=np.float32))
