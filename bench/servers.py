"""A contender's server as a subprocess: its own session (process group), an
ephemeral port on 127.0.0.1, its log in ``bench/results/logs/``, stopped by PID."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from bench.contenders import BENCH_DIR, HOST, REPO_ROOT, BenchError, Contender
from bench.cpu import established_inodes, group_pids

RESULTS_DIR = BENCH_DIR / "results"

LOG_DIR = RESULTS_DIR / "logs"

READY_DEADLINE = 30.0  # seconds for a server to answer GET <prefix>/ with 200

STOP_TIMEOUT = 15.0  # seconds between SIGTERM and SIGKILL

# Environment variables that would silently tune a server. They are removed so
# every contender runs with its real defaults, exactly as typed.
SCRUB_ENV_PREFIXES = ("FLASK_SERVE_", "PRODSERVE_", "FLASK_RUN_", "GUNICORN_")

SCRUB_ENV_NAMES = ("FLASK_APP", "FLASK_DEBUG", "WEB_CONCURRENCY", "PORT")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def server_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SCRUB_ENV_NAMES and not k.startswith(SCRUB_ENV_PREFIXES)
    }
    env["PYTHONUNBUFFERED"] = "1"  # so a crash log is complete
    return env


def http_get(port: int, path: str, timeout: float) -> tuple[int, bytes, str]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, body, resp.getheader("Content-Type", "")
    finally:
        conn.close()


def tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


class Server:
    """One server subprocess in its own session (process group)."""

    def __init__(self, contender: Contender, python: str, log_name: str) -> None:
        self.contender = contender
        self.port = free_port()
        self.argv = contender.argv(python, self.port)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{log_name}.log"
        self._log: TextIO | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.paired = False  # measured in turn with another: lines name the contender

    @property
    def pgid(self) -> int | None:
        # start_new_session: the group id is the leader's pid.
        return self.proc.pid if self.proc is not None else None

    def connections_per_process(self) -> list[int] | None:
        """Established client connections held by each worker, largest first."""
        if self.pgid is None:
            return None
        inodes = established_inodes(self.port)
        pids = group_pids(self.pgid)
        if len(pids) > 1:  # a master and its workers: count the workers
            pids = [p for p in pids if p != self.pgid]
        counts = []
        for pid in pids:
            n = 0
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        link = os.readlink(fd)
                        if link.startswith("socket:[") and link[8:-1] in inodes:
                            n += 1
            counts.append(n)
        return sorted(counts, reverse=True) or None

    def start(self) -> None:
        self._log = self.log_path.open("w")
        self._log.write("$ " + " ".join(self.argv) + "\n")
        self._log.flush()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=REPO_ROOT,
            env=server_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, path: str, deadline_s: float = READY_DEADLINE) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + deadline_s
        last = "no answer"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise BenchError(
                    f"exited with code {code} before it was ready; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            try:
                with socket.create_connection((HOST, self.port), timeout=1.0):
                    pass
                status, _, _ = http_get(self.port, path, timeout=5.0)
                if status == 200:
                    return
                last = f"GET {path} -> {status}"
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
        raise BenchError(f"not ready after {deadline_s:.0f} s ({last}); log {self.log_path}")

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the group id is the leader's pid
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)
        # Whatever is left in the group (orphaned workers) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            print(f"  warning: processes of group {pgid} still alive", flush=True)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def running(contender: Contender, python: str, log_name: str | None = None) -> Iterator[Server]:
    server = Server(contender, python, log_name or contender.name)
    try:
        server.start()
        server.wait_ready(contender.url_path("/"))
        yield server
    finally:
        server.stop()
