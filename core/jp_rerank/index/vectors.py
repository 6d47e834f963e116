"""Checks and arithmetic on the vectors an index stores: the metric, shapes, finiteness, unit length."""

from __future__ import annotations

from typing import Literal, TypeAlias, get_args

import numpy as np

__all__ = ["Metric", "as_matrix", "check_metric", "normalize_rows"]

Metric: TypeAlias = Literal["cosine", "ip"]
"""Similarity: ``"cosine"`` (vectors normalised to unit length) or ``"ip"`` (raw inner product)."""

_METRICS: tuple[str, ...] = get_args(Metric)


def check_metric(metric: object) -> Metric:
    """Return ``metric`` if it is a known metric name.

    Raises:
        ValueError: If it is not ``"cosine"`` or ``"ip"``.

    Example:
        >>> check_metric("cosine")
        'cosine'
    """
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {list(_METRICS)}, got {metric!r}")
    return metric  # type: ignore[return-value]


def as_matrix(vectors: object, dim: int, *, name: str = "vectors", ndim: Literal[1, 2] = 2) -> np.ndarray:
    """Return a C-contiguous float32 copy of ``vectors`` after checking its shape and values.

    Args:
        vectors: Array-like of shape ``(n, dim)`` (``ndim=2``) or ``(dim,)`` (``ndim=1``).
        dim: Expected vector dimension.
        name: Argument name used in error messages.
        ndim: Expected number of array dimensions.

    Returns:
        A float32 array of shape ``(n, dim)`` (a single vector becomes ``(1, dim)``).

    Raises:
        ValueError: If the shape or dimension is wrong, or a value is NaN or infinite (also after the cast
            to float32).

    Example:
        >>> as_matrix([[1, 0], [0, 1]], 2).dtype
        dtype('float32')
    """
    arr = np.asarray(vectors)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        want = f"(n, {dim})" if ndim == 2 else f"({dim},)"
        raise ValueError(f"{name} must have shape {want}, got an array of shape {arr.shape}")
    if arr.shape[-1] != dim:
        raise ValueError(f"{name} have dimension {arr.shape[-1]} but the index has dimension {dim}")
    with np.errstate(over="ignore"):  # overflow becomes inf, reported just below
        out = np.array(arr, dtype=np.float32, order="C", copy=True).reshape(-1, dim)
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        raise ValueError(f"{name} row {bad} contains NaN or infinite values (after casting to float32)")
    return out


def normalize_rows(vectors: np.ndarray, *, name: str = "vectors") -> np.ndarray:
    """Scale each row of a float32 matrix to unit length, in place, and return it.

    Raises:
        ValueError: If a row has zero length (it has no direction, so no cosine).

    Example:
        >>> normalize_rows(np.array([[3.0, 4.0]], dtype=np.float32)).tolist()
        [[0.6000000238418579, 0.800000011920929]]
    """
    norms = np.linalg.norm(vectors, axis=1)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise ValueError(f"{name} row {int(zero[0])} has zero length and cannot be normalised for cosine")
    vectors /= norms[:, None].astype(np.float32)
    return vectors
