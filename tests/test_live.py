"""Live tests: the real ``flask serve`` on a real socket, per backend.

Tests of the command (its messages, exit statuses and signals) start it with
``flask_serve``; tests of how the app is served use ``prod_server``,
the same serve path in a fork of this process."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_prodserve.testing import ProdServer

from .helpers import ALL_BACKENDS, PROD_BACKENDS, http_request, serve_args


@pytest.fixture
def app() -> Flask:
    """The echo app, for the ``prod_server`` fixture (this package's pytest plugin)."""
    from .live_apps.echo_app import app

    return app


def fetch(server: ProdServer, path: str, **kw: Any) -> tuple[int, dict[str, str], bytes]:
    return http_request(server.host, server.port, "GET", path, **kw)


def get_json(server: ProdServer, path: str) -> dict[str, Any]:
    status, _, body = fetch(server, path)
    assert status == 200, (status, body)
    data: dict[str, Any] = json.loads(body)
    return data


@pytest.mark.parametrize("backend", PROD_BACKENDS)
def test_prod_server_answers_and_identifies_itself(flask_serve: Any, backend: str) -> None:
    server = flask_serve(serve_args(backend))
    environ = server.get_json("/")
    assert environ["SERVER_SOFTWARE"].startswith(backend)
    assert environ["SCRIPT_NAME"] == ""
    assert environ["PATH_INFO"] == "/"
    assert "Serving Flask app 'tests.live_apps.echo_app' in production mode" in server.log
    assert f"Server: {backend}" in server.log


def test_dev_server_answers(flask_serve: Any) -> None:
    server = flask_serve(serve_args("werkzeug"))
    environ = server.get_json("/")
    assert environ["SERVER_SOFTWARE"].startswith("Werkzeug")
    assert "development mode" in server.log


@pytest.mark.prod_server("gunicorn", "waitress", "dev", url_prefix="app/")
def test_prefix_mount_is_identical_on_every_server(prod_server: ProdServer) -> None:
    assert prod_server.url.endswith(f":{prod_server.port}/app")
    assert f"{prod_server.url}/" in prod_server.read_log()  # the banner's URL carries the prefix
    environ = get_json(prod_server, "/app/echo/x?q=1")
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/app", "/echo/x")
    assert environ["QUERY_STRING"] == "q=1"
    assert environ["url_for_index"] == "/app/"
    assert environ["url_for_static"] == "/app/static/x.css"
    for outside in ("/", "/appx", "/appx/echo/x", "/other"):
        status, _, body = fetch(prod_server, outside)
        assert status == 404, (outside, body)
        assert b"served under /app/" in body
    status, headers, _ = fetch(prod_server, "/app")
    assert status in (301, 308)
    assert headers["location"].endswith("/app/")
    status, headers, _ = fetch(prod_server, "/app/redirect")
    assert status == 302
    assert headers["location"] == "/app/"
    status, headers, _ = fetch(prod_server, "/app/login")
    assert status == 200
    assert "Path=/app" in headers["set-cookie"]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_sigterm_stops_cleanly(flask_serve: Any, backend: str) -> None:
    server = flask_serve(serve_args(backend))
    server.get_json("/")
    assert server.terminate(signal.SIGTERM) == 0
    assert "Traceback" not in server.log
    assert "Stopped." in server.log


@pytest.mark.parametrize("backend", PROD_BACKENDS)
def test_ctrl_c_stops_cleanly(flask_serve: Any, backend: str) -> None:
    server = flask_serve(serve_args(backend))
    server.get_json("/")
    assert server.terminate(signal.SIGINT) == 0
    assert "Traceback" not in server.log


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_port_in_use_is_one_line(flask_serve: Any, backend: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = serve_args(backend)
        args[args.index("0")] = str(port)
        server = flask_serve(args, wait=False)
        assert server.proc.wait(30) == 1
    assert server.log.strip().splitlines() == [
        f"Error: Port {port} on 127.0.0.1 is already in use by another program "
        "(port from --port). Stop that program, or choose another port with --port."
    ]


@pytest.mark.prod_server("waitress", url_prefix="/app")
def test_access_log_line(prod_server: ProdServer) -> None:
    fetch(prod_server, "/app/echo/a?b=1", headers={"User-Agent": "probe/1"})
    log = prod_server.wait_for_log("probe/1")
    line = next(x for x in log.splitlines() if "probe/1" in x)
    assert line.startswith("127.0.0.1 - - [")
    assert '"GET /app/echo/a?b=1 HTTP/1.1" 200 ' in line


@pytest.mark.prod_server("gunicorn", workers=2)
def test_gunicorn_uses_several_workers(prod_server: ProdServer) -> None:
    pids = {get_json(prod_server, "/")["pid"] for _ in range(40)}
    assert prod_server.pid not in pids  # requests are served by forked workers
    assert os.getpid() not in pids
    assert "Workers: 2 processes" in prod_server.read_log()


def test_no_app_found_is_one_line(flask_serve: Any) -> None:
    server = flask_serve(["--app", "no_such_module_xyz", "serve"], wait=False)
    assert server.proc.wait(30) == 1
    (line,) = server.log.strip().splitlines()
    # The modules in the folder it ran in (the repository) are listed.
    assert line.startswith("Error: Could not import 'no_such_module_xyz'. Python files here: ")
    assert "example_app/, " in line


def test_bad_env_value_names_the_variable(flask_serve: Any) -> None:
    server = flask_serve(serve_args("waitress"), env={"FLASK_SERVE_THREADS": "many"}, wait=False)
    assert server.proc.wait(30) == 1
    assert server.log.strip().splitlines() == [
        "Error: FLASK_SERVE_THREADS: expected a whole number from 1 to 1024, like 16 (got 'many')."
    ]


@pytest.mark.parametrize("backend", PROD_BACKENDS)
def test_example_app_under_a_prefix(flask_serve: Any, backend: str, tmp_path: Path) -> None:
    factory = f"example_app:create_app({{'DATABASE': {str(tmp_path / 'db.sqlite')!r}}})"
    args = ["--app", factory, "serve", "--prod", "--server", backend]
    server = flask_serve([*args, "--port", "0", "--url-prefix", "/demo"])
    status, _, body = server.request("GET", "/demo/")
    assert status == 200, server.log
    assert b"/demo/static/style.css" in body
    status, _, css = server.request("GET", "/demo/static/style.css")
    assert status == 200
    assert css
