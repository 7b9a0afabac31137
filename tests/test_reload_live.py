"""Deploying new code into a running server (SIGHUP, reload_file), under load.

Real ``flask serve`` processes on real sockets, serving an app written to
``tmp_path`` whose answers name the version of its code on disk
(bench/reloadload.py), while a steady stream of clients runs: a new
connection every 10 ms, a kept-alive client, and 0.5 s requests in flight.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.reloadload import Load, load, write_app

from .helpers import PROD_BACKENDS, ROOT, LiveServer

pytestmark = pytest.mark.timeout(240)

Start = Callable[..., LiveServer]
RELOAD_BACKENDS = PROD_BACKENDS
WORKERS = 2


@pytest.fixture
def start(tmp_path: Path, flask_serve: Callable[..., LiveServer]) -> Start:
    """``start(backend, *flags)``: the reload app (version v1) served from
    ``tmp_path / "site"`` (by the ``flask_serve`` fixture)."""
    site = tmp_path / "site"
    site.mkdir()
    write_app(site, "v1")

    def begin(backend: str, *flags: str, env: dict[str, str] | None = None) -> LiveServer:
        args = ["--app", "app", "serve", "--prod", "--server", backend, "--port", "0"]
        args += ["--workers", str(WORKERS), "--threads", "4", "--health-path", "/healthz"]
        return flask_serve([*args, *flags], env=env, cwd=site)

    return begin


def _site(server: LiveServer) -> Path:
    return server.cwd


def _hup(server: LiveServer) -> float:
    assert server.proc is not None
    began = time.monotonic()
    server.proc.send_signal(signal.SIGHUP)
    return began


def _wait_ready_lines(
    server: LiveServer, generation: int | None, deadline: float = 60, after: str = ""
) -> list[int]:
    """The PIDs of the new workers, once every one reported ready, in the log
    past ``after``; ``generation`` None: the first generation ready there."""
    number = r"\d+" if generation is None else str(generation)
    pattern = re.compile(rf"Reloaded: generation ({number}) ready \(pid (\d+)\)")
    end = time.monotonic() + deadline
    while True:
        found = pattern.findall(server.log.partition(after)[2] if after else server.log)
        pids = [int(pid) for gen, pid in found if gen == found[0][0]]
        if len(pids) >= WORKERS:
            return pids
        assert time.monotonic() < end, f"generation {generation} not ready:\n{server.log}"
        time.sleep(0.05)


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
    # The access log names the generation that served each request (its
    # lines are written in batches: wait for them).
    served_by_3 = re.compile(r'"GET / HTTP/1\.1" 200 2 "-" "[^"]*" [\d.]+ 3$', re.M)
    end = time.monotonic() + 10
    while not served_by_3.search(server.log):
        assert time.monotonic() < end, server.log
        time.sleep(0.05)


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
        # The number of the failed attempt is given again or not, by server.
        _wait_ready_lines(server, None, after="Reload failed")
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


def _reload_and_settle(server: LiveServer, version: str) -> set[int]:
    """Deploy ``version`` into an idle server; its workers once only they serve."""
    _settled(server)  # every first worker is up: the reload replaces them all
    write_app(_site(server), version)
    _hup(server)
    _wait_ready_lines(server, 2)
    workers = _settled(server)
    end = time.monotonic() + 30
    while {server.request("GET", "/")[2] for _ in range(20)} != {version.encode()}:
        assert time.monotonic() < end, server.log
        time.sleep(0.1)
    return workers


def _kill_one(server: LiveServer, workers: set[int]) -> None:
    """SIGKILL one worker; return once a new one took its place."""
    killed = min(workers)
    subprocess.run(["kill", "-KILL", str(killed)], check=True, timeout=10)
    end = time.monotonic() + 30
    while killed in (now := _workers(server)) or len(now) != WORKERS:
        assert time.monotonic() < end, (now, server.log)
        time.sleep(0.1)


@pytest.mark.parametrize("backend", RELOAD_BACKENDS)
def test_a_killed_worker_is_replaced_with_the_newest_code(start: Start, backend: str) -> None:
    server = start(backend)
    workers = _reload_and_settle(server, "v2")
    _kill_one(server, workers)
    bodies = {server.request("GET", "/")[2] for _ in range(40)}
    assert bodies == {b"v2"}
    assert "killed by SIGKILL" in server.log or "was sent SIGKILL" in server.log


@pytest.mark.parametrize("backend", RELOAD_BACKENDS)
def test_a_replacement_runs_the_code_that_loaded_not_the_files(start: Start, backend: str) -> None:
    # Workers fork from the parent, which holds the newest generation that
    # loaded; code written to disk since is not served until a reload.
    server = start(backend)
    workers = _reload_and_settle(server, "v2")
    write_app(_site(server), "v3-on-disk-not-deployed")
    _kill_one(server, workers)
    bodies = {server.request("GET", "/")[2] for _ in range(40)}
    assert bodies == {b"v2"}


def test_touching_the_reload_file_reloads_a_server_without_fork(
    start: Start, tmp_path: Path
) -> None:
    # As on Windows: without os.fork, waitress serves in one process, and a
    # reload swaps the app inside it.
    nofork = tmp_path / "nofork"
    nofork.mkdir()
    (nofork / "sitecustomize.py").write_text("import os\n\ndel os.fork\n")
    env = {"PYTHONPATH": os.pathsep.join([str(nofork), str(ROOT)])}
    server = start("waitress", "--workers", "1", "--reload-file", "reload.txt", env=env)
    assert "Workers: 1 process" in server.log and "Generation 1:" not in server.log
    with load(server.host, server.port) as stream:
        stream.wait_served("v1", 0.0, 30)
        write_app(_site(server), "v2")
        began = time.monotonic()
        (_site(server) / "reload.txt").touch()
        stream.wait_served("v2", began, 30)
        _only_serves(stream, "v2")
        write_app(_site(server), "v3", broken=True)
        (_site(server) / "reload.txt").write_text("again")
        server.wait_for_log("Reload failed, generation 2 keeps serving", deadline=30)
        _only_serves(stream, "v2")
    _no_failures(stream)
    assert re.search(r"Reloaded: generation 2 ready \(pid \d+\)", server.log)
