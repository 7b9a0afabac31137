"""waitress at the wire: framing, limits, slow clients, bodies, proxy options.

The parser is tested as a table at its own seam; everything whose point is
the socket runs against a real ``flask serve --prod --server waitress``.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from waitress.adjustments import Adjustments

from flask_prodserve.backends import waitress as waitress_backend
from flask_prodserve.backends.waitress import adjustments, check_options
from flask_prodserve.backends.waitress_http import Parser
from flask_prodserve.config import Facts, ServeConfig, resolve
from flask_prodserve.errors import ConfigError

from .conftest import LiveServer
from .rawhttp import RawClient, exchange
from .test_live import serve_args

# --------------------------------------------------------------------------- #
# The parser, as a table
# --------------------------------------------------------------------------- #

BODY = b"5\r\nhello\r\n0\r\n\r\n"


def request(*fields: bytes, line: bytes = b"POST /x HTTP/1.1", body: bytes = BODY) -> bytes:
    return b"\r\n".join([line, b"Host: x", *fields, b""]) + b"\r\n" + body


def feed(parser: Parser, data: bytes) -> int:
    """Feed ``data`` as waitress's channel does, until the request is complete."""
    consumed = 0
    while consumed < len(data) and not parser.completed:
        consumed += parser.received(data[consumed:])
    return consumed


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(request(b"Transfer-Encoding: chunked"), None, id="chunked"),
        pytest.param(request(b"Transfer-Encoding: CHUNKED"), None, id="chunked-upper-case"),
        pytest.param(
            request(b"Content-Length: 5", b"Transfer-Encoding: chunked"), 400, id="cl-and-te"
        ),
        pytest.param(
            request(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"),
            400,
            id="te-twice",
        ),
        pytest.param(request(b"Transfer-Encoding: chunked, chunked"), 400, id="chunked-twice"),
        pytest.param(
            request(b"Transfer-Encoding: chunked", line=b"POST /x HTTP/1.0"), 400, id="te-http-1.0"
        ),
        pytest.param(request(b"Transfer-Encoding: chunked", b" , chunked"), 400, id="folded"),
        pytest.param(request(b"Transfer-Encoding: gzip"), 501, id="unknown-coding"),
        pytest.param(request(b"Content-Length: 5", b"Content-Length: 6"), 400, id="cl-twice"),
        pytest.param(request(*[b"X-A: 1"] * 3, body=b""), None, id="fields-at-limit"),
        pytest.param(request(*[b"X-A: 1"] * 4, body=b""), 431, id="too-many-fields"),
        pytest.param(request(line=b"GET /" + b"a" * 250 + b" HTTP/1.1"), 414, id="long-line"),
        pytest.param(b"GET /" + b"a" * 300, 414, id="long-line-unfinished"),
        pytest.param(b"\r\nGET /" + b"a" * 300, 414, id="long-line-after-a-blank-line"),
    ],
)
def test_parser(data: bytes, status: int | None) -> None:
    parser = Parser(Adjustments())
    parser.max_fields, parser.max_line = 4, 256  # Host plus three
    consumed = feed(parser, data)
    assert parser.completed
    if status is None:
        assert parser.error is None
        assert consumed == len(data)
    else:
        assert parser.error is not None
        assert parser.error.code == status
        assert consumed == len(data)  # nothing after a refused request is parsed


def test_parser_leaves_a_pipelined_request_for_later() -> None:
    parser = Parser(Adjustments())
    first = request(b"Transfer-Encoding: chunked")
    assert feed(parser, first + b"GET /next HTTP/1.1\r\n\r\n") == len(first)
    assert parser.error is None
    assert parser.headers["CONTENT_LENGTH"] == "5"


# --------------------------------------------------------------------------- #
# Options
# --------------------------------------------------------------------------- #

FACTS = Facts(debug=False, platform="linux", cpus=2, gunicorn_importable=True)


def config(**cli: Any) -> ServeConfig:
    cli = {"server": "waitress", "mode": "prod", **cli}
    return resolve(cli=cli, env={}, config={}, extension={}, facts=FACTS)


@pytest.mark.parametrize(
    "proxy",
    [
        pytest.param("0", id="no-proxy-our-middleware-strips-and-hints"),
        pytest.param("1", id="one-hop-headers-reach-our-middleware"),
        pytest.param("2,10.0.0.0/8", id="addresses-are-checked-by-our-middleware"),
    ],
)
def test_proxy_adjustments(proxy: str) -> None:
    adj = adjustments(config(proxy=proxy))
    assert adj["trusted_proxy"] is None
    assert adj["clear_untrusted_proxy_headers"] is False
    Adjustments(**adj)  # waitress accepts the whole set


def test_limits_are_mapped() -> None:
    adj = adjustments(config(max_header_size="8K", max_body_size="1M", timeout="7"))
    # waitress refuses a size equal to its limit; ours is the largest accepted.
    assert adj["max_request_header_size"] == 8 * 1024 + 1
    assert adj["max_request_body_size"] == 1024**2 + 1
    assert (adj["channel_timeout"], adj["cleanup_interval"]) == (7, 1)


@pytest.mark.parametrize(
    ("name", "flag"),
    [
        ("trusted_proxy", "--proxy"),
        ("clear_untrusted_proxy_headers", "--proxy"),
        ("max_request_body_size", "--max-body-size"),
        ("max_request_header_size", "--max-header-size"),
    ],
)
def test_server_options_cannot_override_ours(name: str, flag: str) -> None:
    with pytest.raises(ConfigError, match=f"'{name}' is set by flask-prodserve; use {flag}"):
        check_options(config(server_options={name: 1}))


# --------------------------------------------------------------------------- #
# Framing and limits, live
# --------------------------------------------------------------------------- #

LIMITS = (
    "--max-request-line", "1000",
    "--max-header-count", "20",
    "--max-header-size", "4K",
    "--max-body-size", "1000",
)  # fmt: skip


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One waitress server with small limits, shared by the tests that do not stop it."""
    log = tmp_path_factory.mktemp("wire") / "server.log"
    server = LiveServer(serve_args("waitress", *LIMITS), log)
    try:
        yield server.start()
    finally:
        server.kill()


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    ("line", "fields"),
    [
        pytest.param(
            b"HTTP/1.1", [b"Content-Length: 5", b"Transfer-Encoding: chunked"], id="cl-te"
        ),
        pytest.param(
            b"HTTP/1.1", [b"Transfer-Encoding: chunked", b"Content-Length: 5"], id="te-cl"
        ),
        pytest.param(
            b"HTTP/1.1",
            [b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"],
            id="te-twice",
        ),
        pytest.param(b"HTTP/1.1", [b"Transfer-Encoding: chunked, chunked"], id="chunked-twice"),
        pytest.param(
            b"HTTP/1.0",
            [b"Connection: keep-alive", b"Transfer-Encoding: chunked"],
            id="te-in-http-1.0",
        ),
    ],
)
def test_ambiguous_framing_is_refused(wire: LiveServer, line: bytes, fields: list[bytes]) -> None:
    data = request(*fields, line=b"POST /echo/x " + line, body=b"0\r\n\r\n" + SMUGGLED)
    response, closed = exchange(wire.host, wire.port, data)
    assert response.status == 400, response
    assert response.headers["connection"] == "close"
    assert closed
    wire.assert_never_reached("/smuggled")


def test_pipelined_request_after_a_valid_chunked_body_is_served(wire: LiveServer) -> None:
    # The control for the test above: the same bytes with sound framing.
    data = request(b"Transfer-Encoding: chunked", line=b"GET /echo/x HTTP/1.1", body=b"0\r\n\r\n")
    with RawClient(wire.host, wire.port) as client:
        client.send(data + b"GET /echo/pipelined HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.response().status == 200
        second = client.response()
    assert second.status == 200
    assert b'"PATH_INFO":"/echo/pipelined"' in second.body


def fields_of(total: int, count: int) -> list[bytes]:
    """``count`` header fields that make a GET request exactly ``total`` bytes long."""
    size = total - len(request(line=b"GET /echo/x HTTP/1.1", body=b"")) - 2 * count
    lengths = [size // count + (i < size % count) for i in range(count)]
    return [f"X-{i:02}: ".encode() + b"v" * (n - 6) for i, n in enumerate(lengths)]


def get(*fields: bytes, path: bytes = b"/echo/x", body: bytes = b"") -> bytes:
    return request(*fields, line=b"GET " + path + b" HTTP/1.1", body=body)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(get(path=b"/echo/" + b"a" * 980), 200, id="line-at-limit"),
        pytest.param(get(path=b"/echo/" + b"a" * 1000), 414, id="line-too-long"),
        pytest.param(b"GET /echo/" + b"a" * 2000, 414, id="line-too-long-unfinished"),
        pytest.param(get(*[b"X-A: 1"] * 19), 200, id="fields-at-limit"),
        pytest.param(get(*[b"X-A: 1"] * 20), 431, id="too-many-fields"),
        pytest.param(get(*fields_of(4096, 5)), 200, id="header-block-at-limit"),
        pytest.param(get(*fields_of(4097, 5)), 431, id="header-block-too-large"),
        pytest.param(get(b"Content-Length: 1000", body=b"x" * 1000), 200, id="body-at-limit"),
        pytest.param(get(b"Content-Length: 1001"), 413, id="content-length-too-large"),
        pytest.param(
            get(b"Transfer-Encoding: chunked", body=b"384\r\n" + b"x" * 900 + b"\r\n0\r\n\r\n"),
            200,
            id="chunked-under-limit",
        ),
        pytest.param(
            get(b"Transfer-Encoding: chunked", body=b"3e9\r\n" + b"x" * 1001 + b"\r\n0\r\n\r\n"),
            413,
            id="chunked-too-large",
        ),
        pytest.param(
            get(b"Transfer-Encoding: chunked", body=b"zz\r\nhello\r\n0\r\n\r\n"),
            400,
            id="chunked-malformed",
        ),
    ],
)
def test_limits(wire: LiveServer, data: bytes, status: int) -> None:
    with RawClient(wire.host, wire.port, timeout=5) as client:
        client.send(data)
        response = client.response()  # in time: no hang
        assert response.status == status, (response, wire.log)
        if status == 200:
            assert b"echo" in response.body
        else:
            assert client.wait_closed(5) is not None
            assert client.buffer == b""
    assert wire.request("GET", "/echo/after")[0] == 200  # still serving


# --------------------------------------------------------------------------- #
# Slow clients
# --------------------------------------------------------------------------- #


class Trickler:
    """Sends a request line, then one header line every ``pace`` seconds, never the end."""

    def __init__(self, server: LiveServer, pace: float) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=5)
        self.sock.sendall(b"GET /echo/slow HTTP/1.1\r\nHost: x\r\n")
        self.started = time.monotonic()
        self.sock.setblocking(False)
        self.pace = pace
        self.due = self.started + pace
        self.received = b""
        self.closed_after: float | None = None


def trickle(tricklers: list[Trickler], until: float) -> None:
    """Drive every trickler until the server has closed them all, or ``until``."""
    selector = selectors.DefaultSelector()
    for t in tricklers:
        selector.register(t.sock, selectors.EVENT_READ, t)
    open_ = set(tricklers)
    while open_ and time.monotonic() < until:
        for t in open_:
            if time.monotonic() >= t.due:
                t.due += t.pace
                with contextlib.suppress(OSError):  # closed: the read below notices
                    t.sock.send(b"X-Trickle: 1\r\n")
        for key, _ in selector.select(timeout=0.05):
            t = key.data
            try:
                data = t.sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                t.received += data
                continue
            t.closed_after = time.monotonic() - t.started
            selector.unregister(t.sock)
            t.sock.close()
            open_.discard(t)
    for t in open_:
        t.sock.close()


def test_tricklers_are_cut_off_and_others_are_served(flask_serve_process: Any) -> None:
    header_timeout = 3
    server = flask_serve_process(
        serve_args("waitress", "--threads", "2", "--header-timeout", str(header_timeout))
    )
    tricklers = [Trickler(server, pace=1 + (i % 5) / 4) for i in range(50)]
    driver = threading.Thread(target=trickle, args=(tricklers, time.monotonic() + 10))
    driver.start()
    latencies = []
    while driver.is_alive():
        started = time.monotonic()
        status, _, _ = server.request("GET", "/echo/normal", timeout=10)
        latencies.append(time.monotonic() - started)
        assert status == 200
        time.sleep(max(0.0, started + 0.2 - time.monotonic()))
    driver.join()
    assert len(latencies) >= 10
    assert max(latencies) < 2, latencies
    for t in tricklers:
        assert t.closed_after is not None, "a trickler was never disconnected"
        assert header_timeout - 0.2 < t.closed_after < header_timeout + 3, t.closed_after
        assert t.received.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), t.received


def time_to_close(client: RawClient, started: float, within: float = 10) -> float:
    assert client.wait_closed(within) is not None, "still open"
    return time.monotonic() - started


def test_idle_connections_are_closed(flask_serve_process: Any) -> None:
    server = flask_serve_process(
        serve_args("waitress", "--keepalive", "2", "--header-timeout", "3")
    )

    def silent() -> tuple[float, bytes]:
        with RawClient(server.host, server.port) as client:
            return time_to_close(client, time.monotonic()), client.buffer

    def partial() -> tuple[float, bytes]:
        with RawClient(server.host, server.port) as client:
            client.send(b"GET /echo/x HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            response = client.response()
            return time_to_close(client, started), response.raw_head

    def keep_alive() -> tuple[float, bytes]:
        with RawClient(server.host, server.port) as client:
            client.send(get())
            assert client.response().status == 200
            time.sleep(0.5)  # idle, but within --keepalive
            client.send(get())
            assert client.response().status == 200
            return time_to_close(client, time.monotonic()), client.buffer

    with ThreadPoolExecutor(3) as pool:
        jobs: list[Callable[[], tuple[float, bytes]]] = [silent, partial, keep_alive]
        (silent_s, silent_bytes), (partial_s, head), (idle_s, idle_bytes) = pool.map(
            lambda job: job(), jobs
        )
    assert 2.8 < silent_s < 5 and silent_bytes == b""  # no request yet: --header-timeout
    assert 2.8 < partial_s < 5 and head.startswith(b"HTTP/1.1 408 ")
    assert 1.8 < idle_s < 4 and idle_bytes == b""  # after a response: --keepalive


def test_stalled_body_holds_no_thread_and_is_dropped(flask_serve_process: Any) -> None:
    server = flask_serve_process(serve_args("waitress", "--timeout", "2", "--threads", "1"))
    with RawClient(server.host, server.port) as stalled:
        stalled.send(get(b"Content-Length: 100000000", body=b"x" * 100))
        sent = time.monotonic()
        for _ in range(5):  # one thread: a stalled request holding it would block these
            started = time.monotonic()
            assert server.request("GET", "/echo/other", timeout=10)[0] == 200
            assert time.monotonic() - started < 1.5
        closed = time_to_close(stalled, sent)
    assert 1.8 < closed < 5, closed


def test_graceful_stop_does_not_wait_for_a_client_still_sending_headers(
    flask_serve_process: Any,
) -> None:
    server = flask_serve_process(serve_args("waitress", "--header-timeout", "2"))
    with RawClient(server.host, server.port) as client:
        client.send(get())
        assert client.response().status == 200
        client.send(b"GET /echo/x HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(20) == 0  # the default grace is 30 s
        assert time.monotonic() - started < 2 + 3
        assert client.response().status == 408


# --------------------------------------------------------------------------- #
# Bodies
# --------------------------------------------------------------------------- #


def test_close_connection_flag_closes_after_the_response(flask_serve_process: Any) -> None:
    app = ["--app", "tests.live_apps.close_app"]
    server = flask_serve_process([*app, "serve", "--prod", "--server", "waitress", "--port", "0"])
    with RawClient(server.host, server.port) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = client.response()
        assert (first.status, first.body) == (200, b"open")
        assert "connection" not in first.headers  # keep-alive by default
        client.send(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
        second = client.response()
        assert (second.status, second.body) == (200, b"closing")
        assert second.headers["connection"] == "close"
        assert client.wait_closed(5) is not None
        assert client.buffer == b""


def test_queue_depth_warnings_are_rate_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([100.0, 101.0, 109.9, 110.0])
    monkeypatch.setattr(waitress_backend.time, "monotonic", lambda: next(clock))
    every = waitress_backend._Every(10.0)
    record = logging.makeLogRecord({"msg": "Task queue depth is 3"})
    assert [every.filter(record) for _ in range(4)] == [True, False, False, True]
