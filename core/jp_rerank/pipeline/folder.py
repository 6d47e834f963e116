"""A search-index folder: passages, BM25 and vectors in one atomic snapshot, loaded back as a two-stage retriever.

The folder ``jp-rerank index`` and the Ray index job (:func:`jp_rerank.distributed.build_index`) write, and
``jp-rerank search`` and the adapters load. It is an atomic, checksummed snapshot
(:func:`jp_rerank.snapshots.write_snapshot`) whose manifest says what was built with which models
(``backend: "search-index"``, ``count``, ``bm25``, ``embedder``, ``vector_backend``, ``dim``), holding
``passages.jsonl`` (``{"id", "text", "metadata"}`` per line), ``bm25/`` (the Japanese BM25 index) and, when an
embedder was given, ``vectors/`` (the vector index). Rebuilding over an existing folder switches to the new build
in one step, so a killed build leaves the previous index readable.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jp_rerank.defaults import DEFAULT_FIRST_K
from jp_rerank.errors import IndexCorruptedError, InputFormatError
from jp_rerank.presets import DEFAULT_RERANKER
from jp_rerank.records import parse_json_line

if TYPE_CHECKING:
    from jp_rerank.index import VectorIndex
    from jp_rerank.lexical import BM25Index
    from jp_rerank.pipeline.retriever import TwoStageRetriever

logger = logging.getLogger(__name__)

__all__ = ["SEARCH_INDEX_BACKEND", "load_search_index", "write_search_index"]

SEARCH_INDEX_BACKEND = "search-index"
"""``backend`` in the manifest of a search-index folder."""


def write_search_index(
    out: str | os.PathLike[str],
    *,
    passages: Sequence[Mapping[str, Any]] | Path,
    count: int,
    bm25: BM25Index | None = None,
    vectors: VectorIndex | None = None,
    vector_backend: str | None = None,
    extra_manifest: Mapping[str, Any] | None = None,
) -> Path:
    """Write a search-index folder: one atomic snapshot with the passages, ``bm25/`` and ``vectors/``.

    Args:
        out: Index folder (empty, missing, or an index folder to replace atomically).
        passages: ``{"id", "text", "metadata"}`` records in index order (metadata as
            :func:`jp_rerank.checks.storable_metadata` makes it), or a ready ``passages.jsonl`` file on the same
            file system (moved into the snapshot).
        count: Number of passages.
        bm25: A built :class:`jp_rerank.BM25Index`, or ``None``.
        vectors: A filled :class:`jp_rerank.index.VectorIndex`, or ``None``.
        vector_backend: Backend name of ``vectors`` as given to :func:`jp_rerank.index.make_index`.
        extra_manifest: More manifest entries.

    Returns:
        The snapshot folder.

    Raises:
        ValueError: If ``out`` holds files that are not a jp-rerank index.

    Example:
        >>> import tempfile
        >>> from jp_rerank import BM25Index
        >>> rows = [{"id": "a", "text": "富士山は高い。", "metadata": {}}]
        >>> folder = tempfile.mkdtemp()
        >>> bm25 = BM25Index("char2").index([r["text"] for r in rows], ["a"])
        >>> _ = write_search_index(folder, passages=rows, count=1, bm25=bm25)
        >>> load_search_index(folder, reranker=None).retrieve("富士山")[0].id
        'a'
    """
    from jp_rerank.snapshots import write_snapshot

    manifest: dict[str, Any] = {"backend": SEARCH_INDEX_BACKEND, "count": count}
    if bm25 is not None:
        manifest["bm25"] = bm25.tokenizer.name
    if vectors is not None:
        manifest.update(embedder=vectors.embedder_id, vector_backend=vector_backend, dim=vectors.dim)
    manifest.update(extra_manifest or {})

    def payload(folder: Path) -> None:
        if isinstance(passages, Path):
            os.replace(passages, folder / "passages.jsonl")
        else:
            with (folder / "passages.jsonl").open("w", encoding="utf-8") as fh:
                for rec in passages:
                    fh.write(json.dumps(dict(rec), ensure_ascii=False, allow_nan=False) + "\n")
        if bm25 is not None:
            bm25.save(folder / "bm25")
        if vectors is not None:
            vectors.save(folder / "vectors")

    return write_snapshot(Path(out), manifest, payload)


def load_search_index(
    path: str | os.PathLike[str],
    *,
    reranker: str | None = DEFAULT_RERANKER,
    embedder: str | None = None,
    first_k: int = DEFAULT_FIRST_K,
    top_n: int = 10,
    device: str | None = None,
) -> TwoStageRetriever:
    """Load a search-index folder as a :class:`~jp_rerank.pipeline.TwoStageRetriever`.

    Args:
        path: The folder.
        reranker: Cross-encoder to rerank with (alias, hub id, path); ``None`` / ``"none"``: first stage only.
        embedder: Query embedder (default: the one the folder was built with).
        first_k: Candidates per query from the first stage.
        top_n: Results per query.
        device: Device of the models.

    Raises:
        InputFormatError: If the folder is not a search index.
        IndexCorruptedError: If its files are damaged.

    Example:
        >>> load_search_index("my-index", reranker="xsmall").retrieve("富士山の高さは？")  # doctest: +SKIP
    """
    from jp_rerank.pipeline.retriever import TwoStageRetriever
    from jp_rerank.rerank import Reranker
    from jp_rerank.snapshots import read_snapshot

    root = Path(path)
    for attempt in range(_READ_ATTEMPTS):
        try:
            snapshot, manifest = read_snapshot(root)
        except FileNotFoundError as exc:
            raise InputFormatError(f"{root} is not a jp-rerank index folder ({exc})") from exc
        try:
            stages = _read_stages(root, snapshot, manifest, embedder, device)
            break
        except (FileNotFoundError, IndexCorruptedError):
            # a save replaced the index while its files were read (the old snapshot is deleted after the switch):
            # read the new one; a real loss raises again
            if attempt == _READ_ATTEMPTS - 1 or _current_snapshot(root) in (None, snapshot.name):
                raise
            logger.info("%s was replaced while it was read; reading the new snapshot", root)
    rr = None if reranker in (None, "none") else Reranker(reranker, device=device)
    return TwoStageRetriever(first_stages=stages, reranker=rr, first_k=first_k, top_n=top_n)


_READ_ATTEMPTS = 5


def _current_snapshot(root: Path) -> str | None:
    """The snapshot ``root/CURRENT`` names now (``None``: unreadable)."""
    from jp_rerank.snapshots import read_snapshot

    try:
        return read_snapshot(root, verify=False)[0].name
    except (OSError, ValueError):
        return None


def _read_stages(
    root: Path, snapshot: Path, manifest: dict[str, Any], embedder: str | None, device: str | None
) -> list[Any]:
    """The first stages stored in one snapshot of a search-index folder."""
    from jp_rerank.embed import Embedder
    from jp_rerank.index import load_index
    from jp_rerank.lexical import BM25Index
    from jp_rerank.pipeline.dense import DenseRetriever

    if manifest.get("backend") != SEARCH_INDEX_BACKEND:
        raise InputFormatError(f"{root} holds a {manifest.get('backend')!r} index, not a search index")
    texts = []
    with (snapshot / "passages.jsonl").open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            where = f"{snapshot / 'passages.jsonl'}:{line_no}"
            try:
                rec = parse_json_line(line, where)
            except InputFormatError as exc:
                raise IndexCorruptedError(str(exc)) from exc
            if not (
                isinstance(rec, dict) and isinstance(rec.get("text"), str) and isinstance(rec.get("metadata"), dict)
            ):
                raise IndexCorruptedError(f"{where}: not a passage record")
            texts.append(rec["text"])
    if len(texts) != manifest.get("count", len(texts)):
        raise IndexCorruptedError(
            f"{root}: passages.jsonl holds {len(texts)} passages, the manifest {manifest['count']}"
        )
    stages: list[Any] = []
    if manifest.get("embedder"):
        dense = Embedder(embedder or manifest["embedder"], device=device)
        vectors = load_index(snapshot / "vectors", embedder_id=dense.model_id, verify=False)  # verified above
        stages.append(DenseRetriever(vectors, dense))
    if manifest.get("bm25"):
        stages.append(BM25Index.load(snapshot / "bm25", verify=False))
    return stages
