"""Shared fixtures: a live ``flask serve`` process per backend."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROD_BACKENDS = ["gunicorn", "waitress"]
_URL = re.compile(r"Running on (http://[^\s]+?)(/[^\s]*)?$", re.M)


def run_flask(
    cwd: Path, *args: str, env: dict[str, str] | None = None, code: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m flask *args`` (or ``python -c code *args``) to completion,
    free of the developer's Flask and flask-prodserve settings and of the
    example app's secret (the start-up checks must see the app as shipped)."""
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLASK_", "PRODSERVE")) and k != "EXAMPLE_APP_SECRET_KEY"
    }
    full_env.update(env or {})
    head = ["-c", code, *args] if code else ["-m", "flask", *args]
    return subprocess.run(
        [sys.executable, *head],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def http_request(
    host: str,
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10,
) -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection: status, headers (lower-case names), body."""
    conn = http.client.HTTPConnection(host.strip("[]"), port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


class LiveServer:
    """A real ``python -m flask --app ... serve`` in a subprocess.

    Listens on port 0 (the OS picks a free one); the URL is read from the
    banner. The log goes to a file that is shown when a test fails.
    """

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log_path = log
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.env.pop("FLASK_DEBUG", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.cwd = ROOT
        self.host = ""
        self.port = 0

    def start_in(self, cwd: Path) -> LiveServer:
        """Start in a project directory other than the repository."""
        self.cwd = cwd
        return self.start()

    def start(self, wait: bool = True, deadline: float = 30) -> LiveServer:
        cmd = [sys.executable, "-m", "flask", *self.args]
        with open(self.log_path, "wb") as log:
            # Own process group: gunicorn workers are cleaned up with their master.
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
            )
        if wait:
            self.wait_ready(deadline)
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, deadline: float = 10) -> str:
        """The log, once ``text`` is in it (access lines are written in batches)."""
        end = time.monotonic() + deadline
        while text not in (log := self.log):
            assert time.monotonic() < end, f"{text!r} not logged within {deadline}s:\n{log}"
            time.sleep(0.05)
        return log

    def assert_never_reached(self, path: str) -> None:
        """``path`` never reached the app: a later request is logged, ``path`` is not."""
        marker = f"/echo/after-{time.monotonic_ns()}"
        assert self.request("GET", marker)[0] == 200
        assert path not in self.wait_for_log(marker)

    def wait_ready(self, deadline: float = 30) -> None:
        end = time.monotonic() + deadline
        assert self.proc is not None
        while time.monotonic() < end:
            match = _URL.search(self.log)
            if match:
                hostport = match.group(1).removeprefix("http://")
                self.host, _, port = hostport.rpartition(":")
                self.port = int(port)
                if self._answers():
                    return
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log}")
            time.sleep(0.05)
        raise AssertionError(f"server not ready within {deadline}s:\n{self.log}")

    def _answers(self) -> bool:
        try:
            self.request("GET", "/__readiness_probe__", timeout=2)
        except OSError:
            return False
        return True

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        timeout: float = 10,
    ) -> tuple[int, dict[str, str], bytes]:
        return http_request(self.host, self.port, method, path, headers, body, timeout)

    def get_json(self, path: str, **kw: Any) -> dict[str, Any]:
        status, _, body = self.request("GET", path, **kw)
        assert status == 200, (status, body, self.log)
        data: dict[str, Any] = json.loads(body)
        return data

    def terminate(self, sig: int = signal.SIGTERM, deadline: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(deadline)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group led by our PID
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    """Undo what a test's Flask CLI wrote to os.environ (``--debug`` sets
    FLASK_DEBUG), so no test sees another's; monkeypatch cannot undo a
    variable that it deleted before it existed."""
    saved = os.environ.copy()
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def flask_serve_process(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A factory: ``flask_serve_process(["--app", "x", "serve", ...])`` -> started LiveServer.

    The real command with its flags, for tests of the CLI itself (exit
    statuses, messages, signals). Tests of how an app is served use this
    package's own ``prod_server`` fixture instead; neither is named
    ``live_server``, which is pytest-flask's."""
    servers: list[LiveServer] = []

    def start(args: list[str], env: dict[str, str] | None = None, wait: bool = True) -> LiveServer:
        server = LiveServer(args, tmp_path / f"server-{len(servers)}.log", env)
        servers.append(server)
        return server.start(wait=wait)

    yield start
    for server in servers:
        server.kill()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for server in servers:
            print(f"--- {server.args}\n{server.log}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, "rep_" + report.when, report)
    return report
