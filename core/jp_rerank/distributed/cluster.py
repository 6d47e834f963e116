"""Connecting to Ray and running one actor pool over a list of work items, in order, each item exactly once.

Every distributed job in :mod:`jp_rerank.distributed` has the same shape, Ray Data's batch-inference pattern: a
small dataset of *work items* (one row per corpus chunk, see :mod:`jp_rerank.distributed.corpus`) mapped by a
pool of actors (``map_batches`` with an :class:`ray.data.ActorPoolStrategy`), each actor loading its model once
in ``__init__`` and turning one work item into one output row per call. :func:`run_pool` streams the output rows
back to the driver in input order and checks that every item came back exactly once.

Faults: an actor whose process dies (killed, out of memory, a lost node) is restarted by Ray and its unfinished
item is retried up to :attr:`RayConfig.max_retries` times; an item's output only counts once its call has
returned, so a retried item is neither lost nor duplicated. An exception raised by the job's own code (a bad
line in a file, a model that fails to load) is not retried: the job fails with that error.

ray is imported only inside the functions here, so ``import jp_rerank.distributed`` stays light.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import threading
import time
import traceback
import warnings
import weakref
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from jp_rerank.distributed.interrupt import DeferredSigint

__all__ = ["ItemWorker", "RayConfig", "ray_session", "require_ray", "run_pool", "set_worker_threads"]

logger = logging.getLogger(__name__)

_Pools = weakref.WeakSet[Generator[dict[str, Any], None, None]]
_SESSION_POOLS: ContextVar[_Pools | None] = ContextVar("jp_rerank_ray_session_pools", default=None)
"""The row streams of :func:`run_pool` made in the :func:`ray_session` of this thread: closed at its end."""


def require_ray() -> ModuleType:
    """Import ``ray`` (with Ray Data) or raise an ``ImportError`` naming the ``ray`` extra.

    Raises:
        ImportError: If ray or its Data library is not installed.

    Example:
        >>> require_ray().__name__  # doctest: +SKIP
        'ray'
    """
    from jp_rerank.extras import require

    require("ray.data", "ray")
    return require("ray", "ray")


@dataclass(frozen=True)
class RayConfig:
    """Where a distributed job runs and how many actors it uses.

    Args:
        address: Ray cluster to use, as ``ray.init(address=...)`` takes it: ``None`` does what ``ray.init()``
            does (``RAY_ADDRESS``, else a cluster started with ``ray start`` on this machine, else a new local
            Ray for this job), ``"local"`` always starts a new local Ray, ``"auto"`` joins the ``ray start``
            cluster of this machine, ``"ray://head:10001"`` connects through Ray Client. When this process already
            called ``ray.init``, that connection is used and ``address`` is ignored.
        workers: Actors in the pool; each loads one copy of the model.
        cpus_per_worker: CPUs Ray reserves per actor.
        gpus_per_worker: GPUs per actor (``1`` for one model per GPU; fractions share a GPU).
        threads_per_worker: torch / faiss / tokenizer threads in each actor (default: ``cpus_per_worker``, at
            least 1). Keep ``workers * threads_per_worker`` at or below the CPUs of a machine.
        max_retries: How many times an item whose actor died is retried before the job fails.
        num_cpus: CPUs of a local Ray started here (default: all). Ignored when joining a cluster.
        progress: Show Ray Data's progress bars and log progress at INFO level.
        init_options: Extra keyword arguments of ``ray.init`` (e.g. ``runtime_env``), for a Ray started here.

    Raises:
        ValueError: If a count is not positive or a resource amount is negative.

    Example:
        >>> RayConfig(workers=4, cpus_per_worker=2).threads
        2
    """

    address: str | None = None
    workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    threads_per_worker: int | None = None
    max_retries: int = 3
    num_cpus: int | None = None
    progress: bool = True
    init_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be a positive int, got {self.workers!r}")
        if self.cpus_per_worker < 0 or self.gpus_per_worker < 0:
            raise ValueError("cpus_per_worker and gpus_per_worker must not be negative")
        if self.threads_per_worker is not None and self.threads_per_worker < 1:
            raise ValueError(f"threads_per_worker must be a positive int, got {self.threads_per_worker!r}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {self.max_retries!r}")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ValueError(f"num_cpus must be a positive int, got {self.num_cpus!r}")

    @property
    def threads(self) -> int:
        """Threads each actor uses for torch, faiss and tokenizers."""
        return self.threads_per_worker or max(1, int(self.cpus_per_worker))


@contextmanager
def ray_session(config: RayConfig) -> Iterator[ModuleType]:
    """Use the Ray connection of this process, or start / join one for the duration of the block.

    A Ray started or joined here is shut down at the end of the block, with every process it started; one that
    was already initialised (by the caller, or a test fixture) is left running. Pools of :func:`run_pool` still
    open at the end of the block are closed first (their actors stopped).

    Ctrl-C at any moment ends the block with ``KeyboardInterrupt`` after an orderly shutdown: one that arrives
    while Ray starts is acted on once ``ray.init`` has returned (a second one stops waiting for it), one that
    arrives while Ray shuts down once it has shut down (see :mod:`jp_rerank.distributed.interrupt`).

    Yields:
        The ``ray`` module.

    Example:
        >>> with ray_session(RayConfig(workers=1, num_cpus=1)) as ray:  # doctest: +SKIP
        ...     ray.cluster_resources()["CPU"]
        1.0
    """
    guard = DeferredSigint(force_on_second=True)
    with guard:
        ray = require_ray()
        where, started = "this process's Ray", False
        if not ray.is_initialized() and not guard.received:
            where, started = _init(ray, config), True
    pools: _Pools = weakref.WeakSet()
    token = _SESSION_POOLS.set(pools)
    try:
        guard.deliver()  # a Ctrl-C while Ray started: stop here, through the shutdown below
        _check_resources(ray.cluster_resources(), config, where)
        yield ray
    finally:
        _SESSION_POOLS.reset(token)
        _stop(ray, pools, started)


def _init(ray: ModuleType, config: RayConfig) -> str:
    """``ray.init`` as ``config`` asks (what a failed start left running is shut down); returns where Ray is."""
    address = config.address or os.environ.get("RAY_ADDRESS") or None
    options: dict[str, Any] = {}
    if address in (None, "local"):  # a Ray started here, for this block only
        options = {"include_dashboard": False, "logging_level": logging.WARNING}
        if config.num_cpus is not None:
            options["num_cpus"] = config.num_cpus
    options.update(config.init_options)
    where = address or "a new local instance"
    logger.info("connecting to Ray at %s", where)
    try:
        ray.init(address=address, **options)
    except BaseException:
        _shutdown(ray)
        raise
    return where


def _stop(ray: ModuleType, pools: _Pools, started: bool) -> None:
    """Close the session's pools still open and shut down a Ray started here; a Ctrl-C meanwhile is acted on after."""
    with DeferredSigint() as guard:
        for rows in list(pools):
            rows.close()  # Ray Data stops the pool's executor and actors
        if started:
            _join_data_threads()
            _shutdown(ray)
    guard.deliver()


_DATA_THREADS = ("StreamingExecutor", "iter_threaded")
"""Ray Data's driver threads that wait inside Ray while a pool runs (the executor by class name, the batch iterator's
workers by thread name); its block prefetcher parks on a condition and calls Ray only when given blocks."""


def _join_data_threads(timeout_s: float = 15.0) -> None:
    """Wait (at most ``timeout_s`` in all) for Ray Data's driver threads of the closed pools to end before shutdown.

    Closing a pool stops its executor (which waits only 2 s for its thread) and tells the batch iterator's workers
    to stop once their current ``ray.get`` returns. A thread still inside Ray when ``ray.shutdown()`` ran made Ray
    end the process with exit code 1 ("the core worker has already been shutdown"; seen in CI on a Ctrl-C while
    the job ran, on a loaded machine). After a finished job they have all ended already.
    """
    deadline = time.monotonic() + timeout_s
    for thread in threading.enumerate():
        if thread is threading.current_thread() or not thread.is_alive():
            continue
        if type(thread).__name__ in _DATA_THREADS or thread.name in _DATA_THREADS:
            thread.join(max(0.0, deadline - time.monotonic()))


def _shutdown(ray: ModuleType) -> None:
    """``ray.shutdown()``, then stop what the processes it started left behind (Ctrl-C deferred meanwhile).

    ``ray.shutdown`` gives the raylet one second to stop its workers and agents; a raylet killed after that
    (a slow machine, or one interrupted while it started) leaves its agents running for a minute or more.
    """
    with DeferredSigint() as guard:
        processes = _node_processes()
        try:
            ray.shutdown()
        finally:
            _reap(processes)
    guard.deliver()


def _node_processes() -> list[Any]:
    """The processes of the Ray node this process started (none when it joined a cluster), and their children."""
    import psutil  # a dependency of ray

    node = getattr(sys.modules.get("ray._private.worker"), "_global_node", None)
    groups: Mapping[str, Sequence[Any]] = getattr(node, "all_processes", None) or {}
    found: dict[int, Any] = {}
    for infos in groups.values():
        for info in infos:
            pid = getattr(getattr(info, "process", None), "pid", None)
            if pid is None:
                continue
            try:
                process = psutil.Process(pid)
                found.update({p.pid: p for p in (process, *process.children(recursive=True))})
            except psutil.Error:  # already gone
                continue
    return list(found.values())


def _reap(processes: Sequence[Any], grace_s: float = 3.0) -> None:
    """Wait up to ``grace_s`` for ``processes`` to end, then terminate and at last kill those still running."""
    import psutil

    def running(p: Any) -> bool:
        try:
            return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False

    alive = [p for p in processes if running(p)]
    for action, wait_s in ((None, grace_s), ("terminate", 2.0), ("kill", 2.0)):
        if action is not None:
            if action == "terminate":
                logger.info("stopping %d Ray processes left after ray.shutdown()", len(alive))
            for p in alive:
                try:
                    getattr(p, action)()
                except psutil.Error:
                    continue
        deadline = time.monotonic() + wait_s
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [p for p in alive if running(p)]
        if not alive:
            return
    logger.warning("%d Ray processes did not stop: %s", len(alive), ", ".join(str(p.pid) for p in alive))


def _check_resources(resources: dict[str, float], config: RayConfig, where: str) -> None:
    """Fail at once when no actor could ever be placed (Ray would wait for such a node forever).

    Example:
        >>> _check_resources({"CPU": 2.0}, RayConfig(gpus_per_worker=1), "here")
        Traceback (most recent call last):
        ValueError: the Ray cluster at here has 0 GPUs, but each worker asks for 1 (--gpus-per-worker); ...
    """
    for kind, wanted, flag in (
        ("GPU", config.gpus_per_worker, "--gpus-per-worker"),
        ("CPU", config.cpus_per_worker, "--cpus-per-worker"),
    ):
        have = float(resources.get(kind, 0.0))
        if wanted > 0 and have < wanted:
            raise ValueError(
                f"the Ray cluster at {where} has {have:g} {kind}s, but each worker asks for {wanted:g} ({flag}); "
                f"no worker could start (lower {flag} or use a cluster with {kind}s)"
            )


def set_worker_threads(threads: int) -> None:
    """Limit torch, faiss (OpenMP) and Hugging Face tokenizers to ``threads`` in the calling (actor) process.

    Libraries not imported yet read the environment variables set here when they start.
    """
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    if threads == 1:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    faiss = sys.modules.get("faiss")
    if faiss is not None:
        faiss.omp_set_num_threads(threads)


def _pack_error(exc: Exception) -> bytes:
    """Pickle a worker's exception (with its traceback as a note) for the driver to raise again."""
    add_note = getattr(exc, "add_note", None)  # Python >= 3.11
    if callable(add_note):
        add_note("raised in a Ray worker:\n" + "".join(traceback.format_exception(exc)).rstrip())
    try:
        return pickle.dumps(exc)
    except Exception:  # an exception that cannot be pickled: keep its type name and message
        return pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))


class ItemWorker:
    """Base of the actors :func:`run_pool` drives: ``setup`` once, then ``process`` one work item per call.

    Exceptions of ``setup`` (e.g. a model that cannot be loaded) and ``process`` (e.g. a malformed line) are sent
    back to the driver as data and raised there unchanged, instead of arriving as Ray's wrappers with only the
    text of the original error. A worker *process* that dies is a different matter: Ray restarts it and retries.

    Example:
        >>> class Double(ItemWorker):
        ...     def process(self, item):
        ...         return {"twice": 2 * item["x"]}
        >>> Double()({"item": [0], "x": [21]})["item"].tolist()
        [0]
    """

    def __init__(self, **kwargs: Any) -> None:
        self._setup_error: Exception | None = None
        try:
            self.setup(**kwargs)
        except Exception as exc:
            self._setup_error = exc

    def setup(self, **kwargs: Any) -> None:
        """Load the model (called once per actor process)."""

    def process(self, item: dict[str, Any]) -> dict[str, Any]:
        """Turn one work item into one output row (plain picklable values)."""
        raise NotImplementedError

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Ray Data entry point: a batch of one work item in, a batch of one row out."""
        item = {key: _plain(values[0]) for key, values in batch.items()}
        row: dict[str, Any] = {}
        error = b""
        try:
            if self._setup_error is not None:
                raise self._setup_error
            row = self.process(item)
        except Exception as exc:
            error = _pack_error(exc)
        return {
            "item": np.array([int(item["item"])], dtype=np.int64),
            "error": np.array([error], dtype=object),
            "row": np.array([pickle.dumps(row, protocol=5)], dtype=object),
        }


def _plain(value: Any) -> Any:
    """Numpy scalars of a Ray Data batch as Python values."""
    return value.item() if isinstance(value, np.generic) else value


def run_pool(
    items: Sequence[Mapping[str, Any]],
    worker: type[ItemWorker],
    worker_kwargs: Mapping[str, Any],
    config: RayConfig,
    *,
    name: str,
) -> Iterator[dict[str, Any]]:
    """Map ``items`` through a pool of ``worker`` actors and yield one output row per item, in input order.

    Args:
        items: Work items, each a mapping with an int ``"item"`` key (its position, 0..n-1) and plain values.
        worker: An :class:`ItemWorker` subclass; ``setup(**worker_kwargs)`` runs once per actor.
        worker_kwargs: Setup arguments (shipped once per actor through the object store).
        config: Cluster, pool size and retries.
        name: Name of the job in logs.

    Returns:
        A generator of the rows ``worker.process`` returned, with their ``"item"``, item 0 first. The pool starts
        when the first row is asked for, and stops when the generator is exhausted or closed, or at the end of
        the :func:`ray_session` it runs in.

    Raises:
        RuntimeError: If an item's output is missing or out of order (never expected from Ray; checked so that a
            bug cannot silently drop or repeat passages).
        Exception: The first error a worker raised, as raised there (e.g. ``ValueError`` for a malformed line).
    """
    rows = _pool_rows(items, worker, worker_kwargs, config, name)
    pools = _SESSION_POOLS.get()
    if pools is not None:
        pools.add(rows)
    return rows


def _pool_rows(
    items: Sequence[Mapping[str, Any]],
    worker: type[ItemWorker],
    worker_kwargs: Mapping[str, Any],
    config: RayConfig,
    name: str,
) -> Generator[dict[str, Any], None, None]:
    """The generator :func:`run_pool` returns."""
    ray = require_ray()  # imports ray.data too

    n = len(items)
    if n == 0:
        return
    ds = ray.data.from_items([dict(item) for item in items], override_num_blocks=n)
    ds.context.execution_options.preserve_order = True
    ds.context.enable_progress_bars = config.progress
    with warnings.catch_warnings():
        # Ray 2.5x deprecates passing actor options as **ray_remote_args but has no named parameter yet for
        # the task retries of an actor pool; without it an actor that always dies would be retried forever.
        warnings.simplefilter("ignore", DeprecationWarning)
        mapped = ds.map_batches(
            worker,
            fn_constructor_kwargs=dict(worker_kwargs),
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=min(config.workers, n)),
            num_cpus=config.cpus_per_worker,
            num_gpus=config.gpus_per_worker or None,
            max_restarts=-1,
            max_task_retries=config.max_retries,
        )
    mapped.context.execution_options.preserve_order = True
    data_logger = logging.getLogger("ray.data")
    level = data_logger.level
    if not config.progress:
        data_logger.setLevel(logging.WARNING)
    try:
        yield from _consume(mapped, n, name)
    finally:
        data_logger.setLevel(level)


def _consume(mapped: Any, n: int, name: str) -> Iterator[dict[str, Any]]:
    """Yield the output rows of ``mapped`` in item order, each item exactly once."""
    batches = iter(mapped.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2))
    try:
        yield from _checked(batches, n, name)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # stops Ray Data's executor (and the pool's actors) now, not when garbage collected


def _checked(batches: Iterator[Any], n: int, name: str) -> Iterator[dict[str, Any]]:
    """The rows of Ray Data's output ``batches``, checked: in item order, each item once, a worker's error raised."""
    expected = 0
    for batch in batches:
        for item, error, row in zip(batch["item"], batch["error"], batch["row"], strict=True):
            if int(item) < expected:  # a repeated output of an item already consumed: drop it
                logger.warning("%s: dropping a repeated output of work item %d", name, int(item))
                continue
            if int(item) != expected:
                raise RuntimeError(f"{name}: the output of work item {expected} is missing (got item {int(item)})")
            if len(error):
                raise pickle.loads(bytes(error))
            expected += 1
            out: dict[str, Any] = pickle.loads(bytes(row))
            out["item"] = int(item)
            yield out
    if expected != n:
        raise RuntimeError(f"{name}: {n - expected} of {n} work items produced no output")
