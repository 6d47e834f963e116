"""Batch-rerank a run file (queries x candidates) on a Ray cluster: one cross-encoder per actor.

Input and output are those of ``jp-rerank rerank`` (:mod:`jp_rerank.commands.rerank`): each input line is
``{"query": "...", "documents": ["...", ...]}`` or ``{"query": "...", "passages": [{"id", "text"}, ...]}``;
each output line is ``{"query": ..., "results": [{"id", "index", "score", "text"}, ...]}`` sorted by score,
in input order. Every line is scored by one ``Reranker.rerank`` call, as the single-process command does, so
the outputs are the same (scores within float tolerance when the thread count differs, see the tests).

The input file is cut into byte ranges that the workers read themselves (standard input is read by the driver
and shipped); results stream back to the driver in input order and go to a temporary file renamed over the
output when the job succeeds, so a failed job leaves no partial output.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jp_rerank.distributed.cluster import ItemWorker, RayConfig, ray_session, run_pool, set_worker_threads
from jp_rerank.distributed.corpus import jsonl_ranges
from jp_rerank.errors import InputFormatError
from jp_rerank.records import decoded_lines, read_jsonl, rerank_line

__all__ = ["RerankReport", "RerankerSource", "make_reranker", "rerank_jsonl"]

logger = logging.getLogger(__name__)

DEFAULT_RERANK_CHUNK_BYTES = 1 << 20
"""Input bytes per work item (1 MiB: ~10 queries of 100 Japanese passages; retries stay cheap)."""

RerankerSource = str | os.PathLike[str] | Callable[[], Any]
"""A model (alias, hub id, local path) loaded as :class:`jp_rerank.Reranker` in every worker, or a picklable
zero-argument callable that returns a reranker (anything with ``rerank(query, docs, top_n=, score_threshold=)``
returning results with ``index`` and ``score``)."""


RerankInputError = InputFormatError
"""A malformed input line (the message names the file and line)."""


def make_reranker(source: RerankerSource, options: Mapping[str, Any] | None = None) -> Any:
    """Build (and load) the reranker a worker uses.

    Args:
        source: See :data:`RerankerSource`.
        options: Keyword arguments of :class:`jp_rerank.Reranker` (``device``, ``batch_size``, ``overflow``...);
            only for a model name or path.

    Example:
        >>> make_reranker(lambda: "my reranker")
        'my reranker'
    """
    if callable(source) and not isinstance(source, str | os.PathLike):
        if options:
            raise ValueError("reranker options apply to a model name or path, not to a reranker factory")
        reranker = source()
    else:
        from jp_rerank.rerank import Reranker

        reranker = Reranker(source, **dict(options or {}))
    load = getattr(reranker, "load", None)
    if callable(load):
        load()
    return reranker


def rerank_lines(
    reranker: Any, data: bytes, *, source: str, first_line: int, top_n: int | None, threshold: float | None
) -> tuple[list[str], int]:
    """Rerank the JSONL lines in ``data``; returns the output lines and the number of candidate pairs scored."""
    out: list[str] = []
    pairs = 0
    lines = decoded_lines(io.BytesIO(data), source, first_line=first_line)
    for line_no, row in read_jsonl(lines, source, first_line=first_line):
        response, scored = rerank_line(reranker, row, f"{source}:{line_no}", top_n=top_n, threshold=threshold)
        pairs += scored
        out.append(json.dumps(response, ensure_ascii=False, allow_nan=False))
    return out, pairs


class RerankWorker(ItemWorker):
    """Ray Data actor: reads a byte range of the run file and reranks each of its lines.

    Example:
        >>> RerankWorker.process.__doc__.split(";")[0]
        'Rerank one work item'
    """

    def setup(  # type: ignore[override]
        self,
        *,
        reranker: RerankerSource,
        reranker_options: Mapping[str, Any] | None,
        threads: int,
        top_n: int | None,
        threshold: float | None,
    ) -> None:
        """Limit threads and load the reranker."""
        set_worker_threads(threads)
        self._reranker = make_reranker(reranker, reranker_options)
        self._top_n = top_n
        self._threshold = threshold

    def process(self, item: dict[str, Any]) -> dict[str, Any]:
        """Rerank one work item; returns its output lines (``payload``, UTF-8) and counts."""
        inline = item["inline"]
        if len(inline):
            data = bytes(inline)
        else:
            with open(str(item["path"]), "rb") as fh:
                fh.seek(int(item["start"]))
                data = fh.read(int(item["end"]) - int(item["start"]))
        lines, pairs = rerank_lines(
            self._reranker,
            data,
            source=str(item["source"]),
            first_line=int(item["first_line"]),
            top_n=self._top_n,
            threshold=self._threshold,
        )
        return {"n": len(lines), "pairs": pairs, "payload": "".join(line + "\n" for line in lines).encode("utf-8")}


@dataclass(frozen=True)
class RerankReport:
    """What :func:`rerank_jsonl` did.

    Attributes:
        queries: Output lines written (one per input query).
        pairs: (query, candidate) pairs scored.
        chunks: Work items.
        seconds: Wall time.

    Example:
        >>> RerankReport(5000, 500000, 500, 3600.0).pairs
        500000
    """

    queries: int
    pairs: int
    chunks: int
    seconds: float


def _items(source: str, chunk_bytes: int) -> list[dict[str, Any]]:
    if source == "-":
        data = sys.stdin.buffer.read()
        items, start, line = [], 0, 1
        while start < len(data):
            cut = data.find(b"\n", start + chunk_bytes - 1)
            end = len(data) if cut < 0 else cut + 1
            part = data[start:end]
            items.append({"path": "", "start": 0, "end": 0, "first_line": line, "inline": part})
            line += part.count(b"\n")
            start = end
    else:
        path = Path(source)
        if not path.is_file():
            raise RerankInputError(f"input file not found: {source}")
        resolved = str(path.resolve())
        items = [
            {"path": resolved, "start": s, "end": e, "first_line": first, "inline": b""}
            for s, e, first, _ in jsonl_ranges(path, chunk_bytes)
        ]
    return [dict(it, item=i, source=source) for i, it in enumerate(items)]


def rerank_jsonl(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str] | None,
    *,
    reranker: RerankerSource,
    reranker_options: Mapping[str, Any] | None = None,
    top_n: int | None = None,
    threshold: float | None = None,
    chunk_bytes: int = DEFAULT_RERANK_CHUNK_BYTES,
    config: RayConfig | None = None,
) -> RerankReport:
    """Rerank every line of a ``jp-rerank rerank`` input file with a pool of Ray actors.

    Args:
        input: JSONL file, or ``"-"`` for standard input.
        output: Output JSONL file (replaced atomically when the job succeeds), or ``None`` / ``"-"`` for
            standard output (written as results arrive, in input order).
        reranker: Model name / path, or a factory (see :data:`RerankerSource`).
        reranker_options: :class:`jp_rerank.Reranker` keyword arguments (``device``, ``batch_size``,
            ``overflow``...).
        top_n: Keep the best ``top_n`` results per query.
        threshold: Keep results scoring at least this.
        chunk_bytes: Input bytes per work item.
        config: Cluster and pool (default: a local Ray, 2 actors of 1 CPU).

    Returns:
        A :class:`RerankReport`.

    Raises:
        ValueError: On a malformed input line (names the file and line; nothing is written to ``output``).
        ModelLoadError: If the reranker cannot be loaded.

    Example:
        >>> rerank_jsonl("run.jsonl", "ranked.jsonl", reranker="xsmall", top_n=10)  # doctest: +SKIP
        RerankReport(queries=5000, pairs=500000, chunks=480, seconds=...)
    """
    config = config or RayConfig()
    if not isinstance(chunk_bytes, int) or chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be a positive int, got {chunk_bytes!r}")
    source = os.fspath(input)
    items = _items(source, chunk_bytes)
    started = time.perf_counter()
    final, tmp = _output_paths(output)
    workers = {
        "reranker": reranker,
        "reranker_options": reranker_options,
        "threads": config.threads,
        "top_n": top_n,
        "threshold": threshold,
    }
    try:
        with ray_session(config):
            rows = run_pool(items, RerankWorker, workers, config, name="rerank")
            queries, pairs = _write_results(rows, len(items), tmp)
        if tmp is not None and final is not None:
            os.replace(tmp, final)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - started
    logger.info("reranked %d queries (%d pairs) in %.1f s", queries, pairs, seconds)
    return RerankReport(queries, pairs, len(items), seconds)


def _output_paths(output: str | os.PathLike[str] | None) -> tuple[Path | None, Path | None]:
    """The output file and the temporary file written first beside it (both ``None`` for standard output)."""
    if output is None or os.fspath(output) == "-":
        return None, None
    final = Path(output).expanduser()
    final.parent.mkdir(parents=True, exist_ok=True)
    return final, final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"


def _write_results(rows: Iterator[dict[str, Any]], total: int, tmp: Path | None) -> tuple[int, int]:
    """Write the workers' output lines, in input order, to ``tmp`` (flushed to disk) or standard output.

    Returns:
        The queries and the (query, candidate) pairs reranked.
    """
    queries = pairs = 0
    sink = sys.stdout if tmp is None else tmp.open("w", encoding="utf-8")
    try:
        for done, row in enumerate(rows, 1):
            sink.write(bytes(row["payload"]).decode("utf-8"))
            queries += int(row["n"])
            pairs += int(row["pairs"])
            if done % max(1, total // 20) == 0:
                logger.info("reranked %d queries, %d pairs (%d/%d chunks)", queries, pairs, done, total)
        sink.flush()
        if tmp is not None:
            os.fsync(sink.fileno())
    finally:
        if tmp is not None:
            sink.close()
    return queries, pairs
