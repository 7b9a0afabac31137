"""This process's requests, queued in memory and handed to ``prometheus_client``
in batches.

``prometheus_client``'s multiprocess mode writes every update to its
memory-mapped file under a lock: three writes a request here (a histogram
bucket, its sum, the bytes sent), and with many threads they wait for that
lock. A request here only appends a tuple to a deque (atomic, no lock); a
thread in each process adds up what was queued every :data:`PUBLISH_EVERY`
and adds the sums to the same ``prometheus_client`` values. Measured
(callgrind, ``/`` of bench/bench_app.py through the whole WSGI chain in one
process, the batches included; see :mod:`flask_prodserve.metrics`): the
metrics cost 56,000 instructions a request with a write per update, 21,000
with this and the route noted more cheaply, of 432,000 for the request with
metrics off.

The price is a delay: a process's latest requests reach the files (and so
other workers' scrapes) within :data:`PUBLISH_EVERY`; a scrape publishes its
own process's first, and a gunicorn worker publishes what is left as it exits.

Knows nothing of ``prometheus_client``: it adds to the values it is given.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

#: Seconds between a process's batches (see :class:`Tally`).
PUBLISH_EVERY = 0.1

#: A series' key: (request method, status code's three characters, route), as
#: the request gave them; the caller maps a key to its labels.
Key = tuple[str, str, str]
#: One request: its key's three fields, then its duration (seconds) and the
#: request and response body sizes (bytes).
Entry = tuple[str, str, str, float, int, int]


class Tally:
    """Requests queued by :meth:`record`, added by :meth:`publish` to a
    histogram's values (``series(key)`` gives the child for a key) and to the
    ``request_bytes`` and ``response_bytes`` counters."""

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
        self._queue: deque[Entry] = deque()
        #: Queue one request (deque.append: atomic, from any thread).
        self.record: Callable[[Entry], None] = self._queue.append
        self._publishing = threading.Lock()
        self._children: dict[Key, Any] = {}

    def publish(self) -> None:
        """Add the requests queued since the last call to the ``prometheus_client`` values."""
        with self._publishing:  # one reader of the queue at a time
            queue, bounds = self._queue, self.bounds
            batch: dict[Key, list[float]] = {}  # per bucket (+Inf last), then the sum
            request_size = response_size = 0
            while queue:
                method, code, route, duration, request_body, response_body = queue.popleft()
                sums = batch.get((method, code, route))
                if sums is None:
                    sums = batch[method, code, route] = [0] * (len(bounds) + 2)
                sums[bisect_left(bounds, duration)] += 1  # the first bound >= duration
                sums[-1] += duration
                request_size += request_body
                response_size += response_body
            for key, sums in batch.items():
                self._add(key, sums)
            if request_size:
                self.request_bytes.inc(request_size)
            if response_size:
                self.response_bytes.inc(response_size)

    def _add(self, key: Key, sums: list[float]) -> None:
        child = self._children.get(key)
        if child is None:  # made here, not in a request: it opens files
            child = self._children[key] = self.series(key)
        # A Histogram child's own values, as its observe() updates them (the
        # names and layout are the same in prometheus_client 0.20 to 0.26).
        values = child._buckets
        for i, count in enumerate(sums[:-1]):
            if count:
                values[i].inc(count)
        child._sum.inc(sums[-1])
