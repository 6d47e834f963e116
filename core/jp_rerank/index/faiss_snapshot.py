"""The files of a saved :class:`~jp_rerank.index.FaissIndex`, beside the ``docs.jsonl`` of its document store.

* ``index.faiss``: the faiss index (absent only while an IVF-PQ index with automatic ``nlist`` is untrained);
* ``refine.faiss``: the refine copy of the vectors of an IVF-PQ index with ``refine``;
* ``tombstones.npy``: HNSW labels deleted but still in the graph (when there are any).

Everything read back is checked against the number of stored records, so a damaged snapshot raises
:class:`~jp_rerank.errors.IndexCorruptedError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jp_rerank.errors import IndexCorruptedError
from jp_rerank.index.faiss_kinds import FaissRefine, faiss_module

__all__ = ["faiss_settings", "read_faiss_files", "write_faiss_files"]

_INDEX_FILE = "index.faiss"
_REFINE_FILE = "refine.faiss"
_TOMBSTONES_FILE = "tombstones.npy"


def faiss_settings(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`~jp_rerank.index.FaissIndex` arguments recorded in a manifest."""
    p = dict(manifest["params"])
    return {
        "dim": manifest["dim"],
        "kind": p["kind"],
        "metric": manifest["metric"],
        "embedder_id": manifest["embedder_id"],
        "hnsw_m": p["hnsw_m"],
        "ef_construction": p["ef_construction"],
        "ef_search": p["ef_search"],
        "nlist": p["nlist"],
        "pq_m": p["pq_m"],
        "pq_nbits": p["pq_nbits"],
        "nprobe": p["nprobe"],
        "refine": p.get("refine", "none"),  # snapshots written before refine existed have none
        "refine_factor": p.get("refine_factor", 4),
        "exhaustive_filter_limit": p["exhaustive_filter_limit"],
    }


def write_faiss_files(folder: Path, index: Any, refine_index: Any, tombstones: set[int]) -> None:
    """Write the faiss index, its refine copy and the HNSW tombstones (each only when there is one)."""
    faiss = faiss_module()
    if index is not None:
        faiss.write_index(index, str(folder / _INDEX_FILE))
    if refine_index is not None:
        faiss.write_index(refine_index, str(folder / _REFINE_FILE))
    if tombstones:
        np.save(folder / _TOMBSTONES_FILE, np.fromiter(sorted(tombstones), dtype=np.int64), allow_pickle=False)


def _read_index(path: Path) -> Any:
    try:
        return faiss_module().read_index(str(path))
    except RuntimeError as exc:
        raise IndexCorruptedError(f"faiss cannot read {path}: {exc}") from exc


def read_faiss_files(
    folder: Path, files: Mapping[str, Any], *, unsaved: Any, refine: FaissRefine, records: int
) -> tuple[Any, Any, set[int]]:
    """Read what :func:`write_faiss_files` wrote and check it against the ``records`` of the document store.

    Args:
        folder: The snapshot folder.
        files: The manifest's table of files.
        unsaved: The index to keep when no ``index.faiss`` was saved (the empty one of a new index).
        refine: The index's refine setting.
        records: Live records of the document store.

    Returns:
        The faiss index, the refine copy (``None`` without one) and the HNSW tombstones.

    Raises:
        IndexCorruptedError: If a file is missing, unreadable, or holds another number of vectors.
    """
    index = unsaved
    if _INDEX_FILE in files:
        index = _read_index(folder / _INDEX_FILE)
    elif records:
        raise IndexCorruptedError(f"{folder} holds records but no {_INDEX_FILE}")
    refine_index = None
    if refine != "none" and index is not None:
        if _REFINE_FILE not in files:
            raise IndexCorruptedError(f"{folder} is an IVF-PQ index with refine={refine!r} but has no {_REFINE_FILE}")
        refine_index = _read_index(folder / _REFINE_FILE)
        if refine_index.ntotal != records:
            raise IndexCorruptedError(
                f"{folder / _REFINE_FILE} holds {refine_index.ntotal} vectors but the documents need {records}"
            )
    tombstones: set[int] = set()
    if _TOMBSTONES_FILE in files:
        tombstones = set(np.load(folder / _TOMBSTONES_FILE, allow_pickle=False).tolist())
    expected = records + len(tombstones)
    if index is not None and index.ntotal != expected:
        raise IndexCorruptedError(
            f"{folder / _INDEX_FILE} holds {index.ntotal} vectors but the documents need {expected}"
        )
    return index, refine_index, tombstones
