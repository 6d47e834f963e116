"""Prometheus metrics of the server, kept in memory and written in the Prometheus text format (no dependency).

What ``GET /metrics`` shows:

* ``jp_rerank_requests_total{route, status}``: requests answered;
* ``jp_rerank_request_duration_seconds{route}``: latency histogram (first byte in to last byte out);
* ``jp_rerank_batch_requests{model}`` / ``jp_rerank_batch_items{model}``: requests and pairs (or texts) per
  engine call, the batching across requests;
* ``jp_rerank_queue_depth{model}``: requests waiting now;
* ``jp_rerank_queue_dropped_total{model, reason}``: requests dropped before scoring (``full``, ``timeout``,
  ``disconnect``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable

__all__ = ["Histogram", "Metrics"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds (seconds) of the latency histogram."""

BATCH_REQUEST_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
"""Upper bounds of the requests-per-batch histogram."""

BATCH_ITEM_BUCKETS = (1, 8, 32, 64, 128, 256, 512, 1024, 2048, 4096)
"""Upper bounds of the pairs-per-batch histogram."""

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    items = [*labels, *([extra] if extra else [])]
    if not items:
        return ""
    escaped = (f'{k}="{_escape(v)}"' for k, v in items)
    return "{" + ",".join(escaped) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Histogram:
    """Cumulative buckets, sum and count of one labelled series.

    Example:
        >>> h = Histogram((1, 2))
        >>> h.observe(1.5)
        >>> h.counts, h.count
        ([0, 1], 1)
    """

    def __init__(self, buckets: Iterable[float]) -> None:
        self.bounds = tuple(float(b) for b in buckets)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Add one observation."""
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: Labels) -> list[str]:
        """The ``_bucket`` / ``_sum`` / ``_count`` lines of this series."""
        out, running = [], 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            running += n
            out.append(f"{name}_bucket{_labels(labels, ('le', _number(bound)))} {running}")
        out.append(f"{name}_bucket{_labels(labels, ('le', '+Inf'))} {self.count}")
        out.append(f"{name}_sum{_labels(labels)} {_number(self.sum)}")
        out.append(f"{name}_count{_labels(labels)} {self.count}")
        return out


class Metrics:
    """The server's counters and histograms (thread-safe: the scoring workers record batches).

    Example:
        >>> m = Metrics()
        >>> m.observe_request("/v1/rerank", 200, 0.02)
        >>> m.observe_batch("reranker", requests=3, items=120)
        >>> 'jp_rerank_requests_total{route="/v1/rerank",status="200"} 1' in m.render()
        True
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[Labels, int] = {}
        self._latency: dict[Labels, Histogram] = {}
        self._batch_requests: dict[Labels, Histogram] = {}
        self._batch_items: dict[Labels, Histogram] = {}
        self._dropped: dict[Labels, int] = {}
        self._depth: dict[str, Callable[[], int]] = {}

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        with self._lock:
            key = (("route", route), ("status", str(status)))
            self._requests[key] = self._requests.get(key, 0) + 1
            series = (("route", route),)
            self._latency.setdefault(series, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def observe_batch(self, model: str, *, requests: int, items: int) -> None:
        """Record one engine call of the scoring worker of ``model``: how many requests and pairs it combined."""
        with self._lock:
            series = (("model", model),)
            self._batch_requests.setdefault(series, Histogram(BATCH_REQUEST_BUCKETS)).observe(requests)
            self._batch_items.setdefault(series, Histogram(BATCH_ITEM_BUCKETS)).observe(items)

    def count_dropped(self, model: str, reason: str) -> None:
        """Count a request dropped before scoring (``full``, ``timeout``, ``disconnect``)."""
        with self._lock:
            key = (("model", model), ("reason", reason))
            self._dropped[key] = self._dropped.get(key, 0) + 1

    def track_queue(self, model: str, depth: Callable[[], int]) -> None:
        """Report ``depth()`` as the queue depth gauge of ``model``."""
        with self._lock:
            self._depth[model] = depth

    def dropped(self, model: str, reason: str) -> int:
        """How many requests of ``model`` were dropped for ``reason`` so far."""
        with self._lock:
            return self._dropped.get((("model", model), ("reason", reason)), 0)

    def max_batch_requests(self, model: str) -> int:
        """The most requests one engine call of ``model`` combined so far (0 before any)."""
        with self._lock:
            h = self._batch_requests.get((("model", model),))
            if h is None:
                return 0
            seen = [b for b, n in zip(h.bounds, h.counts, strict=True) if n]
            return int(max(seen)) if seen else 0

    def render(self) -> str:
        """All metrics in the Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            out = [
                "# HELP jp_rerank_requests_total HTTP requests answered, by route and status.",
                "# TYPE jp_rerank_requests_total counter",
            ]
            out += [f"jp_rerank_requests_total{_labels(k)} {v}" for k, v in sorted(self._requests.items())]
            out += self._histograms("jp_rerank_request_duration_seconds", "Request latency in seconds.", self._latency)
            out += self._histograms(
                "jp_rerank_batch_requests", "Requests combined into one engine call.", self._batch_requests
            )
            out += self._histograms(
                "jp_rerank_batch_items", "Pairs (or texts) scored in one engine call.", self._batch_items
            )
            out += ["# HELP jp_rerank_queue_depth Requests waiting for scoring.", "# TYPE jp_rerank_queue_depth gauge"]
            out += [f'jp_rerank_queue_depth{{model="{m}"}} {fn()}' for m, fn in sorted(self._depth.items())]
            out += [
                "# HELP jp_rerank_queue_dropped_total Requests dropped before scoring, by reason.",
                "# TYPE jp_rerank_queue_dropped_total counter",
            ]
            out += [f"jp_rerank_queue_dropped_total{_labels(k)} {v}" for k, v in sorted(self._dropped.items())]
        return "\n".join(out) + "\n"

    @staticmethod
    def _histograms(name: str, help_text: str, series: dict[Labels, Histogram]) -> list[str]:
        out = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        for labels, hist in sorted(series.items()):
            out += hist.lines(name, labels)
        return out
