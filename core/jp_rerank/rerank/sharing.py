"""Concurrent calls on one loaded model share forward passes instead of queueing behind one lock.

Threads (and asyncio tasks, which the adapters run in threads) that score on the same model at the same time put
their requests into one :class:`SharedScoring`. Whichever caller finds the model idle scores every waiting request
of the same kind in **one** engine call (whose pairs are then sorted by length into shared token-budget batches)
and hands each caller its own part; the others wait for their results. No thread of its own and no waiting for
more work: a caller alone is scored at once, exactly as before; callers that arrive while the model is busy are
scored together next. A combined call that fails is retried request by request, so one bad request never fails
the others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["SharedScoring"]

Result = TypeVar("Result")
Key = TypeVar("Key", bound=Hashable)
ScoreFn = Callable[[list[str], list[list[str]], Key], list[Result]]


@dataclass(eq=False)
class _Request(Generic[Key, Result]):
    queries: list[str]
    doc_lists: list[list[str]]
    key: Key
    pairs: int
    result: list[Result] | None = None
    error: BaseException | None = None
    done: bool = False


class SharedScoring(Generic[Key, Result]):
    """One model's scoring, shared by concurrent callers.

    Args:
        score: ``score(queries, doc_lists, key)`` scores each query against its own passages (one result per
            query); requests are combined only when their ``key`` (activation and per-call options) is equal.
        max_pairs: Most pairs combined into one call (a larger single request still runs, alone).

    Example:
        >>> shared = SharedScoring(lambda queries, docs, key: [len(d) for d in docs])
        >>> shared.run(["質問"], [["文書A", "文書B"]], "sigmoid")
        [2]
    """

    def __init__(self, score: ScoreFn[Key, Result], *, max_pairs: int = 1024) -> None:
        self._score = score
        self.max_pairs = max_pairs
        self._cond = threading.Condition()
        self._waiting: list[_Request[Key, Result]] = []
        self._busy = False

    def run(self, queries: list[str], doc_lists: list[list[str]], key: Key) -> list[Result]:
        """Score one request, together with whatever else is waiting when the model becomes free."""
        request = _Request[Key, Result](queries, doc_lists, key, sum(len(docs) for docs in doc_lists))
        with self._cond:
            self._waiting.append(request)
        while True:
            with self._cond:
                while self._busy and not request.done:
                    self._cond.wait()
                if request.done:
                    break
                self._busy = True
                # the oldest waiting request and every other of its key that fits
                first = self._waiting.pop(0)
                batch, kept, pairs = [first], [], first.pairs
                for other in self._waiting:
                    if other.key == first.key and pairs + other.pairs <= self.max_pairs:
                        batch.append(other)
                        pairs += other.pairs
                    else:
                        kept.append(other)
                self._waiting = kept
            try:
                if len(batch) > 1:
                    self._score_together(batch)
                for alone in batch:  # a lone request, or each of a combined call that failed
                    if not alone.done:
                        try:
                            alone.result = self._score(alone.queries, alone.doc_lists, alone.key)
                        except Exception as exc:
                            alone.error = exc
                        alone.done = True
            except BaseException as exc:  # KeyboardInterrupt in the scoring caller: nobody may wait forever
                for waiting in batch:
                    if not waiting.done:
                        waiting.error, waiting.done = exc, True
                raise
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _score_together(self, batch: list[_Request[Key, Result]]) -> None:
        """One engine call for the whole batch; on failure nothing is marked done (each is then scored alone)."""
        try:
            queries = [q for r in batch for q in r.queries]
            results = self._score(queries, [d for r in batch for d in r.doc_lists], batch[0].key)
        except Exception:  # one bad request must not fail the others
            return
        start = 0
        for request in batch:
            request.result, request.done = results[start : start + len(request.queries)], True
            start += len(request.queries)
