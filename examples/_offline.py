"""What the examples share: load the real models, or tiny stand-ins when they cannot be had (offline).

Not part of jp-rerank: the examples must run anywhere, including on a machine without the models, where they
fall back to the random-weight models of :mod:`jp_rerank.testing` (everything runs; the ranking is meaningless).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from jp_rerank import Embedder, ModelLoadError, Reranker
from jp_rerank.testing import build_dense_embedder, build_xlmr_cross_encoder


def load_or_toy_engines(reranker: str, embedder: str) -> tuple[Reranker, Embedder, str | None]:
    """Load a reranker and an embedder, or build tiny random-weight stand-ins when either cannot be had.

    Returns:
        The reranker, the embedder, and why the stand-ins were used (``None`` when the real models loaded).
    """
    try:
        return Reranker(reranker).load(), Embedder(embedder).load(), None
    except ModelLoadError as exc:
        root = Path(tempfile.mkdtemp(prefix="jp-rerank-toy-"))
        return (
            Reranker(build_xlmr_cross_encoder(root / "reranker")).load(),
            Embedder(build_dense_embedder(root / "embedder")).load(),
            str(exc),
        )
