"""A logging handler that writes in batches, for the access log.

Writing each access line as it is logged costs a system call per request,
and a thread that blocks in a system call gives up the GIL and then waits
to get it back behind threads busy running requests (up to Python's 5 ms
switch interval each time). Measured under waitress with 32 threads, that
cost two thirds of the throughput. This handler keeps lines in memory and
writes them at most every ``interval`` seconds (or when ``max_size``
characters are pending) from a background thread, and on exit.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import TextIO


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Like :class:`logging.StreamHandler`, but writes lines in batches."""

    def __init__(self, stream: TextIO, interval: float = 0.2, max_lines: int = 1000) -> None:
        super().__init__(stream)
        self.interval = interval
        self.max_lines = max_lines
        self.pending: deque[str] = deque()
        self.flusher_pid = 0  # threads do not survive fork: one flusher per process

    def handle(self, record: logging.LogRecord) -> bool:
        # Without the handler's lock: deque.append is atomic, and threads
        # queueing on a lock while the GIL moves between them cost more than
        # the write saved (measured).
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.pending.append(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)
            return
        if self.flusher_pid != os.getpid():
            self._start_flusher()
        if len(self.pending) >= self.max_lines:
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # one writer at a time
            lines = []
            while self.pending:  # popleft is atomic: lines appended meanwhile wait
                lines.append(self.pending.popleft())
            try:
                if lines:
                    self.stream.write("".join(lines))
                super().flush()
            except (OSError, ValueError):  # a closed or broken stream: drop, keep serving
                pass

    def _start_flusher(self) -> None:
        self.flusher_pid = os.getpid()
        threading.Thread(target=self._flush_every_interval, daemon=True).start()

    def _flush_every_interval(self) -> None:
        while True:
            time.sleep(self.interval)
            self.flush()
