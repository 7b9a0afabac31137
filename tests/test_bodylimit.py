"""The request body limit, through a test client."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask import Flask, request
from werkzeug.test import Client

from flask_prodserve.bodylimit import CLOSE_CONNECTION, BodyLimit

LIMIT = 100


def make_client(calls: list[bytes]) -> Client:
    app = Flask(__name__)

    @app.post("/")
    def upload() -> str:
        body = request.get_data()
        calls.append(body)
        return f"got {len(body)}"

    limited = BodyLimit(app, LIMIT)

    def recording(environ: Any, start_response: Any) -> Any:
        seen.clear()
        seen.append(environ)
        return limited(environ, start_response)

    return Client(recording)


seen: list[dict[str, Any]] = []  # the environ the last request passed through BodyLimit


class Chunked(io.RawIOBase):
    """A wsgi.input that yields ``parts``, then raises ``error`` if given."""

    def __init__(self, parts: list[bytes], error: Exception | None = None) -> None:
        self.parts = list(parts)
        self.error = error

    def read(self, size: int = -1) -> bytes:
        if self.parts:
            return self.parts.pop(0)
        if self.error is not None:
            raise self.error
        return b""


def chunked_environ(stream: Chunked) -> dict[str, Any]:
    return {"wsgi.input": stream, "HTTP_TRANSFER_ENCODING": "chunked"}


def post(client: Client, **kw: Any) -> tuple[int, bytes, dict[str, Any]]:
    response = client.post("/", **kw)
    body = response.get_data()
    response.close()  # as a server does: closes the buffered request body too
    return response.status_code, body, seen[0]


def test_body_within_the_limit_reaches_the_view() -> None:
    calls: list[bytes] = []
    status, body, environ = post(make_client(calls), data=b"x" * LIMIT)
    assert (status, body, calls) == (200, b"got 100", [b"x" * LIMIT])
    assert CLOSE_CONNECTION not in environ


def test_content_length_over_the_limit_is_413_before_the_view() -> None:
    calls: list[bytes] = []
    status, body, environ = post(make_client(calls), data=b"x" * (LIMIT + 1))
    assert status == 413
    assert b"larger than this server accepts (100 bytes)" in body
    assert calls == []
    assert environ[CLOSE_CONNECTION] is True


def test_chunked_body_is_buffered_and_given_a_length() -> None:
    calls: list[bytes] = []
    stream = Chunked([b"a" * 40, b"b" * 40])
    status, _, _ = post(make_client(calls), environ_overrides=chunked_environ(stream))
    assert (status, calls) == (200, [b"a" * 40 + b"b" * 40])


def test_chunked_body_over_the_limit_is_413_before_the_view() -> None:
    calls: list[bytes] = []
    stream = Chunked([b"a" * 60, b"b" * 60, b"never read"])
    status, _, environ = post(make_client(calls), environ_overrides=chunked_environ(stream))
    assert (status, calls) == (413, [])
    assert stream.parts == [b"never read"]  # stopped reading at the limit
    assert environ[CLOSE_CONNECTION] is True


@pytest.mark.parametrize(
    ("error", "status"),
    [(ValueError("Invalid chunk size"), 400), (TimeoutError("timed out"), 408)],
    ids=["malformed", "stalled"],
)
def test_chunked_read_errors_are_client_errors(error: Exception, status: int) -> None:
    calls: list[bytes] = []
    stream = Chunked([b"a" * 10], error)
    got, _, environ = post(make_client(calls), environ_overrides=chunked_environ(stream))
    assert (got, calls) == (status, [])
    assert environ[CLOSE_CONNECTION] is True


def test_bad_content_length_is_400() -> None:
    calls: list[bytes] = []
    status, _, _ = post(make_client(calls), environ_overrides={"CONTENT_LENGTH": "12abc"})
    assert (status, calls) == (400, [])
