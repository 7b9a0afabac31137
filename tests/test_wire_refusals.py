"""Both backends refuse the malformed requests that gunicorn 27's parser refuses.

Request lines without a usable version, targets in a form the method does
not allow, chunk sizes too large to be a number, forbidden trailer fields,
and bodies cut short by the client: each gets a prompt 4xx, the connection
is closed, and nothing reaches the app. The rules are tested as tables at
their seams (the pure helpers, the parser), and every refusal once more
against a real ``flask serve --prod --server waitress``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from waitress.adjustments import Adjustments

from flask_prodserve.backends.waitress_http import Parser
from flask_prodserve.framing import request_line_problem, trailer_problem

from .helpers import PROD_BACKENDS, LiveServer, serve_args
from .rawhttp import RawClient
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
    ("section", "refused"),
    [
        pytest.param(b"X-Checksum: 1", False, id="plain"),
        pytest.param(b"X-A: 1\r\nX-B:\r\nServer-Timing: a;dur=1", False, id="several"),
        pytest.param(b"Content-Length: 5", True, id="content-length"),
        pytest.param(b"host: evil", True, id="host"),
        pytest.param(b"Transfer-Encoding: chunked", True, id="transfer-encoding"),
        pytest.param(b"Trailer: X", True, id="trailer"),
        pytest.param(b"Authorization: Basic eA==", True, id="authorization"),
        pytest.param(b"TE: trailers", True, id="te"),
        pytest.param(b"Content-Type: a\r\nContent-Type: b", True, id="content-type-twice"),
        pytest.param(b"X_A: 1", False, id="underscore-dropped-as-by-gunicorn"),
        pytest.param(b"X-A: 1\r\n 2", True, id="folded"),
        pytest.param(b"X-A : 1", True, id="space-before-colon"),
        pytest.param(b"no colon", True, id="no-colon"),
        pytest.param(b"X-A: 1\r2", True, id="bare-cr"),
        pytest.param(b"X-A: \x00", True, id="control-character"),
    ],
)
def test_trailer_problem(section: bytes, refused: bool) -> None:
    assert (trailer_problem(section) is not None) is refused


def chunked(body: bytes, line: bytes = b"POST /x HTTP/1.1") -> bytes:
    return line + b"\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(b"GET /x\r\nHost: x\r\n\r\n", 400, id="no-version"),
        pytest.param(b"GET /x HTTP/2.0\r\nHost: x\r\n\r\n", 400, id="http-2.0"),
        pytest.param(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="asterisk-get"),
        pytest.param(chunked(b"5\r\nhello\r\n0\r\nX-A: 1\r\n\r\n"), None, id="trailer"),
        pytest.param(chunked(b"5\r\nhello\r\n0\r\nHost: y\r\n\r\n"), 400, id="trailer-host"),
        pytest.param(chunked(b"1" + b"0" * 40 + b"\r\nabc"), 400, id="chunk-size-2^160"),
        pytest.param(chunked(b"8" + b"0" * 15 + b"\r\n"), 400, id="chunk-size-2^63"),
        pytest.param(chunked(b"400\r\n"), 413, id="chunk-over-body-limit"),
        pytest.param(chunked(b"3ff\r\n"), None, id="chunk-at-body-limit-unfinished"),
        pytest.param(chunked(b"5;" + b"x" * 300), 400, id="chunk-size-line-too-long"),
        pytest.param(chunked(b"5\nhello"), 400, id="chunk-size-bare-lf"),
        pytest.param(chunked(b"0\r\nX-A: 1\n\n"), 400, id="trailer-bare-lf"),
        pytest.param(chunked(b"0\r\nX-A: " + b"x" * 300), 431, id="trailer-too-long"),
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


@pytest.fixture(scope="module", params=PROD_BACKENDS)
def wire(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LiveServer]:
    """One server per backend with small limits (the default --timeout of 30 s
    shows any wait for bytes that will never come)."""
    log = tmp_path_factory.mktemp("refusals") / "server.log"
    server = LiveServer(serve_args(request.param, *LIMITS), log)
    try:
        yield server.start()
    finally:
        server.kill()


def line(text: bytes) -> bytes:
    return text + b"\r\nHost: x\r\n\r\n"


def trailer(path: str, field: bytes) -> bytes:
    return chunked(b"5\r\nhello\r\n0\r\n" + field + b"\r\n\r\n", f"POST {path} HTTP/1.1".encode())


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
    pytest.param(
        chunked(b"1" + b"0" * 40 + b"\r\nabc", b"POST /echo/r09 HTTP/1.1"),
        400,
        "/echo/r09",
        id="chunk-size-2^160",
    ),
    pytest.param(
        chunked(b"3e9\r\nabc", b"POST /echo/r10 HTTP/1.1"),
        413,
        "/echo/r10",
        id="chunk-over-body-limit",
    ),
    pytest.param(
        trailer("/echo/r11", b"Content-Length: 5"), 400, "/echo/r11", id="trailer-content-length"
    ),
    pytest.param(trailer("/echo/r12", b"Host: evil"), 400, "/echo/r12", id="trailer-host"),
    pytest.param(
        trailer("/echo/r13", b"Transfer-Encoding: chunked"),
        400,
        "/echo/r13",
        id="trailer-transfer-encoding",
    ),
    pytest.param(
        trailer("/echo/r14", b"Authorization: Basic eA=="),
        400,
        "/echo/r14",
        id="trailer-authorization",
    ),
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
    if not _body_read_by_the_app(wire, data):
        wire.assert_never_reached(logged)


@pytest.mark.parametrize(
    ("data", "path"),
    [
        pytest.param(line(b"OPTIONS * HTTP/1.1"), '"OPTIONS %2A ', id="asterisk-options"),
        pytest.param(line(b"GET http://x/echo/a1 HTTP/1.1"), "/echo/a1", id="absolute-form"),
        pytest.param(line(b"CONNECT x:8443 HTTP/1.1"), '"CONNECT 8443 ', id="authority-connect"),
        pytest.param(
            trailer("/echo/a2", b"X-Checksum: 1"),
            "/echo/a2",
            id="allowed-trailer",
        ),
    ],
)
def test_well_formed_requests_reach_the_app(wire: LiveServer, data: bytes, path: str) -> None:
    # The controls for the table above: these are for the app to answer.
    with RawClient(wire.host, wire.port, timeout=5) as client:
        client.send(data)
        assert client.response().status not in (400, 413), wire.log
    wire.wait_for_log(path)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            b"POST /upload?n=h1 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello",
            id="content-length",
        ),
        pytest.param(
            b"POST /upload?n=h2 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", id="no-body"
        ),
        pytest.param(chunked(b"5\r\nhel", b"POST /upload?n=h3 HTTP/1.1"), id="chunked"),
        pytest.param(chunked(b"5\r\nhello\r\n", b"POST /upload?n=h4 HTTP/1.1"), id="no-last-chunk"),
        pytest.param(chunked(b"5\r\nhello\r\n0\r\n", b"POST /upload?n=h5 HTTP/1.1"), id="no-end"),
    ],
)
def test_body_cut_short_by_a_half_close_is_refused(wire: LiveServer, data: bytes) -> None:
    # To /upload, whose view reads the body: under gunicorn it runs before
    # the body has arrived, and its read must raise, not return what came.
    with RawClient(wire.host, wire.port, timeout=5) as client:
        client.send(data)
        client.sock.shutdown(socket.SHUT_WR)  # the client is done sending
        started = time.monotonic()
        response = client.response()
        assert time.monotonic() - started < 2  # at once, not after --timeout
        assert response.status == 400, (response, wire.log)
        assert response.headers["connection"] == "close"
        assert client.wait_closed(5) is not None
    if not _body_read_by_the_app(wire, data):
        wire.assert_never_reached(data.split(b" ")[1].decode())


def _body_read_by_the_app(server: LiveServer, data: bytes) -> bool:
    """Whether ``server`` refuses this request only once its body is read.

    waitress reads a whole body before it calls the app. gunicorn calls it
    with the head: a chunked body is then read by flask-prodserve's
    BodyLimit before the Flask app is called (the access log, outside it,
    still shows the request), and a body with a Content-Length by the view,
    whose read raises (400) when the body ends early.
    """
    has_body = b"\r\ncontent-length:" in data.lower() or b"chunked" in data.lower()
    return "--server gunicorn" in " ".join(server.args) and has_body


def test_whole_body_then_a_half_close_is_served(wire: LiveServer) -> None:
    # The control for the table above: a client may close its side once it
    # has sent the whole request, and still gets the answer.
    with RawClient(wire.host, wire.port, timeout=5) as client:
        client.send(line(b"GET /echo/h6 HTTP/1.1\r\nContent-Length: 5") + b"hello")
        client.sock.shutdown(socket.SHUT_WR)
        response = client.response()
    assert response.status == 200, wire.log
    assert b'"PATH_INFO":"/echo/h6"' in response.body
