"""The one registry of vector-index backends: build one by name, load any saved one.

:func:`make_index` builds an empty index from a backend name; :func:`load_index` reads any saved vector index.
Backend classes are imported on first use, so naming a backend never imports faiss or chromadb until it is built.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias, get_args

from jp_rerank.errors import IndexMismatchError
from jp_rerank.index.base import VectorIndex, load_snapshot_with
from jp_rerank.index.vectors import Metric

__all__ = ["BACKENDS", "IndexBackend", "load_index", "make_index"]

IndexBackend: TypeAlias = Literal["exact", "faiss", "faiss-flat", "faiss-hnsw", "faiss-ivfpq", "chroma"]
"""Names :func:`make_index` accepts; ``"faiss"`` is ``"faiss-flat"`` (exact inner product in faiss)."""

BACKENDS: tuple[str, ...] = get_args(IndexBackend)

# manifest backend name -> (module, class); each class's `backend` attribute is the key
_CLASSES: dict[str, tuple[str, str]] = {
    "exact": ("jp_rerank.index.exact", "ExactIndex"),
    "faiss": ("jp_rerank.index.faiss_index", "FaissIndex"),
    "chroma": ("jp_rerank.index.chroma_index", "ChromaIndex"),
}
# make_index name -> (manifest backend name, extra constructor arguments)
_NAMES: dict[str, tuple[str, dict[str, str]]] = {
    "exact": ("exact", {}),
    "faiss": ("faiss", {"kind": "flat"}),
    "faiss-flat": ("faiss", {"kind": "flat"}),
    "faiss-hnsw": ("faiss", {"kind": "hnsw"}),
    "faiss-ivfpq": ("faiss", {"kind": "ivfpq"}),
    "chroma": ("chroma", {}),
}


def backend_class(name: str) -> type[VectorIndex]:
    """Return the class that writes manifests with ``backend == name`` (imports it on first use).

    Raises:
        KeyError: If no vector backend has that name.

    Example:
        >>> backend_class("exact").__name__
        'ExactIndex'
    """
    module, cls = _CLASSES[name]
    found: type[VectorIndex] = getattr(importlib.import_module(module), cls)
    return found


def make_index(
    backend: IndexBackend | str,
    dim: int,
    *,
    metric: Metric = "cosine",
    embedder_id: str | None = None,
    **options: Any,
) -> VectorIndex:
    """Create an empty index of the named backend.

    Args:
        backend: One of :data:`BACKENDS`.
        dim: Vector dimension.
        metric: ``"cosine"`` or ``"ip"``.
        embedder_id: Id of the model that makes the vectors.
        **options: Passed to the backend's constructor (faiss: ``ef_search``, ``nlist``, ``pq_m``, ``nprobe``...;
            Chroma: ``path=`` or ``host=``/``port=`` or ``client=``, ``collection_name``...).

    Raises:
        ValueError: If ``backend`` is not a known name.

    Example:
        >>> make_index("exact", 384, embedder_id="ruri-v3-30m")
        ExactIndex(dim=384, metric='cosine', count=0)
    """
    if backend not in _NAMES:
        raise ValueError(f"unknown vector backend {backend!r}; choose one of {list(BACKENDS)}")
    name, extra = _NAMES[backend]
    return backend_class(name)(dim, metric=metric, embedder_id=embedder_id, **extra, **options)


def load_index(
    directory: str | os.PathLike[str], /, *, embedder_id: str | None = None, verify: bool = True, **options: Any
) -> VectorIndex:
    """Load any index saved with :meth:`VectorIndex.save`, dispatching on the backend named in its manifest.

    Args:
        directory: Index directory.
        embedder_id: The embedder the caller will query with. When both it and the manifest's are known they must
            be equal.
        verify: Check every file's SHA-256 before reading it.
        **options: Backend-specific options (Chroma: where to import the snapshot).

    Raises:
        FileNotFoundError: If ``directory`` is not an index directory.
        IndexMismatchError: If ``embedder_id`` differs from the manifest's, or the directory holds another kind of
            index (e.g. a sparse index).
        IndexCorruptedError: If a file is missing, truncated or altered.

    Example:
        >>> import tempfile
        >>> from jp_rerank.index import ExactIndex
        >>> index = ExactIndex(2, embedder_id="toy")
        >>> index.add(["a"], [[1.0, 0.0]], ["犬"])
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = index.save(tmp)
        ...     [h.id for h in load_index(tmp, embedder_id="toy").search([1.0, 0.0], k=1)]
        ['a']
    """

    def pick(_found: type[VectorIndex] | None, manifest: Mapping[str, Any]) -> type[VectorIndex]:
        backend = manifest.get("backend")
        if backend not in _CLASSES:
            raise IndexMismatchError(
                f"{directory} holds a {backend!r} index, not a vector index ({sorted(_CLASSES)}); "
                "load it with its own class"
            )
        return backend_class(str(backend))

    return load_snapshot_with(pick, directory, embedder_id=embedder_id, verify=verify, **options)
