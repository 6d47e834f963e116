"""The cross-request scoring queue: one worker thread per model, a bounded queue, one engine call per batch.

Requests put their work into the queue and wait for it (:meth:`BatchQueue.submit` returns a :class:`Ticket`).
The worker takes the oldest waiting job, adds every other waiting job of the same *group* (same kind of engine
call) while the batch stays within ``max_items`` pairs and ``max_requests`` requests, makes **one** engine call
for all of them, and hands each job its own part of the result. It never waits for more work to arrive: under
light load a request is scored alone at once; under load, whatever queued up while the model was busy is scored
together (the engine then sorts all pairs by length into its token-budget batches).

Back-pressure is explicit: a full queue refuses a job at once (:class:`QueueFullError`), a job that waited past its
deadline is failed with :class:`QueueTimeoutError` instead of being scored, and a job whose client went away is
cancelled (:meth:`Ticket.cancel`) and dropped without touching the model. A batch that fails is retried job by
job, so one bad request never fails the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from jp_rerank.serve.metrics import Metrics

__all__ = ["SOLO", "BatchQueue", "QueueFullError", "QueueTimeoutError", "Ticket"]

logger = logging.getLogger(__name__)

SOLO = object()
"""Group of a job that runs on its own: its payload is a function of no arguments called by the worker."""

RunBatch = Callable[[Hashable, Sequence[Any]], Sequence[Any]]


class QueueFullError(RuntimeError):
    """The model's queue holds ``queue_size`` requests already (the server answers 503 at once)."""


class QueueTimeoutError(RuntimeError):
    """A request waited longer than ``max_wait_ms`` before its scoring could start (the server answers 503)."""


@dataclass(eq=False)
class Ticket:
    """A job in the queue: its future result, its size and the time by which its scoring must have started.

    Example:
        >>> ticket = Ticket("payload", size=3, group=None, deadline=0.0)
        >>> ticket.cancel(), ticket.future.cancelled()
        (True, True)
    """

    payload: Any
    size: int
    group: Hashable
    deadline: float
    future: Future[Any] = field(default_factory=Future)
    _queue: BatchQueue | None = field(default=None, repr=False)

    def cancel(self, reason: str = "disconnect") -> bool:
        """Drop the job if its scoring has not started; returns whether it was dropped.

        Args:
            reason: Why, for the metrics: ``"disconnect"`` (its client went away) or ``"timeout"``.
        """
        if not self.future.cancel():
            return False
        if self._queue is not None:
            self._queue._discard(self, reason)
        return True


class BatchQueue:
    """A bounded queue drained by one worker thread that combines waiting jobs into one engine call.

    Args:
        name: Model role (``"reranker"``, ``"embedder"``): the thread's name and the metrics label.
        run_batch: ``run_batch(group, payloads)`` makes one engine call for jobs of one group and returns one
            result per payload, in order.
        max_queue: Most jobs waiting; ``submit`` raises :class:`QueueFullError` beyond it.
        max_items: Most items (pairs, texts) combined into one call (a larger single job still runs, alone).
        max_requests: Most jobs combined into one call (1: no batching across requests).
        metrics: Where batch sizes, queue depth and drops are recorded.

    Example:
        >>> q = BatchQueue("demo", lambda group, payloads: [p * 2 for p in payloads], max_queue=8)
        >>> q.start()
        >>> q.submit(21, size=1, max_wait_s=5).future.result(timeout=5)
        42
        >>> q.stop()
    """

    def __init__(
        self,
        name: str,
        run_batch: RunBatch,
        *,
        max_queue: int = 256,
        max_items: int = 1024,
        max_requests: int = 64,
        metrics: Metrics | None = None,
    ) -> None:
        self.name = name
        self._run_batch = run_batch
        self.max_queue = max_queue
        self.max_items = max_items
        self.max_requests = max_requests
        self.metrics = metrics or Metrics()
        self.metrics.track_queue(name, self.depth)
        self._jobs: deque[Ticket] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def depth(self) -> int:
        """Jobs waiting now."""
        with self._cond:
            return len(self._jobs)

    def start(self) -> None:
        """Start the worker thread (once)."""
        with self._cond:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._work, name=f"jp-rerank-{self.name}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the jobs already queued, then stop the worker (waits at most ``timeout`` seconds)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def submit(self, payload: Any, *, size: int, max_wait_s: float, group: Hashable = None) -> Ticket:
        """Queue one job; its scoring must start within ``max_wait_s`` seconds.

        Args:
            payload: What ``run_batch`` gets for this job (for ``group=SOLO``: a function of no arguments).
            size: Its items (pairs, texts), counted against ``max_items``.
            max_wait_s: Most seconds it may wait before its scoring starts.
            group: Jobs of one group are combined; ``SOLO`` jobs run alone.

        Raises:
            QueueFullError: The queue holds ``max_queue`` jobs already.
            RuntimeError: The worker is stopped.
        """
        ticket = Ticket(payload, size, group, time.monotonic() + max_wait_s)
        ticket._queue = self
        with self._cond:
            if self._stopping or self._thread is None:
                raise RuntimeError(f"the {self.name} worker is not running")
            if len(self._jobs) >= self.max_queue:
                self.metrics.count_dropped(self.name, "full")
                raise QueueFullError(
                    f"the {self.name} queue is full ({self.max_queue} requests waiting, --queue-size); retry later"
                )
            self._jobs.append(ticket)
            self._cond.notify()
        return ticket

    def _discard(self, ticket: Ticket, reason: str) -> None:
        with self._cond:
            try:
                self._jobs.remove(ticket)
            except ValueError:
                return
        self.metrics.count_dropped(self.name, reason)

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if batch:
                self._run(batch)

    def _take(self) -> list[Ticket] | None:
        """The next batch (``[]`` when every waiting job was dropped), or ``None`` once stopped and drained."""
        with self._cond:
            while not self._jobs and not self._stopping:
                self._cond.wait()
            if not self._jobs:
                return None
            now = time.monotonic()
            first = self._jobs.popleft()
            batch: list[Ticket] = []
            if not self._claim(first, now):
                return batch
            batch.append(first)
            if first.group is SOLO or self.max_requests == 1:
                return batch
            items, kept = first.size, deque[Ticket]()
            while self._jobs:
                job = self._jobs.popleft()
                fits = job.group == first.group and job.group is not SOLO and items + job.size <= self.max_items
                if not fits or len(batch) >= self.max_requests:
                    kept.append(job)
                elif self._claim(job, now):
                    batch.append(job)
                    items += job.size
            self._jobs = kept
            return batch

    def _claim(self, job: Ticket, now: float) -> bool:
        """Mark ``job`` as running; ``False`` (and the job finished) if it was cancelled or waited too long."""
        if not job.future.set_running_or_notify_cancel():
            self.metrics.count_dropped(self.name, "disconnect")
            return False
        if now > job.deadline:
            self.metrics.count_dropped(self.name, "timeout")
            job.future.set_exception(
                QueueTimeoutError(f"the request waited over its limit in the {self.name} queue (--max-wait-ms)")
            )
            return False
        return True

    def _run(self, batch: list[Ticket]) -> None:
        self.metrics.observe_batch(self.name, requests=len(batch), items=sum(j.size for j in batch))
        try:
            results = self._call(batch)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            logger.info("a batch of %d %s requests failed (%s); scoring them one by one", len(batch), self.name, exc)
            for job in batch:
                try:
                    job.future.set_result(self._call([job])[0])
                except Exception as single:
                    job.future.set_exception(single)
            return
        for job, result in zip(batch, results, strict=True):
            job.future.set_result(result)

    def _call(self, batch: list[Ticket]) -> Sequence[Any]:
        group = batch[0].group
        if group is SOLO:
            return [batch[0].payload()]
        results = self._run_batch(group, [j.payload for j in batch])
        if len(results) != len(batch):
            raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} jobs")
        return results
