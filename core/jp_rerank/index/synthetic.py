"""Clustered synthetic vectors for index tests and benchmarks (a Gaussian mixture on the unit sphere).

Uniform random vectors have no neighbours worth finding (all pairs are nearly orthogonal), so recall measured on
them says little. Real sentence embeddings form topical clusters; a mixture of Gaussians around random unit
centres, renormalised, is a simple stand-in with that structure.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from jp_rerank._validate import check_positive_int

__all__ = ["GaussianMixture"]


@dataclass(frozen=True)
class GaussianMixture:
    """A reproducible mixture of ``n_clusters`` Gaussians around random unit centres, in ``dim`` dimensions.

    A sample is ``centre + spread * noise / sqrt(dim)``, normalised to unit length, so ``spread`` is the ratio
    of noise length to centre length (1.0: points sit about 45 degrees from their centre).

    Attributes:
        dim: Vector dimension.
        n_clusters: Number of mixture components.
        spread: Noise length relative to the centre.
        seed: Seed of the centres; samples take their own seed.

    Example:
        >>> mix = GaussianMixture(dim=8, n_clusters=4)
        >>> mix.sample(5, seed=1).shape
        (5, 8)
    """

    dim: int
    n_clusters: int
    spread: float = 1.0
    seed: int = 0

    def centres(self) -> np.ndarray:
        """The unit-length cluster centres, shape ``(n_clusters, dim)``."""
        check_positive_int(self.dim, name="dim")
        check_positive_int(self.n_clusters, name="n_clusters")
        rng = np.random.default_rng(self.seed)
        c = rng.standard_normal((self.n_clusters, self.dim)).astype(np.float32)
        return c / np.linalg.norm(c, axis=1, keepdims=True)

    def sample(self, n: int, *, seed: int) -> np.ndarray:
        """Draw ``n`` unit vectors (float32, shape ``(n, dim)``), reproducibly for a given ``seed``."""
        return next(self.iter_samples(n, seed=seed, chunk=max(n, 1)), np.empty((0, self.dim), np.float32))

    def iter_samples(self, n: int, *, seed: int, chunk: int = 100_000) -> Iterator[np.ndarray]:
        """Draw ``n`` unit vectors in chunks of at most ``chunk`` rows (memory bounded by one chunk)."""
        centres = self.centres()
        rng = np.random.default_rng([self.seed, seed])
        scale = np.float32(self.spread / np.sqrt(self.dim))
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            x = centres[rng.integers(0, self.n_clusters, m)]
            x += scale * rng.standard_normal((m, self.dim), dtype=np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            yield x
