"""When a worker process starts its next request: at once while it runs none.

Threads of one process take turns on the GIL: eight requests running at once
in one process each take about eight times longer, in an order no one
chose, and a request that came first may finish last. A worker serving short
requests one at a time, in the order they came, answers most of them sooner
and none of them much later. But a request that waits (on a database, a
file, ``time.sleep``) must not hold up the others: once the running requests
have all run for ``patience``, the next one starts anyway.
"""

from __future__ import annotations

from collections.abc import Iterable


def next_start(started: Iterable[float], now: float, limit: int, patience: float) -> float:
    """When the next request may start, given when the running ones did:
    ``now`` while fewer than ``limit`` of them started within ``patience``,
    else once enough of those have run that long."""
    young = sorted(t for t in started if now - t < patience)
    if len(young) < limit:
        return now
    return young[len(young) - limit] + patience
