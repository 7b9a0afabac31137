"""waitress refuses the malformed requests that gunicorn 27's parser refuses.

Request lines without a usable version and targets in a form the method
does not allow: each gets a prompt 4xx, the connection is closed, and
nothing reaches the app. The rules are tested as tables at
their seams (the pure helpers, the parser), and every refusal once more
against a real ``flask serve --prod --server waitress``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from waitress.adjustments import Adjustments

from flask_prodserve.backends.waitress_http import Parser
from flask_prodserve.framing import request_line_problem

from .conftest import LiveServer
from .rawhttp import RawClient
from .test_live import serve_args
from .test_wire_waitress import LIMITS, feed

# --------------------------------------------------------------------------- #
# The rules, as tables
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("line", "refused"),
    [
        pytest.param(b"GET /x HTTP/1.1", False, id="origin-form"),
        pytest.param(b"GET /x HTTP/1.0", False, id="http-1.0"),
        pytest.param(b"GET http://h/x HTTP/1.1", False, id="absolute-form"),
        pytest.param(b"OPTIONS * HTTP/1.1", False, id="asterisk-options"),
        pytest.param(b"CONNECT h:443 HTTP/1.1", False, id="authority-connect"),
        pytest.param(b"GET /x", True, id="no-version"),
        pytest.param(b"GET", True, id="method-only"),
        pytest.param(b"GET /x HTTP/0.9", True, id="http-0.9"),
        pytest.param(b"GET /x HTTP/1.2", True, id="http-1.2"),
        pytest.param(b"GET /x HTTP/2.0", True, id="http-2.0"),
        pytest.param(b"GET /x http/1.1", True, id="lower-case-version"),
        pytest.param(b"GET /x HTTP/1.1 ", True, id="trailing-space"),
        pytest.param(b"GET /x HTTP/1.1 x", True, id="four-parts"),
        pytest.param(b"GET  /x HTTP/1.1", True, id="double-space"),
        pytest.param(b"GET * HTTP/1.1", True, id="asterisk-get"),
        pytest.param(b"GET h:443 HTTP/1.1", True, id="authority-get"),
        pytest.param(b"GET x HTTP/1.1", True, id="relative"),
        pytest.param(b"GET /\xe9 HTTP/1.1", True, id="non-ascii-target"),
        pytest.param(b"GET /\x7f HTTP/1.1", True, id="control-in-target"),
    ],
)
def test_request_line_problem(line: bytes, refused: bool) -> None:
    assert (request_line_problem(line) is not None) is refused


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(b"GET /x\r\nHost: x\r\n\r\n", 400, id="no-version"),
        pytest.param(b"GET /x HTTP/2.0\r\nHost: x\r\n\r\n", 400, id="http-2.0"),
        pytest.param(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="asterisk-get"),
        pytest.param(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", None, id="asterisk-options"),
    ],
)
def test_parser(data: bytes, status: int | None) -> None:
    adj = Adjustments(max_request_body_size=1024, max_request_header_size=257)
    parser = Parser(adj)
    consumed = feed(parser, data)
    assert consumed == len(data)  # nothing after a refused request is parsed
    if status is None:
        assert parser.error is None
    else:
        assert parser.completed
        assert parser.error is not None
        assert parser.error.code == status


# --------------------------------------------------------------------------- #
# Live: a prompt 4xx, the connection closed, nothing reaches the app
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One waitress server with small limits (the default --timeout of 30 s
    shows any wait for bytes that will never come)."""
    log = tmp_path_factory.mktemp("refusals") / "server.log"
    server = LiveServer(serve_args("waitress", *LIMITS), log)
    try:
        yield server.start()
    finally:
        server.kill()


def line(text: bytes) -> bytes:
    return text + b"\r\nHost: x\r\n\r\n"


# The request, its status, and what the access log would show had it reached the app.
REFUSED = [
    pytest.param(line(b"GET /echo/r01"), 400, "/echo/r01", id="no-version"),
    pytest.param(b"GET /echo/r02\r\n\r\n", 400, "/echo/r02", id="http-0.9"),
    pytest.param(line(b"GET /echo/r03 HTTP/0.9"), 400, "/echo/r03", id="version-0.9"),
    pytest.param(line(b"GET /echo/r04 HTTP/1.2"), 400, "/echo/r04", id="version-1.2"),
    pytest.param(line(b"GET /echo/r05 HTTP/2.0"), 400, "/echo/r05", id="version-2.0"),
    pytest.param(line(b"GET /echo/r06 HTTP/1.1 "), 400, "/echo/r06", id="version-then-space"),
    pytest.param(line(b"GET * HTTP/1.1"), 400, '"GET %2A ', id="asterisk-not-options"),
    pytest.param(line(b"GET echo:8017 HTTP/1.1"), 400, '"GET 8017 ', id="authority-not-connect"),
    pytest.param(line(b"GET echo/r07 HTTP/1.1"), 400, "echo/r07", id="neither-origin-nor-absolute"),
    pytest.param(line(b"GET /echo/r08\xe9 HTTP/1.1"), 400, "/echo/r08", id="non-ascii-target"),
]


@pytest.mark.parametrize(("data", "status", "logged"), REFUSED)
def test_malformed_requests_are_refused(
    wire: LiveServer, data: bytes, status: int, logged: str
) -> None:
    with RawClient(wire.host, wire.port, timeout=5) as client:
        started = time.monotonic()
        client.send(data)
        response = client.response()
        assert time.monotonic() - started < 2  # at once, not after --timeout
        assert response.status == status, (response, wire.log)
        assert response.headers["connection"] == "close"
        assert client.wait_closed(5) is not None
        assert client.buffer == b""
    wire.assert_never_reached(logged)


@pytest.mark.parametrize(
    ("data", "path"),
    [
        pytest.param(line(b"OPTIONS * HTTP/1.1"), '"OPTIONS %2A ', id="asterisk-options"),
        pytest.param(line(b"GET http://x/echo/a1 HTTP/1.1"), "/echo/a1", id="absolute-form"),
        pytest.param(line(b"CONNECT x:8443 HTTP/1.1"), '"CONNECT 8443 ', id="authority-connect"),
    ],
)
def test_well_formed_requests_reach_the_app(wire: LiveServer, data: bytes, path: str) -> None:
    # The controls for the table above: these are for the app to answer.
    with RawClient(wire.host, wire.port, timeout=5) as client:
        client.send(data)
        assert client.response().status not in (400, 413), wire.log
    wire.wait_for_log(path)
