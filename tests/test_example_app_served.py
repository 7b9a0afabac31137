"""example_app under the production servers it is deployed on, through the
``prod_server`` fixture: the same pages as in test_example_app.py, over
HTTP, mounted under a prefix, with the body limit and the worker processes
that only a real server has.

This module's app fixture is named ``app`` (pytest-flask's convention, which
``prod_server`` serves); test_example_app.py explains why its own is not.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from flask import Flask

from example_app import create_app
from flask_prodserve.testing import ProdServer

# Each test runs on both production servers, whatever --prod-server says.
pytestmark = pytest.mark.prod_server("gunicorn", "waitress", url_prefix="/demo")


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    """The example app as deployed, with its database in a temporary folder."""
    return create_app(
        {"SECRET_KEY": secrets.token_hex(32), "DATABASE": str(tmp_path / "guestbook.sqlite")}
    )


class Browser:
    """urllib with a cookie jar: follows redirects and keeps the session."""

    def __init__(self, server: ProdServer) -> None:
        self.server = server
        self.cookies = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def open(self, path: str, form: dict[str, str] | None = None) -> tuple[str, str]:
        """The final URL and page for ``path`` (POSTing ``form`` if given)."""
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        with self.opener.open(self.server.url + path, data=data, timeout=10) as response:
            return response.url, response.read().decode()


def test_sign_the_guestbook_under_the_prefix(prod_server: ProdServer) -> None:
    browser = Browser(prod_server)
    url, page = browser.open("/", {"message": "Hello from a real server"})
    assert url == prod_server.url + "/"  # POST, 303, GET: redirected inside the prefix
    assert "Thanks for signing the guestbook!" in page  # the flash survived the redirect
    assert "Hello from a real server" in page
    assert 'href="/demo/static/style.css"' in page
    with browser.opener.open(prod_server.url + "/static/style.css", timeout=10) as css:
        assert css.headers["Content-Type"].startswith("text/css")


def test_session_cookie_is_scoped_to_the_prefix(prod_server: ProdServer) -> None:
    browser = Browser(prod_server)
    url, page = browser.open("/register", {"username": "alice", "password": "s3cret"})
    assert url == prod_server.url + "/account"
    assert "Hello, alice" in page
    (cookie,) = browser.cookies
    assert (cookie.name, cookie.path) == ("session", "/demo")
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite") == "Lax"


def test_body_over_max_content_length_is_refused_before_the_view(prod_server: ProdServer) -> None:
    # The app's MAX_CONTENT_LENGTH (1 MiB) is the server's body limit: the
    # request is answered from its head, without waiting for the body.
    conn = http.client.HTTPConnection(prod_server.host, prod_server.port, timeout=10)
    try:
        conn.putrequest("POST", "/demo/")
        conn.putheader("Content-Type", "application/x-www-form-urlencoded")
        conn.putheader("Content-Length", str(1024 * 1024 + 1))
        conn.endheaders()
        assert conn.getresponse().status == 413
    finally:
        conn.close()
    _, page = Browser(prod_server).open("/")
    assert "No messages yet" in page


@pytest.mark.prod_server("gunicorn", url_prefix="/demo", workers=2)
def test_workers_share_one_database(prod_server: ProdServer) -> None:
    browser = Browser(prod_server)
    for n in range(6):
        browser.open("/", {"message": f"message {n}"})
    pids = set()
    for _ in range(10):
        _, body = browser.open("/api/stats")
        stats = json.loads(body)
        assert stats["messages"] == 6  # every worker sees every message
        pids.add(stats["pid"])
    assert os.getpid() not in pids
    assert prod_server.pid not in pids  # served by gunicorn's workers, not its master
