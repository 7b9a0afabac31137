"""Live safety tests per backend: forwarded headers, errors, Host checking."""

from __future__ import annotations

import http.client
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import PROD_BACKENDS
from .test_live import ALL_BACKENDS, serve_args

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
UNDERSCORED = {"X_Forwarded_For": "7.7.7.7", "X_Forwarded_Proto": "https"}


def seen_by_app(server: Any, headers: dict[str, str]) -> dict[str, Any]:
    environ = server.get_json("/", headers=headers)
    return {
        "remote_addr": environ["REMOTE_ADDR"],
        "scheme": environ["wsgi.url_scheme"],
        "host": environ["HTTP_HOST"].split(":")[0],
        "script_name": environ["SCRIPT_NAME"],
        "url_for_index": environ["url_for_index"],
        "forwarded": sorted(k for k in environ if "FORWARD" in k),
    }


def location(server: Any, headers: dict[str, str]) -> str:
    status, response_headers, _ = server.request("GET", "/redirect?external=1", headers=headers)
    assert status == 302
    return response_headers["location"]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("headers", [SPOOFED, UNDERSCORED], ids=["hyphen", "underscore"])
def test_forwarded_headers_from_a_client_change_nothing(
    flask_serve_process: Any, backend: str, headers: dict[str, str]
) -> None:
    server = flask_serve_process(serve_args(backend))
    assert seen_by_app(server, headers) == {
        "remote_addr": "127.0.0.1",
        "scheme": "http",
        "host": "127.0.0.1",
        "script_name": "",
        "url_for_index": "/",
        "forwarded": [],
    }
    assert location(server, headers) == f"http://127.0.0.1:{server.port}/"


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_ignored_headers_log_one_hint(flask_serve_process: Any, backend: str) -> None:
    # One gunicorn worker: the hint is logged once per process.
    extra = ["--workers", "1"] if backend == "gunicorn" else []
    server = flask_serve_process(serve_args(backend, *extra))
    for _ in range(3):
        server.get_json("/", headers={"X-Forwarded-For": "6.6.6.6"})
    assert server.log.count("ignored X-Forwarded-For from 127.0.0.1") == 1
    assert "serve with --proxy 1" in server.log


class _Relay(http.server.BaseHTTPRequestHandler):
    """A forwarding hop like nginx: appends the client to X-Forwarded-For and
    sets the scheme, host, port and prefix it serves the app under."""

    upstream: tuple[str, int]

    def do_GET(self) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        before = self.headers.get("X-Forwarded-For")
        client = self.client_address[0]
        headers["X-Forwarded-For"] = f"{before}, {client}" if before else client
        headers.update(
            {
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "shop.example",
                "X-Forwarded-Port": "443",
                "X-Forwarded-Prefix": "/shop",
            }
        )
        conn = http.client.HTTPConnection(*self.upstream, timeout=10)
        try:
            conn.request("GET", self.path, headers=headers)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def relay_to() -> Iterator[Any]:
    """``relay_to(server)`` -> the port of a forwarding hop in front of ``server``."""
    relays: list[http.server.ThreadingHTTPServer] = []

    def start(server: Any) -> int:
        handler = type("Relay", (_Relay,), {"upstream": (server.host, server.port)})
        relay = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=relay.serve_forever, daemon=True).start()
        relays.append(relay)
        return relay.server_address[1]

    yield start
    for relay in relays:
        relay.shutdown()
        relay.server_close()


def get_from(address: str, port: int, path: str, headers: dict[str, str]) -> Any:
    # Loopback is a whole /8: a client on 127.0.0.2 is told apart from the relay on 127.0.0.1.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(address, 0))
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_a_trusted_hop_is_honoured_and_rightmost_wins(
    flask_serve_process: Any, relay_to: Any, backend: str
) -> None:
    server = flask_serve_process(serve_args(backend, "--proxy", "1,127.0.0.1"))
    relay_port = relay_to(server)
    status, _, body = get_from("127.0.0.2", relay_port, "/", {"X-Forwarded-For": "6.6.6.6"})
    environ = json.loads(body)
    assert status == 200
    assert environ["REMOTE_ADDR"] == "127.0.0.2"  # not the client-supplied 6.6.6.6
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["HTTP_HOST"] == "shop.example:443"
    assert environ["SCRIPT_NAME"] == "/shop"
    assert environ["url_for_index"] == "/shop/"
    status, headers, _ = get_from("127.0.0.2", relay_port, "/redirect?external=1", {})
    assert (status, headers["Location"]) == (302, "https://shop.example/shop/")
    if backend != "werkzeug":  # the dev server logs requests in its own format
        server.wait_for_log("127.0.0.2 - - [")  # the access log shows the real client


@pytest.mark.parametrize("backend", PROD_BACKENDS)
def test_a_client_bypassing_the_trusted_hop_is_not_trusted(
    flask_serve_process: Any, backend: str
) -> None:
    server = flask_serve_process(serve_args(backend, "--proxy", "1,127.0.0.1"))
    status, _, body = get_from("127.0.0.2", server.port, "/", SPOOFED)
    environ = json.loads(body)
    assert status == 200
    assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == ("127.0.0.2", "http")
    assert (environ["SCRIPT_NAME"], environ["HTTP_HOST"]) == ("", f"127.0.0.1:{server.port}")


@pytest.mark.parametrize("backend", PROD_BACKENDS)
@pytest.mark.parametrize("propagate", ["", "1"], ids=["handled", "propagated"])
def test_a_failing_view_leaks_nothing(
    flask_serve_process: Any, backend: str, propagate: str
) -> None:
    server = flask_serve_process(serve_args(backend), env={"ECHO_APP_PROPAGATE": propagate})
    status, _, body = server.request("GET", "/boom")
    assert status == 500
    for secret in (
        b"secret-detail-in-exception",
        b"Traceback",
        b"RuntimeError",
        b"config-value-marker",
    ):
        assert secret not in body
    assert server.request("GET", "/")[0] == 200  # and keeps serving


@pytest.mark.parametrize("backend", PROD_BACKENDS)
def test_trusted_hosts_refuses_other_hosts(flask_serve_process: Any, backend: str) -> None:
    server = flask_serve_process(serve_args(backend), env={"ECHO_APP_TRUSTED_HOSTS": "app.example"})
    assert server.request("GET", "/", headers={"Host": "evil.example"})[0] == 400
    assert server.request("GET", "/", headers={"Host": "app.example"})[0] == 200
