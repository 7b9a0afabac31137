"""What several test modules use: the backends to run, the command lines that
start the echo app, ``flask`` run to completion, and the headers a client
forges. Test modules import these from here, not from each other."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from bench.liveserver import ROOT, LiveServer, http_request
from bench.nginx_harness import find_nginx

__all__ = [
    "ALL_BACKENDS",
    "ECHO",
    "PROD_BACKENDS",
    "ROOT",
    "SPOOFED",
    "LiveServer",
    "children",
    "http_request",
    "needs_gunicorn",
    "needs_nginx",
    "run_flask",
    "serve_args",
]

needs_gunicorn = pytest.mark.skipif(
    find_spec("gunicorn") is None,
    reason="gunicorn is not installed (pip install gunicorn; it does not run on Windows)",
)
# In CI a missing nginx stays an error (scripts/test.sh installs it): the tests must run there.
needs_nginx = pytest.mark.skipif(
    find_nginx() is None and not os.environ.get("CI"),
    reason="nginx is not installed: 'bash scripts/test.sh' installs it",
)

PROD_BACKENDS = [pytest.param("gunicorn", marks=needs_gunicorn), "waitress"]
ALL_BACKENDS = [*PROD_BACKENDS, "werkzeug"]
ECHO = ["--app", "tests.live_apps.echo_app"]

#: Forwarded headers a client sends to pass for someone else.
SPOOFED = {
    "X-Forwarded-For": "6.6.6.6",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Port": "444",
    "X-Forwarded-Prefix": "/evil",
    "X-Forwarded-Ssl": "on",
    "X-Forwarded-Protocol": "ssl",
    "Forwarded": "for=6.6.6.6;proto=https;host=evil.example",
}


def serve_args(backend: str, *extra: str) -> list[str]:
    """``flask`` arguments that serve the echo app with ``backend`` on a free port."""
    mode = ["--dev", "--no-reload"] if backend == "werkzeug" else ["--prod", "--server", backend]
    return [*ECHO, "serve", *mode, "--port", "0", *extra]


def children(server: LiveServer) -> set[int]:
    """The process IDs of the server's child processes (its workers)."""
    assert server.proc is not None
    found = subprocess.run(
        ["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True, timeout=10
    )
    return {int(pid) for pid in found.stdout.split()}


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
