"""This process's request figures, counted in memory and handed to
``prometheus_client`` in batches.

``prometheus_client``'s multiprocess mode writes every update to its
memory-mapped file under a lock: three writes a request here (a histogram
bucket, its sum, the bytes sent). Counting in a dict under one lock instead,
and adding what changed to the same ``prometheus_client`` values a few times a
second, measured (callgrind, ``/`` of bench/bench_app.py through the whole WSGI
chain, in one process; see :mod:`flask_prodserve.metrics`): the metrics' own
recording went from 26,000 to 6,000 instructions a request, of 430,000 for the
request with metrics off.

The price is a delay: a process's latest requests reach the files (and so
other workers' scrapes) within :data:`PUBLISH_EVERY`; a scrape publishes its
own process's first, and a worker publishes what is left as it exits.

Knows nothing of ``prometheus_client``: it adds to the values it is given.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any

#: Seconds between a process's batches (see :class:`Tally`).
PUBLISH_EVERY = 0.1

#: A series' key: (request method, status code's three characters, route), as
#: the request gave them; the caller maps a key to its labels.
Key = tuple[str, str, str]


class Tally:
    """Requests counted in memory by :meth:`record`, added by :meth:`publish`
    to a histogram's values (``series(key)`` gives the child for a key) and to
    the ``request_bytes`` and ``response_bytes`` counters."""

    def __init__(
        self,
        bounds: Sequence[float],
        series: Callable[[Key], Any],
        request_bytes: Any,
        response_bytes: Any,
    ) -> None:
        self.bounds = tuple(bounds)
        self.series = series
        self.request_bytes = request_bytes
        self.response_bytes = response_bytes
        # One cheap lock for the request threads: `+=` is not atomic.
        self._lock = threading.Lock()
        self._publishing = threading.Lock()
        self._counts: dict[Key, _Counts] = {}
        self._sizes = [0, 0]  # request bytes, response bytes
        self._shown = (0, 0)  # the sizes as published
        self._recorded = 0
        self._published = 0

    def record(self, key: Key, duration: float, request_size: int, response_size: int) -> None:
        """Count one request (a few microseconds; nothing is written)."""
        index = bisect_left(self.bounds, duration)  # the first bucket with duration <= bound
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = _Counts(key, len(self.bounds) + 1)
            counts.buckets[index] += 1
            counts.sum += duration
            sizes = self._sizes
            sizes[0] += request_size
            sizes[1] += response_size
            self._recorded += 1

    def publish(self) -> None:
        """Add what was counted since the last call to the ``prometheus_client`` values."""
        with self._publishing:
            with self._lock:
                if self._recorded == self._published:
                    return
                self._published = self._recorded
                batch = [(c, c.buckets.copy(), c.sum) for c in self._counts.values()]
                request_size, response_size = self._sizes
            for counts, buckets, total in batch:
                counts.publish(buckets, total, self.series)
            _add(self.request_bytes, request_size - self._shown[0])
            _add(self.response_bytes, response_size - self._shown[1])
            self._shown = (request_size, response_size)


class _Counts:
    """One series: requests per bucket (not cumulative; +Inf last) and their sum,
    and the same as published."""

    __slots__ = ("buckets", "child", "key", "shown", "shown_sum", "sum")

    def __init__(self, key: Key, size: int) -> None:
        self.key = key
        self.buckets = [0] * size
        self.sum = 0.0
        self.shown = [0] * size
        self.shown_sum = 0.0
        self.child: Any = None

    def publish(self, buckets: list[int], total: float, series: Callable[[Key], Any]) -> None:
        if buckets == self.shown:
            return
        if self.child is None:  # made here, not in a request: it opens files
            self.child = series(self.key)
        # A Histogram child's own values, as its observe() updates them (the
        # names and layout are the same in prometheus_client 0.20 to 0.26).
        values = self.child._buckets
        for i, (now, shown) in enumerate(zip(buckets, self.shown, strict=True)):
            if now != shown:
                values[i].inc(now - shown)
        self.child._sum.inc(total - self.shown_sum)
        self.shown = buckets
        self.shown_sum = total


def _add(counter: Any, amount: int) -> None:
    if amount:
        counter.inc(amount)
