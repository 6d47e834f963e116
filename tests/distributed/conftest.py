"""One local Ray (2 CPUs) for every test of this folder that asks for it, started once and shut down at the end."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from jp_rerank.data import load_demo_corpus
from jp_rerank.text import split_sentences


@pytest.fixture(scope="session")
def local_ray() -> Iterator[Any]:
    """A local Ray with 2 CPUs; the jobs reuse it instead of starting their own (``ray_session``)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    if ray.is_initialized():  # pragma: no cover - another suite left one running
        ray.shutdown()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
        object_store_memory=512 * 1024 * 1024,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def recombined_passages() -> Callable[[int], list[str]]:
    """``n`` passages of 1 to 3 sentences of the demo corpus, the same ones for every ``n`` (seeded)."""
    sentences = [s for doc in load_demo_corpus() for s in split_sentences(doc["text"])]

    def passages(n: int) -> list[str]:
        rng = np.random.default_rng(0)
        return ["".join(rng.choice(sentences, int(rng.integers(1, 4)))) for _ in range(n)]

    return passages


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With ``pytest -n`` (``make test``), every Ray test runs in one worker: one local Ray for the suite."""
    for item in items:
        if item.get_closest_marker("ray") is not None:
            item.add_marker(pytest.mark.xdist_group("ray"))
