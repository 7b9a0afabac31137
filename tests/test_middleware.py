"""The served WSGI chain, through a test client: prefix mount and access log."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask, redirect, session, url_for
from werkzeug.test import Client

from flask_prodserve.config import Facts, ServeConfig, resolve
from flask_prodserve.lifecycle import Lifecycle
from flask_prodserve.middleware import AccessLog, build_wsgi_app, combined_line, mount


def make_app() -> Flask:
    app = Flask(__name__)
    app.secret_key = "test"

    @app.route("/")
    def index() -> str:
        return f"index {url_for('index')} {url_for('static', filename='s.css')}"

    @app.route("/go")
    def go() -> object:
        return redirect(url_for("index"))

    @app.route("/login")
    def login() -> str:
        session["u"] = "x"
        return "in"

    return app


def config(**cli: object) -> ServeConfig:
    facts = Facts(debug=False, platform="linux", cpus=2, gunicorn_importable=True)
    return resolve(cli=cli, env={}, config={}, extension={}, facts=facts)


@pytest.fixture
def app_() -> Flask:
    # Not named "app": pytest-flask would push a request context around the test.
    return make_app()


@pytest.mark.parametrize("prefix", ["app", "/app/", "/app"])
def test_prefix_spellings_mount_the_same(app_: Flask, prefix: str) -> None:
    client = Client(
        build_wsgi_app(app_, config(url_prefix=prefix, access_log=False), Lifecycle(app_))
    )
    response = client.get("/app/")
    assert response.status_code == 200
    assert response.text == "index /app/ /app/static/s.css"


def test_outside_the_prefix_is_a_404_from_outside_the_app(app_: Flask) -> None:
    client = Client(mount(app_, "/app"))
    for path in ("/", "/appx", "/appx/", "/other/app/"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "served under /app/" in response.text


def test_prefix_itself_redirects_to_the_slash(app_: Flask) -> None:
    response = Client(mount(app_, "/app")).get("/app")
    assert response.status_code == 308
    assert response.headers["Location"].endswith("/app/")


def test_redirects_and_cookies_carry_the_prefix(app_: Flask) -> None:
    client = Client(mount(app_, "/app"))
    assert client.get("/app/go").headers["Location"] == "/app/"
    cookie = client.get("/app/login").headers["Set-Cookie"]
    assert "Path=/app" in cookie


def test_application_root_follows_the_prefix_unless_set(app_: Flask) -> None:
    mount(app_, "/app")
    assert app_.config["APPLICATION_ROOT"] == "/app"
    other = make_app()
    other.config["APPLICATION_ROOT"] = "/custom"
    mount(other, "/app")
    assert other.config["APPLICATION_ROOT"] == "/custom"
    with other.test_request_context():
        assert url_for("index") == "/custom/"


def test_no_prefix_serves_the_app_itself(app_: Flask) -> None:
    assert mount(app_, "") is app_
    assert app_.config["APPLICATION_ROOT"] == "/"


def test_url_for_outside_a_request_uses_the_prefix(app_: Flask) -> None:
    mount(app_, "/app")
    app_.config["SERVER_NAME"] = "example.com"
    with app_.app_context():
        assert url_for("index") == "http://example.com/app/"


def test_access_log_line(app_: Flask, caplog: pytest.LogCaptureFixture) -> None:
    client = Client(build_wsgi_app(app_, config(url_prefix="/app"), Lifecycle(app_)))
    with caplog.at_level(logging.INFO, logger="flask_prodserve.access"):
        client.get(
            "/app/?q=1",
            headers={"User-Agent": "ua/1", "Referer": "http://r/"},
            environ_base={"REMOTE_ADDR": "10.0.0.9"},
            buffered=True,  # runs the body to its end and closes it, as a server does
        )
        client.get("/nope", buffered=True)
    first, second = (r.getMessage() for r in caplog.records)
    assert first.startswith("10.0.0.9 - - [")
    assert '"GET /app/?q=1 HTTP/1.1" 200 29 "http://r/" "ua/1" ' in first
    assert '"GET /nope HTTP/1.1" 404 ' in second


_LOG_TIME = r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]"


@pytest.mark.parametrize(
    ("environ", "status", "expected"),
    [
        pytest.param(
            {
                "REMOTE_ADDR": "10.0.0.9",
                "REMOTE_USER": "ann",
                "REQUEST_METHOD": "POST",
                "SCRIPT_NAME": "/app",
                "PATH_INFO": "/a b",
                "QUERY_STRING": "x=1",
                "SERVER_PROTOCOL": "HTTP/1.0",
                "HTTP_REFERER": "http://r/",
                "HTTP_USER_AGENT": "ua/1",
            },
            "201 CREATED",
            '10.0.0.9 - ann {time} "POST /app/a%20b?x=1 HTTP/1.0" 201 7 "http://r/" "ua/1" ',
            id="every-field",
        ),
        pytest.param(
            {"REMOTE_ADDR": "", "PATH_INFO": "/"},
            "-",
            '- - - {time} "- / -" - 7 "-" "-" ',
            id="missing-fields-are-dashes",
        ),
    ],
)
def test_combined_line(environ: dict[str, str], status: str, expected: str) -> None:
    line = combined_line(environ, status, 7, time.perf_counter() - 0.25, 3)
    head, time_taken, generation = line.rsplit(" ", 2)
    assert generation == "3"
    pattern = re.escape(expected.rstrip()).replace(re.escape("{time}"), _LOG_TIME)
    assert re.fullmatch(pattern, head), line
    assert 0.25 <= float(time_taken) < 5 and len(time_taken.split(".")[1]) == 6


def test_access_log_off(app_: Flask) -> None:
    off = config(access_log=False)
    assert not isinstance(build_wsgi_app(app_, off, Lifecycle(app_)), AccessLog)
    dev = replace(off, mode="dev", access_log=True)
    assert not isinstance(
        build_wsgi_app(app_, dev, Lifecycle(app_)), AccessLog
    )  # the dev server logs itself


def test_health_path_is_answered_outside_the_app_and_prefix(app_: Flask) -> None:
    checks: list[bool] = [True]
    lifecycle = Lifecycle(app_)
    lifecycle.hooks.ready.append(lambda app: checks[0])

    @app_.route("/healthz")
    def shadowed() -> str:
        return "the app's own"

    wsgi_app = build_wsgi_app(app_, config(url_prefix="/app", health_path="healthz"), lifecycle)
    client = Client(wsgi_app)
    response = client.get("/healthz")
    assert (response.status_code, response.text) == (200, "ok\n")
    assert response.headers["Cache-Control"] == "no-store"
    assert client.get("/healthz/ready").status_code == 200
    checks[0] = False
    assert client.get("/healthz/ready").status_code == 503
    assert client.get("/app/healthz").text == "the app's own"


def test_a_failing_readiness_check_is_not_ready(app_: Flask) -> None:
    lifecycle = Lifecycle(app_)

    def broken(app: Flask) -> bool:
        raise ConnectionError("database down")

    lifecycle.hooks.ready.append(broken)
    assert lifecycle.is_ready() is False


def test_health_checks_are_not_logged(app_: Flask, caplog: pytest.LogCaptureFixture) -> None:
    wsgi_app = build_wsgi_app(app_, config(health_path="/healthz"), Lifecycle(app_))
    with caplog.at_level(logging.INFO, logger="flask_prodserve.access"):
        Client(wsgi_app).get("/healthz", buffered=True)
    assert not caplog.records


@pytest.mark.parametrize(
    ("fmt", "check"),
    [
        ("json", lambda line: json.loads(line)["path"] == "/app/?q=1"),
        ("{method} {path} {status} {size}", lambda line: line == "GET /app/?q=1 200 29"),
    ],
)
def test_access_log_formats(
    app_: Flask, caplog: pytest.LogCaptureFixture, fmt: str, check: Any
) -> None:
    cfg = config(url_prefix="/app", access_log_format=fmt)
    with caplog.at_level(logging.INFO, logger="flask_prodserve.access"):
        Client(build_wsgi_app(app_, cfg, Lifecycle(app_))).get("/app/?q=1", buffered=True)
    (record,) = caplog.records
    assert check(record.getMessage()), record.getMessage()


# -- the server's file wrapper reaches the server ------------------------------------


class ServerFileWrapper:
    """What a server puts in ``wsgi.file_wrapper`` (gunicorn's and waitress's are
    plain classes like this): the server tests the body's type, and sends the
    file itself (gunicorn with sendfile) when it is one of its own."""

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield from iter(lambda: self.filelike.read(8192), b"")

    def close(self) -> None:
        self.closed = True
        self.filelike.close()


class SlottedWrapper:
    """A file wrapper that has no attributes of its own to set."""

    __slots__ = ("filelike",)

    def __init__(self, filelike: Any) -> None:
        self.filelike = filelike

    def __iter__(self) -> Iterator[bytes]:
        yield self.filelike.read()


def file_app(environ: Any, start_response: Any) -> Any:
    """Answers with ``b"0123456789"`` in the server's file wrapper, as WhiteNoise does."""
    start_response("200 OK", [("Content-Length", "10")])
    return environ["wsgi.file_wrapper"](io.BytesIO(b"0123456789"))


def call(app: Any, wrapper: type) -> Any:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/f.css",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.file_wrapper": wrapper,
    }
    return app(environ, lambda status, headers, exc_info=None: None)


def test_the_file_wrapper_reaches_the_server_and_is_logged_at_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "flask_prodserve.access")
    body = call(AccessLog(file_app), ServerFileWrapper)
    assert type(body) is ServerFileWrapper  # so the server sends the file itself
    assert caplog.messages == []  # not before the server has sent it
    body.close()
    body.close()  # a server that closes twice logs once
    assert body.closed
    assert len(caplog.messages) == 1
    assert '"GET /f.css HTTP/1.1" 200 10 ' in caplog.messages[0]


def test_a_wrapper_whose_close_cannot_be_set_is_counted_instead(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "flask_prodserve.access")
    body = call(AccessLog(file_app), SlottedWrapper)
    assert not isinstance(body, SlottedWrapper)
    assert b"".join(body) == b"0123456789"
    body.close()
    assert '"GET /f.css HTTP/1.1" 200 10 ' in caplog.messages[0]
