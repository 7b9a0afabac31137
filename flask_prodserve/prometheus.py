"""The metrics themselves, on ``prometheus_client``'s multiprocess mode.

Imported only when ``metrics_path`` is set (:func:`flask_prodserve.metrics.start`),
in the process that binds the socket, before any worker exists. Every
process writes its own values to memory-mapped files in a directory made for
this server run (its requests in batches, see :mod:`flask_prodserve.tally`);
a scrape, in whichever worker serves it, adds up the files of every process,
the live and the exited ones, so counts are exact across workers and survive
a worker being recycled. gunicorn's master marks an
exited worker dead (its in-flight and "alive" gauges leave the sum).

Names and labels follow the OpenTelemetry HTTP server conventions as the
Prometheus exporters write them (``http.server.request.duration`` becomes
``http_server_request_duration_seconds``, ``http.route`` ``http_route``).
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from .tally import PUBLISH_EVERY, Key, Tally

ENV = "PROMETHEUS_MULTIPROC_DIR"
_ATTEMPTS = 5
#: OpenTelemetry's advice for ``http.server.request.duration``, in seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_LABELS = ("http_request_method", "http_response_status_code", "http_route")
_METHODS = frozenset(
    ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
)

# prometheus_client asks for the process ID on every update, to notice a fork;
# os.getpid() is a system call. This is the same ID, refreshed after a fork.
_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


def _process_id() -> int:
    return _pid[0]


class Recorder:
    """One server run's metrics and their directory."""

    def __init__(self, threads: int) -> None:
        self.owner = os.getpid()
        self.started = time.time()
        self.threads = threads
        self.threads_busy: Callable[[], tuple[int, int]] | None = None
        self.forks = 0
        # Requests in flight in this process: deque.append and pop are atomic
        # and cost no file write; a thread in each process copies the count to
        # the gauge (see enter()).
        self.in_flight: deque[None] = deque()
        self.publisher = 0  # the process whose publishing thread runs
        self.directory = _fresh_directory()
        os.environ[ENV] = self.directory
        # prometheus_client picks its value class when first imported, from
        # the environment: the app may have imported it before the variable
        # was set, and a previous run in this process used another directory.
        # A fresh multiprocess class writes to this run's directory.
        values.ValueClass = values.MultiProcessValue(_process_id)  # type: ignore[no-untyped-call]
        self.duration = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests, to the last byte of the response.",
            _LABELS,
            buckets=BUCKETS,
            registry=None,
        )
        self.active = Gauge(
            "http_server_active_requests",
            "Requests in flight (under gunicorn, the threads busy serving); other "
            f"workers' as of {PUBLISH_EVERY} s ago.",
            registry=None,
            multiprocess_mode="livesum",
        )
        self.request_bytes = Counter(
            "http_server_request_body_size_bytes",
            "Request body bytes received (as their Content-Length says).",
            registry=None,
        )
        self.response_bytes = Counter(
            "http_server_response_body_size_bytes",
            "Response body bytes sent.",
            registry=None,
        )
        self.workers = Gauge(
            "flask_prodserve_workers",
            "Worker processes alive and serving.",
            registry=None,
            multiprocess_mode="livesum",
        )
        self.restarts = Counter(
            "flask_prodserve_worker_restarts",
            "Workers started to replace one that exited (max_requests, a crash, "
            "a timeout, a reload).",
            registry=None,
        )
        self.reloads = Counter(
            "flask_prodserve_reloads",
            "Reloads of the server that completed (SIGHUP).",
            registry=None,
        )
        self.restarts.inc(0)  # in the master's file: the series exists from the start
        self.reloads.inc(0)
        # Requests are counted in memory and published in batches (see tally.py).
        self.tally = Tally(BUCKETS, self._series, self.request_bytes, self.response_bytes)

    def _series(self, key: Key) -> Histogram:
        """The histogram child for ``(method, status line's start, route)``."""
        method, code, route = key
        method = method if method in _METHODS else "_OTHER"  # as OpenTelemetry bounds it
        return self.duration.labels(method, code if code.isdigit() else "", route)

    def enter(self) -> None:
        """A request starts (leave by ``in_flight.pop()``, then ``tally.record(...)``)."""
        self.in_flight.append(None)
        if self.publisher != _pid[0]:  # the first request in this process
            self.publisher = _pid[0]
            threading.Thread(target=self._publish, name="prodserve-metrics", daemon=True).start()

    def _publish(self) -> None:
        shown = -1
        while True:
            self.tally.publish()
            if len(self.in_flight) != shown:
                shown = len(self.in_flight)
                self.active.set(shown)
            time.sleep(PUBLISH_EVERY)

    def forked(self, workers: int) -> None:
        self.forks += 1
        if self.forks > workers:
            self.restarts.inc()

    def process_exited(self, pid: int) -> None:
        mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]

    def exposition(self) -> tuple[bytes, str]:
        """The text format of every process's metrics, and its content type."""
        self.tally.publish()  # this process's, exact
        self.active.set(len(self.in_flight))
        registry = CollectorRegistry()
        MultiProcessCollector(registry, self.directory)  # type: ignore[no-untyped-call]
        registry.register(_ServerCollector(self))
        for _ in range(_ATTEMPTS - 1):
            try:
                return generate_latest(registry), CONTENT_TYPE_LATEST
            except struct.error:
                # A process was creating its file (empty until it is sized) as
                # the collector read it: read again in a moment.
                time.sleep(0.01)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        # The files prometheus_client's values keep open are left to the
        # garbage collector: the publishing thread may still write to them
        # (closing them under it raised in that thread). Releases before 0.26
        # warn about them (ResourceWarning) when they are collected, which only
        # a process that serves more than once, such as the tests', ever sees.
        if os.environ.get(ENV) == self.directory:
            del os.environ[ENV]
        shutil.rmtree(self.directory, ignore_errors=True)


_PREFIX = "flask-prodserve-metrics-"


def _fresh_directory() -> str:
    """A new directory for this run, named after this process; those of
    processes that are gone (killed before they could remove theirs) are removed."""
    # In memory where there is such a place: requests write to these files.
    parent = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    for name in os.listdir(parent):
        pid = name[len(_PREFIX) :].split("-", 1)[0]
        if name.startswith(_PREFIX) and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=parent)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


class _ServerCollector:
    """Figures computed at scrape time: uptime, and busy threads where the server tells."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def collect(self) -> Iterable[Metric]:
        rec = self.recorder
        yield GaugeMetricFamily(
            "flask_prodserve_uptime_seconds",
            "Seconds since the server started.",
            value=time.time() - rec.started,
        )
        yield GaugeMetricFamily(
            "flask_prodserve_start_time_seconds",
            "When the server started, in seconds since the epoch.",
            value=rec.started,
        )
        if rec.threads_busy is not None:
            busy, queued = rec.threads_busy()
            yield GaugeMetricFamily(
                "flask_prodserve_threads", "Threads serving requests.", value=rec.threads
            )
            yield GaugeMetricFamily(
                "flask_prodserve_threads_busy", "Threads busy with a request.", value=busy
            )
            yield GaugeMetricFamily(
                "flask_prodserve_queued_requests",
                "Requests waiting for a free thread.",
                value=queued,
            )
