"""How many requests a worker process runs at once: one, unless it is slow.

Threads of one process take turns on the GIL: eight requests running at once
in one process each take about eight times longer, in an order no one
chose, and a request that came first may finish last. A worker serving short
requests one at a time, in the order they came, answers most of them sooner
and none of them much later. But a request that waits (on a database, a
file, ``time.sleep``) must not hold up the others: once the running requests
have all run for :data:`PATIENCE`, the next one starts anyway.
"""

from __future__ import annotations

import threading
import time
from collections import deque

#: How long (seconds) a request runs alone before the next one may start.
PATIENCE = 0.002


class RunGate:
    """Admits requests in the order they ask: ``limit`` at once, more once
    those have run for ``patience``."""

    def __init__(self, limit: int = 1, patience: float = PATIENCE) -> None:
        self.limit = limit
        self.patience = patience
        self._lock = threading.Lock()
        self._started: dict[object, float] = {}  # running requests: token -> start
        self._waiting: deque[tuple[object, threading.Event]] = deque()

    def _young(self, now: float) -> list[float]:
        return [t for t in self._started.values() if now - t < self.patience]

    def enter(self) -> object:
        """Wait for this request's turn; the token to give :meth:`leave`."""
        token = object()
        with self._lock:
            now = time.monotonic()
            young = self._young(now)
            if not self._waiting and len(young) < self.limit:
                self._started[token] = now
                return token
            turn = threading.Event()
            self._waiting.append((token, turn))
        while True:
            with self._lock:
                if token in self._started:  # handed over by leave()
                    return token
                now = time.monotonic()
                young = self._young(now)
                if len(young) < self.limit and self._waiting[0][0] is token:
                    self._waiting.popleft()
                    self._started[token] = now
                    return token
                wait = min(young) + self.patience - now if young else self.patience
            turn.wait(max(wait, 0.0005))

    def leave(self, token: object) -> None:
        with self._lock:
            del self._started[token]
            if self._waiting:
                nxt, turn = self._waiting.popleft()
                self._started[nxt] = time.monotonic()
                turn.set()
