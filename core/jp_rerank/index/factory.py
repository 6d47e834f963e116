"""Build a vector index from a backend name (for configuration files, CLIs and pipelines)."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias, get_args

from jp_rerank.index.base import Metric, VectorIndex

__all__ = ["BACKENDS", "BackendName", "make_index"]

BackendName: TypeAlias = Literal["exact", "faiss", "faiss-flat", "faiss-hnsw", "faiss-ivfpq", "chroma"]
"""``"faiss"`` is ``"faiss-flat"`` (exact inner product in faiss)."""

BACKENDS: tuple[str, ...] = get_args(BackendName)


def make_index(
    backend: BackendName | str,
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
    if backend == "exact":
        from jp_rerank.index.exact import ExactIndex

        return ExactIndex(dim, metric=metric, embedder_id=embedder_id, **options)
    if backend in ("faiss", "faiss-flat", "faiss-hnsw", "faiss-ivfpq"):
        from jp_rerank.index.faiss_index import FaissIndex

        kind = "flat" if backend == "faiss" else backend.removeprefix("faiss-")
        return FaissIndex(dim, kind=kind, metric=metric, embedder_id=embedder_id, **options)  # type: ignore[arg-type]
    if backend == "chroma":
        from jp_rerank.index.chroma_index import ChromaIndex

        return ChromaIndex(dim, metric=metric, embedder_id=embedder_id, **options)
    raise ValueError(f"unknown vector backend {backend!r}; choose one of {list(BACKENDS)}")
