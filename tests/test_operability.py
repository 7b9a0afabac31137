"""Live, per production backend: access log, graceful shutdown, health,
lifecycle hooks, worker recycling."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flask_prodserve.backends import GRACE_EXPIRED

from .helpers import PROD_BACKENDS, ROOT, needs_gunicorn, run_flask, serve_args


def in_threads(count: int, func: Any) -> list[Any]:
    results: list[Any] = [None] * count

    def work(i: int) -> None:
        try:
            results[i] = func()
        except Exception as exc:  # recorded and asserted by the caller
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.mark.parametrize("backend", PROD_BACKENDS)
def test_access_log_line(flask_serve: Any, backend: str) -> None:
    server = flask_serve(serve_args(backend, "--url-prefix", "/app"))
    status, _, body = server.request("GET", "/app/echo/a?b=1", headers={"User-Agent": "probe/1"})
    assert status == 200
    server.terminate()
    line = next(x for x in server.log.splitlines() if "probe/1" in x)
    assert line.startswith("127.0.0.1 - - [")
    assert f'"GET /app/echo/a?b=1 HTTP/1.1" 200 {len(body)} "-" "probe/1" ' in line


@pytest.mark.parametrize("backend", PROD_BACKENDS)
def test_json_access_log_to_a_file(flask_serve: Any, backend: str, tmp_path: Path) -> None:
    log = tmp_path / "access.jsonl"
    server = flask_serve(
        serve_args(backend, "--access-log-format", "json", "--access-log-file", str(log))
    )
    server.request("GET", "/nowhere?x=1")
    server.terminate()
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    entry = next(e for e in entries if e["path"] != "/__readiness_probe__")
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/nowhere?x=1", 404)
    assert entry["remote_addr"] == "127.0.0.1"
    assert "/nowhere" not in server.log  # the file, not stdout


@pytest.mark.parametrize("backend", PROD_BACKENDS)
def test_sigterm_lets_requests_in_flight_finish(flask_serve: Any, backend: str) -> None:
    # 2 threads and 5 slow requests: 3 of them wait in a queue when SIGTERM arrives.
    server = flask_serve(
        serve_args(backend, "--threads", "2", "--workers", "1")
        if backend == "gunicorn"
        else serve_args(backend, "--threads", "2")
    )
    started = time.monotonic()
    results: list[Any] = []
    runner = threading.Thread(
        target=lambda: results.extend(
            in_threads(5, lambda: server.request("GET", "/sleep?s=1.5", timeout=30)[0])
        )
    )
    runner.start()
    time.sleep(0.5)  # the requests are on the wire
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(OSError):  # the listener is closed: new connections are refused
        socket.create_connection((server.host, server.port), timeout=2).close()
    runner.join(60)
    assert results == [200] * 5, server.log
    assert server.proc.wait(30) == 0, server.log
    assert time.monotonic() - started < 30  # well within the 30 s grace period
    assert "Traceback" not in server.log


@pytest.mark.parametrize("backend", PROD_BACKENDS)
def test_request_outliving_the_grace_period_is_cut(flask_serve: Any, backend: str) -> None:
    server = flask_serve(serve_args(backend, "--graceful-timeout", "1"))
    results = []
    runner = threading.Thread(
        target=lambda: results.extend(
            in_threads(1, lambda: server.request("GET", "/sleep?s=10", timeout=30))
        )
    )
    runner.start()
    time.sleep(0.5)
    began = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(20) == GRACE_EXPIRED
    assert time.monotonic() - began < 8
    runner.join(30)
    assert isinstance(results[0], Exception)  # the client saw the connection cut
    assert "Stopped after the 1 s grace period: requests still running were cut" in server.log


def hooks_app_args(backend: str, *extra: str) -> list[str]:
    app = ["--app", "tests.live_apps.hooks_app"]
    return [*app, "serve", "--prod", "--server", backend, "--port", "0", *extra]


@pytest.mark.parametrize("backend", PROD_BACKENDS)
def test_health_path_answers_outside_the_app(
    flask_serve: Any, backend: str, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    env = {"HOOKS_RECORD": str(tmp_path / "hooks.txt"), "HOOKS_READY_FILE": str(ready)}
    args = hooks_app_args(backend, "--url-prefix", "/app", "--health-path", "healthz")
    server = flask_serve(args, env=env)
    assert server.request("GET", "/app/")[0] == 500  # the app's own / is broken
    status, _headers, body = server.request("GET", "/healthz")
    assert (status, body) == (200, b"ok\n")
    assert server.request("GET", "/healthz/ready")[0] == 503
    ready.touch()
    assert server.request("GET", "/healthz/ready")[0] == 200
    server.terminate()
    assert "healthz" not in server.log.split("Press CTRL+C to stop")[1]  # never logged
    assert '"GET /app/ HTTP/1.1" 500' in server.log


@pytest.mark.parametrize(
    ("backend", "workers"), [pytest.param("gunicorn", 3, marks=needs_gunicorn), ("waitress", 2)]
)
def test_hooks_run_once_per_worker(
    flask_serve: Any, backend: str, workers: int, tmp_path: Path
) -> None:
    record = tmp_path / "hooks.txt"
    env = {"HOOKS_RECORD": str(record), "HOOKS_READY_FILE": str(tmp_path / "r")}
    server = flask_serve(hooks_app_args(backend, "--workers", str(workers)), env=env)
    deadline = time.monotonic() + 20
    while record.read_text().count("worker_init") < workers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.terminate() == 0
    lines = [line.split() for line in record.read_text().splitlines()]
    by_stage: dict[str, list[int]] = {}
    for stage, pid in lines:
        by_stage.setdefault(stage, []).append(int(pid))
    master = server.proc.pid
    assert by_stage["on_start"] == [master]
    assert by_stage["on_stop"] == [master]
    inits = by_stage["worker_init"]
    assert len(inits) == len(set(inits)) == workers
    assert master not in inits  # after fork, in each worker


@pytest.mark.parametrize("backend", PROD_BACKENDS)
def test_max_requests_recycles_workers(flask_serve: Any, backend: str) -> None:
    server = flask_serve(serve_args(backend, "--workers", "1", "--max-requests", "5"))
    pids: set[int] = set()
    deadline = time.monotonic() + 30
    # Under waitress the replacement starts first, so recycling takes a moment.
    while len(pids) < 3 and time.monotonic() < deadline:
        pids.add(server.get_json("/")["pid"])
    assert len(pids) >= 3, pids


@pytest.mark.parametrize(
    ("backend", "options", "message"),
    [
        pytest.param("gunicorn", '{"worker_connections": 500}', None, marks=needs_gunicorn),
        pytest.param(
            "gunicorn",
            '{"worker_conections": 500}',
            "gunicorn has no option 'worker_conections'; did you mean 'worker_connections'?",
            marks=needs_gunicorn,
        ),
        pytest.param(
            "gunicorn",
            '{"keepalive": 10}',
            "'keepalive' is set by flask-prodserve; use --keepalive instead",
            marks=needs_gunicorn,
        ),
        pytest.param(
            "gunicorn",
            '{"workers": 9}',
            "'workers' is set by flask-prodserve; use --workers instead",
            marks=needs_gunicorn,
        ),
        ("waitress", '{"connection_limit": 50}', None),
        (
            "waitress",
            '{"conection_limit": 50}',
            "waitress has no option 'conection_limit'; did you mean 'connection_limit'?",
        ),
    ],
)
def test_server_options_are_checked_against_the_server(
    flask_serve: Any, backend: str, options: str, message: str | None
) -> None:
    server = flask_serve(serve_args(backend, "--server-options", options), wait=message is None)
    if message is None:
        assert server.get_json("/")["SERVER_SOFTWARE"].startswith(backend)
        return
    assert server.proc.wait(30) == 1
    assert server.log.strip().splitlines() == [f"Error: --server-options: {message}."]


@pytest.mark.parametrize(
    ("stage", "hook"), [("on_start", "started"), ("worker_init", "worker"), ("on_stop", "stopped")]
)
@pytest.mark.parametrize("backend", PROD_BACKENDS)
def test_a_failing_hook_names_itself_last(
    backend: str, stage: str, hook: str, tmp_path: Path
) -> None:
    env = {
        "HOOKS_RECORD": str(tmp_path / "hooks.txt"),
        "HOOKS_READY_FILE": str(tmp_path / "ready"),
        "HOOKS_FAIL": stage,
    }
    args = hooks_app_args(backend, "--workers", "2")
    result = _serve_until_done(args, env, stop=stage == "on_stop")
    output = result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"Error: {stage} hook '{hook}' failed: RuntimeError: the database refused the "
        r"connection \(.*hooks_app\.py, line \d+\)",
        last,
    ), output
    assert result.returncode == 1, output
    assert "grace period" not in output and "Traceback" not in result.stdout


def _serve_until_done(
    args: list[str], env: dict[str, str], *, stop: bool
) -> subprocess.CompletedProcess[str]:
    """Run ``flask serve`` until it exits by itself, or (``stop``) until it
    serves, then SIGTERM; with a deadline either way."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        if stop:
            assert proc.stdout is not None
            for line in proc.stdout:  # the banner, up to its last line
                if "Press CTRL+C to stop" in line:
                    break
            time.sleep(0.5)  # gunicorn's workers booting
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        if stop:
            out = "(banner read)\n" + out
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.mark.parametrize("backend", PROD_BACKENDS)
def test_running_on_only_once_the_server_took_its_settings(backend: str, tmp_path: Path) -> None:
    refused = {"gunicorn": '{"worker_connections": "many"}', "waitress": '{"threads": "many"}'}
    result = run_flask(
        ROOT,
        *serve_args(backend, "--server-options", refused[backend]),
        env={"PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 1, result
    assert "Running on" not in result.stdout, result
    assert result.stderr.strip().splitlines()[-1].startswith("Error: "), result
