"""Clustered synthetic vectors for index tests and benchmarks (a Gaussian mixture on the unit sphere).

Uniform random vectors have no neighbours worth finding (all pairs are nearly orthogonal), so recall measured on
them says little. Real sentence embeddings form topical clusters with a low intrinsic dimension; a mixture of
Gaussians around random unit centres, optionally each spread along its own low-dimensional subspace, then
renormalised, is a simple stand-in with that structure.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from jp_rerank.checks import check_positive_int

__all__ = ["GaussianMixture"]


@dataclass(frozen=True)
class GaussianMixture:
    """A reproducible mixture of ``n_clusters`` Gaussians around random unit centres, in ``dim`` dimensions.

    With ``rank=None`` a sample is ``centre + spread * g / sqrt(dim)`` with isotropic ``g ~ N(0, I)``: in high
    dimension every member of a cluster is then almost equally far from every other, so "the 100 nearest" inside
    a big cluster is decided by noise. With ``rank=r`` each cluster spreads along its own random ``r``-dimensional
    subspace instead (``centre + spread * U_c z / sqrt(r)``), plus isotropic noise of length ``noise``: distances
    inside a cluster then vary as they do between real embeddings. Samples are normalised to unit length.

    Attributes:
        dim: Vector dimension.
        n_clusters: Number of mixture components.
        spread: Length of the within-cluster variation relative to the centre.
        seed: Seed of the centres (and subspaces); samples take their own seed.
        rank: Dimension of each cluster's subspace, or ``None`` for isotropic clusters.
        noise: Length of the isotropic noise added when ``rank`` is set.

    Example:
        >>> mix = GaussianMixture(dim=8, n_clusters=4)
        >>> mix.sample(5, seed=1).shape
        (5, 8)
        >>> GaussianMixture(dim=8, n_clusters=4, rank=2).sample(3, seed=1).dtype
        dtype('float32')
    """

    dim: int
    n_clusters: int
    spread: float = 1.0
    seed: int = 0
    rank: int | None = None
    noise: float = 0.1

    def centres(self) -> np.ndarray:
        """The unit-length cluster centres, shape ``(n_clusters, dim)``."""
        check_positive_int(self.dim, name="dim")
        check_positive_int(self.n_clusters, name="n_clusters")
        rng = np.random.default_rng(self.seed)
        c = rng.standard_normal((self.n_clusters, self.dim)).astype(np.float32)
        return c / np.linalg.norm(c, axis=1, keepdims=True)

    def _bases(self) -> np.ndarray | None:
        if self.rank is None:
            return None
        rank = check_positive_int(self.rank, name="rank")
        if rank > self.dim:
            raise ValueError(f"rank {rank} exceeds dim {self.dim}")
        rng = np.random.default_rng([self.seed, 7])
        g = rng.standard_normal((self.n_clusters, self.dim, rank)).astype(np.float32)
        return np.linalg.qr(g)[0]  # (n_clusters, dim, rank), orthonormal columns

    def sample(self, n: int, *, seed: int) -> np.ndarray:
        """Draw ``n`` unit vectors (float32, shape ``(n, dim)``), reproducibly for a given ``seed``."""
        parts = list(self.iter_samples(n, seed=seed, chunk=max(n, 1)))
        return parts[0] if parts else np.empty((0, self.dim), np.float32)

    def iter_samples(self, n: int, *, seed: int, chunk: int = 100_000) -> Iterator[np.ndarray]:
        """Draw ``n`` unit vectors in chunks of at most ``chunk`` rows (memory bounded by one chunk).

        The draw is reproducible for the same ``seed`` and ``chunk`` (a different ``chunk`` draws other vectors).
        """
        centres = self.centres()
        bases = self._bases()
        rng = np.random.default_rng([self.seed, seed])
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            labels = rng.integers(0, self.n_clusters, m)
            x = centres[labels]
            if bases is None:
                x += np.float32(self.spread / np.sqrt(self.dim)) * rng.standard_normal((m, self.dim), dtype=np.float32)
            else:
                rank = bases.shape[2]
                z = rng.standard_normal((m, rank), dtype=np.float32) * np.float32(self.spread / np.sqrt(rank))
                order = np.argsort(labels, kind="stable")
                bounds = np.searchsorted(labels[order], np.arange(self.n_clusters + 1))
                for c in np.flatnonzero(np.diff(bounds)):
                    rows = order[bounds[c] : bounds[c + 1]]
                    x[rows] += z[rows] @ bases[c].T
                x += np.float32(self.noise / np.sqrt(self.dim)) * rng.standard_normal((m, self.dim), dtype=np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            yield x
