"""A steady stream of requests straight to one server, to watch a reload.

Used by ``tests/test_reload_live.py`` and ``bench/rolling.py``. Three kinds
of client run at once, each in its own thread:

- **new**: a GET of ``/`` on a new connection every 10 ms;
- **kept-alive**: GETs of ``/`` one after another on one connection, 10 ms
  apart; when the server closes it, the client opens another, and (as
  browsers and urllib3 do) retries a request once when a kept connection
  was closed before any answer came;
- **slow**: GETs of ``/slow`` (the app takes 0.5 s), two at a time, so that
  requests are in flight when workers are switched.

A request fails unless it gets a 200. Every sample keeps the body, which for
the reload app (:data:`RELOAD_APP`) is the version of the code that served it.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from .nginx_harness import Sample, Stats, summarize

#: An app whose answers name the version of its code on disk (``version.py``).
RELOAD_APP = """\
import time

from flask import Flask
from flask_prodserve import ProdServe

import version

app = Flask(__name__)
prodserve = ProdServe(app)


@prodserve.worker_init
def connect(app):
    if version.INIT_FAILS:
        raise RuntimeError("cannot reach the database")


@app.get("/")
def index():
    return version.VERSION


@app.get("/slow")
def slow():
    time.sleep(0.5)
    return version.VERSION
"""


def write_app(
    folder: Path, version: str, *, broken: bool = False, init_fails: bool = False
) -> None:
    """The reload app in ``folder``, serving ``version``. ``broken``: its
    ``version.py`` raises at import (line 3); ``init_fails``: its worker_init
    hook raises."""
    (folder / "app.py").write_text(RELOAD_APP)
    raises = 'raise RuntimeError("broken deploy")\n' if broken else ""
    path = folder / "version.py"
    old = path.stat().st_mtime if path.exists() else 0.0
    path.write_text(f"VERSION = {version!r}\nINIT_FAILS = {init_fails}\n{raises}")
    # A .pyc is reused while the source's size and whole-second mtime match:
    # make sure a rewrite within the same second is seen as new.
    now = max(time.time(), old + 1)
    os.utime(path, (now, now))


@dataclass
class Answer(Sample):
    body: str = ""
    kind: str = ""


class _Client(threading.Thread):
    def __init__(self, load: Load, kind: str, path: str, interval: float, keep: bool) -> None:
        super().__init__(daemon=True)
        self.load, self.kind, self.path = load, kind, path
        self.interval, self.keep = interval, keep
        self.conn: http.client.HTTPConnection | None = None

    def run(self) -> None:
        while not self.load.halt.is_set():
            started = time.monotonic()
            try:
                status, body = self._get()
                ok, detail = status == 200, f"{self.kind} {self.path}: {status}"
            except (OSError, http.client.HTTPException) as exc:
                ok, body, detail = False, "", f"{self.kind} {self.path}: {exc!r}"
                self._close()
            latency = time.monotonic() - started
            self.load.add(Answer(started, latency, ok, detail, body, self.kind))
            self.load.halt.wait(max(0.0, self.interval - latency))
        self._close()

    def _get(self) -> tuple[int, str]:
        reused = self.conn is not None
        try:
            return self._exchange()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not reused:
                raise
            self._close()  # the server closed a kept connection: one retry
            return self._exchange()

    def _exchange(self) -> tuple[int, str]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.load.host, self.load.port, timeout=30)
        self.conn.request("GET", self.path)
        resp = self.conn.getresponse()
        body = resp.read().decode(errors="replace")
        if not self.keep or resp.will_close:
            self._close()
        return resp.status, body

    def _close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Load:
    """The three clients of the module docstring, against ``host:port``."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.samples: list[Answer] = []
        self.halt = threading.Event()
        self._lock = threading.Lock()
        self.clients = [
            _Client(self, "new", "/", 0.01, keep=False),
            _Client(self, "kept-alive", "/", 0.01, keep=True),
            _Client(self, "slow", "/slow", 0.0, keep=False),
            _Client(self, "slow", "/slow", 0.0, keep=False),
        ]

    def add(self, answer: Answer) -> None:
        with self._lock:
            self.samples.append(answer)

    def answers(self) -> list[Answer]:
        with self._lock:
            return list(self.samples)

    def stats(self, since: float = 0.0, until: float = float("inf")) -> Stats:
        """Latencies of the GETs of ``/`` (the slow requests take 0.5 s by
        design); requests sent and failed of every kind."""
        answers = self.answers()
        fast = summarize([a for a in answers if a.kind != "slow"], since, until)
        every = summarize(answers, since, until)
        return replace(fast, sent=every.sent, failed=every.failed, failures=every.failures)

    def first_served(self, body: str, since: float) -> float | None:
        """Seconds from ``since`` until a request started then got ``body``."""
        times = [a.started for a in self.answers() if a.started >= since and a.body == body]
        return min(times) - since if times else None

    def wait_served(self, body: str, since: float, deadline: float) -> float:
        """Wait until :meth:`first_served` is known; raise if not within ``deadline``."""
        end = time.monotonic() + deadline
        while (took := self.first_served(body, since)) is None:
            if time.monotonic() > end:
                raise AssertionError(f"{body!r} not served within {deadline} s")
            time.sleep(0.05)
        return took

    def last_served(self, body: str) -> float:
        """When the last request that got ``body`` started."""
        return max((a.started for a in self.answers() if a.body == body), default=0.0)


@contextmanager
def load(host: str, port: int) -> Iterator[Load]:
    stream = Load(host, port)
    for client in stream.clients:
        client.start()
    try:
        yield stream
    finally:
        stream.halt.set()
        for client in stream.clients:
            client.join(60)
        assert not any(c.is_alive() for c in stream.clients), "the load did not stop"
