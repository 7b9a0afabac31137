"""The supervisor of waitress workers (POSIX), live: real processes, real
sockets. Workers are found with ``pgrep -P`` and told apart by the process ID
the echo app reports; requests flow while workers die, recycle and reload.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from bench.nginx_harness import Stream

from .helpers import LiveServer, children, serve_args

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the supervisor needs fork")

GRACE = 10


class Direct:
    """A :class:`bench.nginx_harness.Getter` that sends to the server itself."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server

    def request(self, path: str, *, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        return self.server.request("GET", path, timeout=timeout)


def served_by(server: LiveServer) -> int:
    pid: int = server.get_json("/")["pid"]
    return pid


def wait_until(what: str, done: Callable[[], Any], server: LiveServer, deadline: float = 30) -> Any:
    end = time.monotonic() + deadline
    while not (result := done()):
        assert time.monotonic() < end, f"not {what} within {deadline} s:\n{server.log}"
        time.sleep(0.05)
    return result


def stable_workers(server: LiveServer, count: int) -> set[int]:
    """The ``count`` workers, once exactly that many run."""
    return set(
        wait_until(f"{count} workers", lambda: len(w := children(server)) == count and w, server)
    )


def test_two_workers_both_serve(flask_serve: Any) -> None:
    server = flask_serve(serve_args("waitress", "--workers", "2"))
    assert "Workers: 2 processes x 32 threads" in server.log
    pids = stable_workers(server, 2)
    seen: set[int] = set()
    # Both workers wait on the same socket; the kernel picks one per connection.
    wait_until("served by both", lambda: seen.add(served_by(server)) or seen == pids, server)
    assert server.proc.pid not in seen  # the parent serves nothing itself
    assert server.terminate() == 0


def test_a_killed_worker_is_replaced(flask_serve: Any) -> None:
    server = flask_serve(serve_args("waitress", "--workers", "2"))
    before = stable_workers(server, 2)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    after = wait_until("replaced", lambda: len(w := children(server) - {victim}) == 2 and w, server)
    assert len(after - before) == 1
    server.wait_for_log(f" * Worker {victim} was killed by SIGKILL; starting a new one.")
    seen = {served_by(server) for _ in range(40)}
    assert victim not in seen
    assert server.terminate() == 0


def test_max_requests_recycles_without_a_failed_request(flask_serve: Any) -> None:
    args = ["--workers", "2", "--max-requests", "20", "--max-requests-jitter", "5"]
    server = flask_serve(serve_args("waitress", *args))
    first = stable_workers(server, 2)
    stream = Stream(Direct(server), "/", interval=0.01)
    stream.start()
    try:
        # 200 requests at least, so each first worker passes its 20-25.
        wait_until("200 requests", lambda: len(stream.samples) >= 200, server, deadline=60)
    finally:
        stream.stop()
    stats = stream.stats()
    print(f"max_requests 20 (+0..5), 2 workers: {stats}")
    assert stats.failed == 0, stats.failures[:5]
    assert not first & children(server), "the first workers were never recycled"
    assert server.terminate() == 0


def test_a_hung_worker_is_killed_and_replaced(flask_serve: Any) -> None:
    server = flask_serve(
        serve_args("waitress", "--workers", "1", "--threads", "1", "--timeout", "3")
    )
    (hung,) = stable_workers(server, 1)
    outcome: list[Any] = []

    def forever() -> None:
        try:
            outcome.append(server.request("GET", "/sleep?s=600", timeout=60))
        except OSError as exc:  # the worker was killed under it
            outcome.append(exc)

    thread = threading.Thread(target=forever, daemon=True)
    thread.start()
    log = server.wait_for_log("sent no heartbeat", deadline=30)
    assert re.search(
        rf" \* Worker {hung} sent no heartbeat for 3 s \(every thread busy, or its loop "
        r"blocked\); killed it \(SIGKILL\), starting a new one\.",
        log,
    ), log
    thread.join(30)
    assert outcome and isinstance(outcome[0], OSError), outcome
    assert served_by(server) != hung
    assert "was killed by SIGKILL" not in server.log  # one line for one kill
    assert server.terminate() == 0


def test_sighup_reloads_without_a_failed_request(flask_serve: Any) -> None:
    server = flask_serve(serve_args("waitress", "--workers", "2", "--graceful-timeout", str(GRACE)))
    parent = server.proc.pid
    first = stable_workers(server, 2)
    streams = [
        Stream(Direct(server), "/", interval=0.01),  # a new connection every 10 ms
        Stream(Direct(server), "/sleep?s=0.5", interval=0),  # always one in flight
    ]
    for stream in streams:
        stream.start()
    try:
        time.sleep(1)
        hup = time.monotonic()
        os.kill(parent, signal.SIGHUP)
        wait_until("the new generation", lambda: not first & children(server), server, 60)
        done = time.monotonic()
        time.sleep(1)
    finally:
        for stream in streams:
            stream.stop()
    quick, slow = (stream.stats(hup - 1, done + 1) for stream in streams)
    print(
        f"reload, 2 workers: {done - hup:.2f} s; new connections: {quick}; 0.5 s requests: {slow}"
    )
    assert quick.failed == slow.failed == 0, quick.failures[:5] + slow.failures[:5]
    assert quick.sent > 50 and slow.sent >= 2, (quick, slow)
    second = stable_workers(server, 2)
    assert not first & second
    for pid in second:
        assert f" * Reloaded: generation 2 ready (pid {pid})" in server.log
    assert {served_by(server) for _ in range(20)} <= second
    assert server.proc.poll() is None and children(server) == second  # same parent
    assert server.terminate() == 0
    assert server.log.rstrip().endswith("* Stopped.")
