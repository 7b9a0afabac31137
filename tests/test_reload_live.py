"""Deploying new code into a running server (SIGHUP, reload_file), under load.

Real ``flask serve`` processes on real sockets, serving an app written to
``tmp_path`` whose answers name the version of its code on disk
(bench/reloadload.py), while a steady stream of clients runs: a new
connection every 10 ms, a kept-alive client, and 0.5 s requests in flight.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.reloadload import Load, load, write_app

from .helpers import PROD_BACKENDS, LiveServer

pytestmark = pytest.mark.timeout(240)

Start = Callable[..., LiveServer]
RELOAD_BACKENDS = PROD_BACKENDS
WORKERS = 2


@pytest.fixture
def start(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Start]:
    """``start(backend, *flags)``: the reload app (version v1) served from
    ``tmp_path / "site"``, killed at the end, its log shown if the test failed."""
    site = tmp_path / "site"
    site.mkdir()
    write_app(site, "v1")
    servers: list[LiveServer] = []

    def begin(backend: str, *flags: str) -> LiveServer:
        args = ["--app", "app", "serve", "--prod", "--server", backend, "--port", "0"]
        args += ["--workers", str(WORKERS), "--threads", "4", "--health-path", "/healthz"]
        server = LiveServer([*args, *flags], tmp_path / f"server-{len(servers)}.log")
        servers.append(server)
        return server.start_in(site)

    yield begin
    for server in servers:
        server.kill()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for server in servers:
            print(f"--- {server.args}\n{server.log}")


def _site(server: LiveServer) -> Path:
    return server.cwd


def _hup(server: LiveServer) -> float:
    assert server.proc is not None
    began = time.monotonic()
    server.proc.send_signal(signal.SIGHUP)
    return began


def _wait_ready_lines(server: LiveServer, generation: int, deadline: float = 60) -> list[int]:
    """The PIDs of the new workers, once every one reported ready."""
    pattern = re.compile(rf"Reloaded: generation {generation} ready \(pid (\d+)\)")
    end = time.monotonic() + deadline
    while len(pids := pattern.findall(server.log)) < WORKERS:
        assert time.monotonic() < end, f"generation {generation} not ready:\n{server.log}"
        time.sleep(0.05)
    return [int(p) for p in pids]


def _workers(server: LiveServer) -> set[int]:
    assert server.proc is not None
    found = subprocess.run(
        ["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True, timeout=10
    )
    return {int(pid) for pid in found.stdout.split()}


def _settled(server: LiveServer, deadline: float = 30) -> set[int]:
    """The worker PIDs, once there are as many as configured."""
    end = time.monotonic() + deadline
    while len(workers := _workers(server)) != WORKERS:
        assert time.monotonic() < end, (workers, server.log)
        time.sleep(0.1)
    return workers


def _only_serves(stream: Load, body: str, deadline: float = 60) -> None:
    """Until the last 20 answers to ``/`` (started after now) are all ``body``."""
    since = time.monotonic()
    end = since + deadline
    while True:
        recent = [a.body for a in stream.answers() if a.started > since and a.kind != "slow"]
        if len(recent) >= 20 and set(recent[-20:]) == {body}:
            return
        assert time.monotonic() < end, f"still not only {body!r}: {recent[-20:]}"
        time.sleep(0.1)


def _no_failures(stream: Load) -> None:
    stats = stream.stats()
    # At least half a second of traffic: waitress does two reloads in about one.
    assert stats.sent > 50 and stats.failed == 0, stats.failures[:10]


@pytest.mark.parametrize("backend", RELOAD_BACKENDS)
def test_two_reloads_under_load_drop_nothing(start: Start, backend: str) -> None:
    server = start(backend)
    with load(server.host, server.port) as stream:
        stream.wait_served("v1", 0.0, 30)
        for generation, version in ((2, "v2"), (3, "v3")):
            write_app(_site(server), version)
            began = _hup(server)
            stream.wait_served(version, began, 30)  # new code, within seconds
            _wait_ready_lines(server, generation)
            _only_serves(stream, version)  # and the old workers are gone
        assert server.proc is not None and server.proc.poll() is None
    _no_failures(stream)
    assert stream.first_served("v3", 0.0) is not None
    # The access log names the generation that served each request.
    log = server.wait_for_log('"GET / HTTP/1.1" 200 2 "-"')
    assert re.search(r'"GET / HTTP/1\.1" 200 2 "-" "[^"]*" [\d.]+ 3$', log, re.M), log


@pytest.mark.parametrize("backend", RELOAD_BACKENDS)
def test_a_reload_that_fails_to_import_changes_nothing(start: Start, backend: str) -> None:
    server = start(backend)
    workers = _settled(server)
    with load(server.host, server.port) as stream:
        stream.wait_served("v1", 0.0, 30)
        write_app(_site(server), "v2", broken=True)
        _hup(server)
        server.wait_for_log(
            "Reload failed, generation 1 keeps serving: the new code failed to load: "
            "RuntimeError: broken deploy (version.py, line 3)",
            deadline=30,
        )
        _only_serves(stream, "v1")
        assert _workers(server) == workers  # not a single worker was restarted
        write_app(_site(server), "v2")  # fixed: a later reload succeeds
        stream.wait_served("v2", _hup(server), 30)
        _wait_ready_lines(server, 2)
        _only_serves(stream, "v2")
    _no_failures(stream)
    assert "Worker failed to boot" not in server.log


@pytest.mark.parametrize("backend", RELOAD_BACKENDS)
def test_a_new_worker_that_is_not_ready_changes_nothing(start: Start, backend: str) -> None:
    server = start(backend)
    with load(server.host, server.port) as stream:
        stream.wait_served("v1", 0.0, 30)
        write_app(_site(server), "v2", init_fails=True)
        _hup(server)
        log = server.wait_for_log("Reload failed, generation 1 keeps serving", deadline=60)
        assert re.search(
            r"Reload failed, generation 1 keeps serving: a new worker \(pid \d+\) was not "
            r"ready: worker_init hook 'connect' failed: RuntimeError: cannot reach the "
            r"database \(.*app\.py, line \d+\)",
            log,
        ), log
        _only_serves(stream, "v1")
        write_app(_site(server), "v3")
        stream.wait_served("v3", _hup(server), 30)
        _wait_ready_lines(server, 3)  # 2 was the failed attempt's
        _only_serves(stream, "v3")
    _no_failures(stream)
    _settled(server)
    assert "Worker failed to boot" not in server.log


@pytest.mark.parametrize("backend", RELOAD_BACKENDS)
def test_touching_the_reload_file_reloads(start: Start, backend: str) -> None:
    server = start(backend, "--reload-file", "deploy/reloaded")
    (_site(server) / "deploy").mkdir()
    assert server.request("GET", "/")[2] == b"v1"
    write_app(_site(server), "v2")
    began = time.monotonic()
    (_site(server) / "deploy" / "reloaded").touch()  # created: counts as touched
    with load(server.host, server.port) as stream:
        stream.wait_served("v2", began, 30)
        _wait_ready_lines(server, 2)
        write_app(_site(server), "v3")
        began = time.monotonic()
        (_site(server) / "deploy" / "reloaded").touch()
        stream.wait_served("v3", began, 30)
    _no_failures(stream)


@pytest.mark.parametrize("backend", RELOAD_BACKENDS)
def test_a_killed_worker_is_replaced_with_the_newest_code(start: Start, backend: str) -> None:
    server = start(backend)
    write_app(_site(server), "v2")
    _hup(server)
    new = _wait_ready_lines(server, 2)
    end = time.monotonic() + 30
    while _workers(server) != set(new):  # the old ones finish and exit
        assert time.monotonic() < end, (_workers(server), new, server.log)
        time.sleep(0.1)
    write_app(_site(server), "v3-on-disk-but-not-deployed")
    signal_target = new[0]
    subprocess.run(["kill", "-KILL", str(signal_target)], check=True, timeout=10)
    while len(_workers(server) - set(new)) < 1:
        assert time.monotonic() < end, (_workers(server), server.log)
        time.sleep(0.1)
    bodies = {server.request("GET", "/")[2] for _ in range(40)}
    assert bodies == {b"v2"}  # the replacement runs generation 2, as loaded
    assert signal_target not in _workers(server)
