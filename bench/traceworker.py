"""A tracing subclass of flask serve's gunicorn worker, for ``bench/causes.py``.

It notes, for every request, when its head was complete in the event loop,
when the loop gave it to a thread, and when that thread started and finished
it, and its number when the open-loop generator numbered it (``?n=I``; else
-1), and writes them to ``$BENCH_TRACE_DIR/<pid>.txt`` when the worker
stops. Served with ``--server-options '{"worker_class":
"bench.traceworker.TracingWorker"}'``; bench code only (it wraps private
methods of our own worker).
"""

from __future__ import annotations

import os
import queue
import re
import time
from typing import Any

from flask_prodserve.backends.gunicorn_worker import Conn, GatedWorker

_NUMBER = re.compile(rb"[?&]n=(\d+)[& ]")


class _StampingQueue(queue.SimpleQueue):  # type: ignore[type-arg]
    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is not None:  # None hands the event loop over
            item.t_dispatch = time.perf_counter()
        super().put(item, block, timeout)


class TracingWorker(GatedWorker):
    def init_process(self) -> None:
        self.trace: list[tuple[float, float, float, float, int]] = []
        super().init_process()

    def run(self) -> None:
        self.tasks = _StampingQueue()
        super().run()

    def _judge(self, conn: Conn) -> None:
        conn.t_read = time.perf_counter()  # type: ignore[attr-defined]
        super()._judge(conn)

    def _serve(self, conn: Conn) -> bool:
        started = time.perf_counter()
        number = _NUMBER.search(conn.head, 0, conn.head.find(b"\r\n"))
        n = int(number.group(1)) if number else -1  # before _serve consumes the head
        keep = super()._serve(conn)
        # A request answered in the event loop's own thread was never queued.
        dispatched = vars(conn).pop("t_dispatch", started)
        read = conn.t_read  # type: ignore[attr-defined]
        self.trace.append((read, dispatched, started, time.perf_counter(), n))
        return keep

    def _stop(self) -> None:
        folder = os.environ.get("BENCH_TRACE_DIR")
        if folder:
            with open(os.path.join(folder, f"{os.getpid()}.txt"), "w") as out:
                out.writelines(
                    f"{read:.6f} {dispatched:.6f} {started:.6f} {done:.6f} {n}\n"
                    for read, dispatched, started, done, n in self.trace
                )
        super()._stop()
