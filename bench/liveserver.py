"""A real ``python -m flask --app ... serve`` in a subprocess, for the live tests
and the benchmarks: started on port 0, the URL read from its banner, its log in
a file, stopped by PID (its whole process group).
"""

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the repository
_URL = re.compile(r"Running on (http://[^\s]+?)(/[^\s]*)?$", re.M)


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

    def __init__(
        self,
        args: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        *,
        launcher: Sequence[str] = (),
        pass_fds: Sequence[int] = (),
    ) -> None:
        """``launcher`` is a command that execs ``python -m flask ...`` (given as
        its trailing arguments), such as ``systemd-socket-activate``; ``pass_fds``
        stay open in it."""
        self.args = args
        self.launcher = list(launcher)
        self.pass_fds = tuple(pass_fds)
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
        cmd = [*self.launcher, sys.executable, "-m", "flask", *self.args]
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
                pass_fds=self.pass_fds,
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
