"""Fixtures shared by the engine tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

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


@pytest.fixture
def retrain_in_place() -> Callable[..., None]:
    """Give a model folder new weights of the same shapes, as a re-training or a replaced archive would.

    With ``keep_times=True`` the weight file keeps its size and times (``cp -p``, ``rsync -t``, ``tar -x``).
    """
    import os
    from pathlib import Path

    import torch
    from safetensors.torch import load_file, save_file

    def change(folder: Path, *, keep_times: bool = False) -> None:
        weights = next(Path(folder).glob("*.safetensors"))
        before = weights.stat()
        tensors = load_file(str(weights))
        for name, value in tensors.items():
            if "classifier" in name and value.is_floating_point():
                tensors[name] = value + torch.linspace(-1.0, 1.0, value.numel()).reshape(value.shape)
        save_file(tensors, str(weights), metadata={"format": "pt"})
        assert weights.stat().st_size == before.st_size
        if keep_times:
            os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))

    return change
