"""Fixtures shared by the engine tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def faiss_single_thread() -> Iterator[None]:
    """Run faiss on one OpenMP thread for the module, then restore the previous count.

    OpenMP threads crawl when the CPU is shared, and one thread makes HNSW graphs and k-means reproducible.
    Use it with ``pytestmark = pytest.mark.usefixtures("faiss_single_thread")``.
    """
    faiss = pytest.importorskip("faiss")
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)
