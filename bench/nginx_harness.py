"""nginx as an ordinary process in front of real ``flask serve`` instances.

Used by ``tests/test_nginx.py``, ``tests/test_deployfiles.py`` and
``bench/rolling.py``. nginx runs with ``-p <tmp> -c <tmp>/nginx.conf -g
'daemon off;'``: its pid file, logs and
temporary files live in the temporary directory, it listens on loopback
ephemeral ports only, and it is stopped by PID. The site file is the one
``flask serve --emit nginx`` printed, included from a minimal main config;
only its ``listen`` line is replaced (as a user does for their own ports).

``tests/live_apps/tls/`` holds a self-signed certificate for 127.0.0.1, for tests
only, so that nginx can be reached over https.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .liveserver import ROOT, LiveServer

TLS = ROOT / "tests" / "live_apps" / "tls"
ECHO_APP = "tests.live_apps.echo_app"
LISTEN = "    listen 80;\n"

_MAIN_CONF = """\
{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 1024; }}
http {{
    default_type application/octet-stream;
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    # Which instance answered ("a, b" when nginx had to retry on b).
    add_header X-Upstream $upstream_addr always;
    include {site};
}}
"""


def find_nginx() -> str | None:
    """nginx's path, or ``None`` when it is not installed."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def nginx_binary() -> str:
    """nginx's path; its absence is an error (``scripts/test.sh`` installs it)."""
    found = find_nginx()
    if found is None:
        raise AssertionError(
            "nginx is not installed: run 'bash scripts/test.sh', which installs it"
        )
    return found


@functools.cache
def _startup_log_flags(binary: str) -> tuple[str, ...]:
    """``-e`` (nginx >= 1.19.5) keeps the log of start-up errors out of /var/log."""
    version = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=30).stderr
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", version)
    numbers = tuple(int(n) for n in found.groups()) if found else (0, 0, 0)
    return ("-e", "error.log") if numbers >= (1, 19, 5) else ()


def nginx_command(tmp: Path, main: Path, *extra: str) -> list[str]:
    """nginx with ``tmp`` as its prefix (relative paths resolve there) and ``main`` as config."""
    binary = nginx_binary()
    return [binary, "-p", f"{tmp}/", "-c", str(main), *_startup_log_flags(binary), *extra]


def write_conf(site_text: str, tmp: Path) -> Path:
    """Write ``site_text`` and a main config that includes it; return the main config."""
    tmp.mkdir(parents=True, exist_ok=True)
    site = tmp / "site.conf"
    site.write_text(site_text)
    # As root, nginx workers would otherwise run as "nobody", which cannot read tmp.
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = tmp / "nginx.conf"
    main.write_text(_MAIN_CONF.format(user=user, tmp=tmp, site=site))
    return main


def nginx_test(site_text: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on ``site_text`` wrapped in a minimal main config."""
    cmd = nginx_command(tmp, write_conf(site_text, tmp), "-t")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Nginx:
    """nginx serving ``site_text`` on a loopback port (and an https one with ``tls``)."""

    def __init__(self, site_text: str, tmp: Path, *, tls: bool = False) -> None:
        assert LISTEN in site_text, "the emitted file has no 'listen 80;' line"
        self.site_text = site_text
        self.tmp = tmp
        self.tls = tls
        self.port = self.tls_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, deadline: float = 15) -> Nginx:
        for _ in range(5):  # a free port can be taken between probing and binding
            self.port, self.tls_port = free_port(), free_port()
            if self._try_start(deadline):
                return self
        raise AssertionError(f"nginx did not start:\n{self.error_log}")

    def _listen(self) -> str:
        lines = f"    listen 127.0.0.1:{self.port};\n"
        if self.tls:
            lines += (
                f"    listen 127.0.0.1:{self.tls_port} ssl;\n"
                f"    ssl_certificate {TLS / 'cert.pem'};\n"
                f"    ssl_certificate_key {TLS / 'key.pem'};\n"
            )
        return lines

    def _try_start(self, deadline: float) -> bool:
        main = write_conf(self.site_text.replace(LISTEN, self._listen()), self.tmp)
        cmd = nginx_command(self.tmp, main, "-g", "daemon off;")
        with open(self.tmp / "nginx.out", "wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                if "Address already in use" in self.error_log:
                    return False
                raise AssertionError(f"nginx exited with {self.proc.returncode}:\n{self.error_log}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return True
            time.sleep(0.05)
        raise AssertionError(f"nginx not listening within {deadline}s:\n{self.error_log}")

    @property
    def error_log(self) -> str:
        path = self.tmp / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def request(
        self,
        path: str,
        headers: dict[str, str] | None = None,
        *,
        source: str = "127.0.0.1",
        https: bool = False,
        timeout: float = 10,
    ) -> tuple[int, dict[str, str], bytes]:
        """GET ``path`` from the ``source`` loopback address (127.0.0.2 is another client)."""
        conn: http.client.HTTPConnection
        if https:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # a test certificate: the scheme is the point
            conn = http.client.HTTPSConnection(
                "127.0.0.1",
                self.tls_port,
                timeout=timeout,
                context=context,
                source_address=(source, 0),
            )
        else:
            conn = http.client.HTTPConnection(
                "127.0.0.1", self.port, timeout=timeout, source_address=(source, 0)
            )
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def stop(self) -> None:
        """SIGTERM to nginx's master (by PID), then SIGKILL to its process group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


def emit_nginx(*args: str) -> str:
    """The file ``flask --app <echo app> serve --emit nginx ARGS`` prints."""
    cmd = [sys.executable, "-m", "flask", "--app", ECHO_APP, "serve", "--emit", "nginx", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# ---------------------------------------------------------------- steady stream


@dataclass
class Sample:
    started: float
    latency: float
    ok: bool
    detail: str


@dataclass
class Stats:
    sent: int
    failed: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    failures: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"sent {self.sent}, failed {self.failed}, p50 {self.p50_ms:.1f} ms, "
            f"p99 {self.p99_ms:.1f} ms, max {self.max_ms:.1f} ms"
        )


class Getter(Protocol):
    """Sends a GET on a new connection: :class:`Nginx`, or a server reached directly."""

    def request(self, path: str, *, timeout: float = ...) -> tuple[int, dict[str, str], bytes]: ...


class Stream(threading.Thread):
    """GET ``path`` through nginx (or any :class:`Getter`) every ``interval``
    seconds, each on a new connection, until :meth:`stop`; a request fails
    unless it gets a 200."""

    def __init__(self, nginx: Getter, path: str, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.nginx = nginx
        self.path = path
        self.interval = interval
        self.samples: list[Sample] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            started = time.monotonic()
            try:
                status, headers, _ = self.nginx.request(self.path, timeout=30)
                ok, detail = status == 200, f"{status} from {headers.get('x-upstream')}"
            except OSError as exc:
                ok, detail = False, repr(exc)
            latency = time.monotonic() - started
            self.samples.append(Sample(started, latency, ok, detail))
            self.halt.wait(max(0.0, self.interval - latency))

    def stop(self) -> None:
        self.halt.set()
        self.join(60)
        assert not self.is_alive(), "the request stream did not stop"

    def stats(self, since: float = 0.0, until: float = float("inf")) -> Stats:
        """Figures for the requests started in ``[since, until]`` (monotonic time)."""
        return summarize(self.samples, since, until)


def summarize(samples: list[Sample], since: float = 0.0, until: float = float("inf")) -> Stats:
    """Figures for the samples started in ``[since, until]`` (monotonic time)."""
    window = [s for s in samples if since <= s.started <= until]
    latencies = sorted(s.latency * 1000 for s in window) or [0.0]
    failures = [s.detail for s in window if not s.ok]

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    return Stats(len(window), len(failures), pct(0.5), pct(0.99), latencies[-1], failures)


# -------------------------------------------------------------------- scenarios

Start = Callable[[list[str]], LiveServer]


def instance_args(backend: str, port: int, *extra: str) -> list[str]:
    """``flask serve`` for one instance behind nginx (light on a 2-core machine)."""
    args = ["--app", ECHO_APP, "serve", "--prod", "--server", backend, "--port", str(port)]
    if backend == "gunicorn":
        args += ["--workers", "2", "--threads", "4"]
    return [*args, "--proxy", "1,127.0.0.1", "--health-path", "/healthz", *extra]


def upstream_flags(servers: list[LiveServer]) -> list[str]:
    return [w for s in servers for w in ("--upstream", f"127.0.0.1:{s.port}")]


def wait_routed(nginx: Nginx, path: str, port: int, deadline: float = 30) -> None:
    """Until nginx sends a request to the instance on ``port`` (and it answers):
    nginx tries an instance it saw fail only after the upstream's fail_timeout."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        status, headers, _ = nginx.request(path)
        assert status == 200, (status, headers)
        if headers.get("x-upstream") == f"127.0.0.1:{port}":
            return
        time.sleep(0.05)
    raise AssertionError(f"nginx sent nothing to 127.0.0.1:{port} within {deadline}s")


@contextlib.contextmanager
def streaming(nginx: Nginx, path: str) -> Iterator[Stream]:
    stream = Stream(nginx, path)
    stream.start()
    try:
        yield stream
    finally:
        stream.stop()


def rolling_restart(
    start: Start, servers: list[LiveServer], backend: str, nginx: Nginx, path: str
) -> list[LiveServer]:
    """SIGTERM each instance in turn, start it again on the same port, and wait
    until nginx uses it before the next; return the new instances."""
    renewed = []
    for server in servers:
        assert server.terminate(signal.SIGTERM) == 0, server.log
        new = start(instance_args(backend, server.port))
        wait_routed(nginx, path, new.port)
        renewed.append(new)
    return renewed


def pause(seconds: float) -> None:
    """Let the request stream run (the stream, not the pause, is measured)."""
    time.sleep(seconds)
