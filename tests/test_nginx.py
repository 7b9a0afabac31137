"""The file ``flask serve --emit nginx`` prints, in a real nginx in front of two
real ``flask serve --prod`` instances (gunicorn in some tests, waitress in others)."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import PROD_BACKENDS
from .nginx_harness import (
    Nginx,
    emit_nginx,
    instance_args,
    rolling_restart,
    streaming,
    upstream_flags,
    wait_routed,
)

STATIC = Path(__file__).resolve().parent / "live_apps" / "static" / "x.css"
OTHER_CLIENT = "127.0.0.2"  # a loopback address that is not nginx's


@pytest.fixture
def nginx_for(tmp_path: Path) -> Iterator[Any]:
    """A factory: ``nginx_for(site_text, tls=False)`` -> a started :class:`Nginx`."""
    started: list[Nginx] = []

    def start(site_text: str, tls: bool = False) -> Nginx:
        nginx = Nginx(site_text, tmp_path / f"nginx-{len(started)}", tls=tls)
        started.append(nginx)
        return nginx.start()

    yield start
    for nginx in started:
        nginx.stop()


def two_instances(flask_serve_process: Any, backend: str, *extra: str) -> list[Any]:
    return [flask_serve_process(instance_args(backend, 0, *extra)) for _ in range(2)]


PREFIX_STYLES = [
    pytest.param("gunicorn", ["--url-prefix", "/app"], [], id="app-mounts-prefix-gunicorn"),
    pytest.param(
        "waitress", [], ["--nginx-strip-prefix", "/app"], id="nginx-strips-prefix-waitress"
    ),
]


@pytest.mark.parametrize(("backend", "serve_extra", "emit_extra"), PREFIX_STYLES)
def test_prefix_through_nginx(
    flask_serve_process: Any,
    nginx_for: Any,
    backend: str,
    serve_extra: list[str],
    emit_extra: list[str],
) -> None:
    servers = two_instances(flask_serve_process, backend, *serve_extra)
    flags = [*upstream_flags(servers), "--proxy", "1,127.0.0.1", "--health-path", "/healthz"]
    nginx = nginx_for(emit_nginx(*flags, *serve_extra, *emit_extra))

    # A client's own X-Forwarded-Prefix is replaced (strip) or dropped (mount).
    status, _, body = nginx.request("/app/echo/x", {"X-Forwarded-Prefix": "/evil"})
    assert status == 200, nginx.error_log
    environ = json.loads(body)
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/app", "/echo/x")
    assert environ["url_for_index"] == "/app/"
    assert environ["url_for_static"] == "/app/static/x.css"
    assert environ["SERVER_SOFTWARE"].startswith(backend)

    status, headers, _ = nginx.request("/app/redirect")
    assert (status, headers["location"]) == (302, "/app/")
    status, headers, _ = nginx.request("/app")
    assert status in (301, 308)
    assert headers["location"].endswith("/app/")
    status, headers, _ = nginx.request("/app/login")
    assert status == 200
    assert re.search(r"Path=/app/?(;|$)", headers["set-cookie"]), headers["set-cookie"]

    # Static files come from disk: the instances never see the request.
    status, headers, body = nginx.request("/app/static/x.css")
    assert (status, body) == (200, STATIC.read_bytes())
    assert "x-upstream" not in headers or not headers["x-upstream"]
    # The instances log what they serve (in batches: wait for the line).
    deadline = time.monotonic() + 10
    while "GET /app/echo/x " not in (logs := "".join(s.log for s in servers)):
        assert time.monotonic() < deadline, logs
        time.sleep(0.05)
    assert "static/x.css" not in logs

    status, _, body = nginx.request("/healthz")
    assert (status, body) == (200, b"ok\n")
    status, _, _ = nginx.request("/elsewhere")
    assert status == 404


@pytest.mark.parametrize("backend", PROD_BACKENDS)
def test_client_address_and_scheme_reach_the_app(
    flask_serve_process: Any, nginx_for: Any, backend: str
) -> None:
    servers = two_instances(flask_serve_process, backend, "--url-prefix", "/app")
    site = emit_nginx(*upstream_flags(servers), "--proxy", "1,127.0.0.1", "--url-prefix", "/app")
    nginx = nginx_for(site, tls=True)

    environ = json.loads(nginx.request("/app/", source=OTHER_CLIENT, https=True)[2])
    assert environ["REMOTE_ADDR"] == OTHER_CLIENT
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["HTTP_HOST"] == f"127.0.0.1:{nginx.tls_port}"
    assert environ["SERVER_PORT"] == str(nginx.tls_port)
    assert environ["SCRIPT_NAME"] == "/app"

    # The same headers from the client do not count: nginx replaces or appends.
    spoofed = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Port": "1",
        "Forwarded": "for=203.0.113.9;proto=https",
    }
    environ = json.loads(nginx.request("/app/", spoofed, source=OTHER_CLIENT)[2])
    assert environ["REMOTE_ADDR"] == OTHER_CLIENT
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["HTTP_HOST"] == f"127.0.0.1:{nginx.port}"
    assert "HTTP_FORWARDED" not in environ

    # Straight to an instance, from a peer that is not the trusted proxy: ignored.
    direct = http.client.HTTPConnection(
        "127.0.0.1", servers[0].port, timeout=10, source_address=(OTHER_CLIENT, 0)
    )
    with contextlib.closing(direct):
        direct.request("GET", "/app/", headers=spoofed)
        environ = json.loads(direct.getresponse().read())
    assert environ["REMOTE_ADDR"] == OTHER_CLIENT
    assert environ["wsgi.url_scheme"] == "http"
    assert not [k for k in environ if k.startswith("HTTP_X_FORWARDED")]


def test_killed_instance_loses_no_request(flask_serve_process: Any, nginx_for: Any) -> None:
    servers = two_instances(flask_serve_process, "waitress")
    nginx = nginx_for(emit_nginx(*upstream_flags(servers), "--proxy", "1,127.0.0.1"))
    wait_routed(nginx, "/", servers[0].port)
    wait_routed(nginx, "/", servers[1].port)
    with streaming(nginx, "/") as stream:
        time.sleep(1)
        killed_at = time.monotonic()
        servers[0].kill()  # SIGKILL: requests in flight on it are cut
        time.sleep(2)
    after = stream.stats(since=killed_at)
    assert stream.stats().failed == 0, stream.stats().failures
    assert after.sent > 10  # the stream ran on after the kill
    upstreams = {s.detail for s in stream.samples if s.started > killed_at + 0.5}
    assert upstreams == {f"200 from 127.0.0.1:{servers[1].port}"}


@pytest.mark.parametrize("backend", ["gunicorn", "waitress"])
def test_rolling_restart_loses_no_request(
    flask_serve_process: Any, nginx_for: Any, backend: str
) -> None:
    servers = two_instances(flask_serve_process, backend)
    nginx = nginx_for(emit_nginx(*upstream_flags(servers), "--proxy", "1,127.0.0.1"))
    with streaming(nginx, "/") as stream:
        time.sleep(0.5)
        restart_started = time.monotonic()
        renewed = rolling_restart(flask_serve_process, servers, backend, nginx, "/")
        restart_ended = time.monotonic()
        time.sleep(0.5)
    during = stream.stats(restart_started, restart_ended)
    assert stream.stats().failed == 0, stream.stats().failures
    assert during.sent > 20  # and throughout the restart
    assert {s.port for s in renewed} == {s.port for s in servers}
    for old in servers:
        assert old.proc.returncode == 0
        assert "Stopped." in old.log  # by SIGTERM, gracefully
