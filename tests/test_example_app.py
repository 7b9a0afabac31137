"""Tests for example_app, the demo guestbook, also mounted under a URL prefix."""

import os
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client, TestResponse

from example_app import create_app, prodserve

# The app fixture is deliberately not called "app": pytest-flask pushes a
# request context around every test that uses a fixture of that name, which
# would keep one app context (and one database connection on flask.g) alive
# across requests and hide per-request teardown bugs.


@pytest.fixture
def flask_app(tmp_path: Path) -> Flask:
    """The example app with its database in a temporary folder."""
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test",
            "DATABASE": str(tmp_path / "instance" / "test.sqlite"),
        }
    )


@pytest.fixture
def client(flask_app: Flask) -> FlaskClient:
    return flask_app.test_client()


@pytest.fixture
def prefixed(flask_app: Flask) -> Client:
    """A client for the app mounted under /app, as a reverse proxy would."""
    return Client(DispatcherMiddleware(NotFound(), {"/app": flask_app}))


def register(client: FlaskClient | Client, prefix: str = "") -> TestResponse:
    return client.post(f"{prefix}/register", data={"username": "alice", "password": "s3cret"})


def login(client: FlaskClient | Client, password: str = "s3cret", prefix: str = "") -> TestResponse:
    return client.post(f"{prefix}/login", data={"username": "alice", "password": password})


def stats(client: FlaskClient) -> Any:
    """The /api/stats JSON."""
    response = client.get("/api/stats")
    assert response.status_code == 200
    return response.json


def test_extension_registered(flask_app: Flask) -> None:
    # The module-level extension object, registered by init_app in the factory.
    assert flask_app.extensions["prodserve"] is prodserve


def test_database_created_on_first_request(flask_app: Flask, client: FlaskClient) -> None:
    database = Path(flask_app.config["DATABASE"])
    assert database.parent.is_dir()  # the factory makes the folder...
    assert not database.exists()  # ...but opens no connection itself
    assert stats(client) == {"users": 0, "messages": 0, "pid": os.getpid()}
    assert database.exists()


def test_index_links_stylesheet(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert b'href="/static/style.css"' in response.data
    assert b"No messages yet" in response.data
    # Close responses that stream a file, or the ResourceWarning fails the run.
    with client.get("/static/style.css") as css:
        assert css.status_code == 200
        assert css.mimetype == "text/css"


def test_post_redirect_get(client: FlaskClient) -> None:
    response = client.post("/", data={"message": "Hello, world!"})
    assert response.status_code == 303
    assert response.location == "/"
    page = client.get(response.location)
    assert b"Thanks for signing the guestbook!" in page.data
    assert b"Hello, world!" in page.data
    assert b"anonymous" in page.data
    # The flash message is shown once only.
    assert b"Thanks for signing" not in client.get("/").data
    assert stats(client)["messages"] == 1


def test_message_is_escaped(client: FlaskClient) -> None:
    client.post("/", data={"message": "<script>alert(1)</script>"})
    page = client.get("/").data
    assert b"<script>" not in page
    assert b"&lt;script&gt;" in page


@pytest.mark.parametrize("message", ["", "   ", "x" * 501])
def test_invalid_message_rejected(client: FlaskClient, message: str) -> None:
    response = client.post("/", data={"message": message}, follow_redirects=True)
    assert b"Please write a message" in response.data
    assert stats(client)["messages"] == 0


def test_login_required(client: FlaskClient) -> None:
    response = client.get("/account")
    assert response.status_code == 302
    assert response.location == "/login"
    assert b"Please log in" in client.get(response.location).data


def test_register_login_logout(client: FlaskClient) -> None:
    response = register(client)
    assert response.status_code == 303
    assert response.location == "/account"
    assert b"Hello, alice" in client.get("/account").data

    response = client.post("/logout")
    assert response.status_code == 303
    assert response.location == "/"
    assert client.get("/account").status_code == 302

    assert login(client, password="wrong").status_code == 400
    assert client.get("/account").status_code == 302

    response = login(client)
    assert response.status_code == 303
    assert response.location == "/account"
    assert client.get("/account").status_code == 200
    assert stats(client)["users"] == 1


def test_session_cookie(client: FlaskClient) -> None:
    assert client.get_cookie("session") is None
    register(client)
    cookie = client.get_cookie("session")
    assert cookie is not None
    assert cookie.http_only
    assert cookie.same_site == "Lax"
    with client.session_transaction() as session:
        assert session["username"] == "alice"
        assert isinstance(session["user_id"], int)

    client.post("/logout")
    with client.session_transaction() as session:
        assert "user_id" not in session


def test_cookie_signed_with_another_key_is_rejected(tmp_path: Path) -> None:
    def make_app(key: str) -> Flask:
        database = str(tmp_path / "shared.sqlite")
        return create_app({"SECRET_KEY": key, "DATABASE": database})

    first = make_app("one").test_client()
    register(first)
    second = make_app("two").test_client()
    cookie = first.get_cookie("session")
    assert cookie is not None
    second.set_cookie("session", cookie.value)
    assert second.get("/account").status_code == 302


def test_duplicate_username(client: FlaskClient) -> None:
    register(client)
    client.post("/logout")
    response = register(client)
    assert response.status_code == 400
    assert b"Sorry, alice is taken." in response.data


def test_messages_signed_with_username(client: FlaskClient) -> None:
    register(client)
    client.post("/", data={"message": "Signed by me"})
    assert b"<strong>alice</strong>" in client.get("/").data
    assert b"Signed by me" in client.get("/account").data


def test_secret_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = {"DATABASE": str(tmp_path / "db.sqlite")}
    monkeypatch.delenv("EXAMPLE_APP_SECRET_KEY", raising=False)
    first, second = create_app(config), create_app(config)
    assert len(first.secret_key or "") == 64
    assert first.secret_key != second.secret_key
    monkeypatch.setenv("EXAMPLE_APP_SECRET_KEY", "from-env")
    assert create_app(config).secret_key == "from-env"


def test_prefix_links(prefixed: Client) -> None:
    response = prefixed.get("/app/")
    assert response.status_code == 200
    page = response.get_data()
    assert b'href="/app/static/style.css"' in page
    assert b'href="/app/login"' in page
    assert b'action="/app/"' in page
    with prefixed.get("/app/static/style.css") as css:
        assert css.status_code == 200
    assert prefixed.get("/").status_code == 404


def test_prefix_post_redirect_get(prefixed: Client) -> None:
    response = prefixed.post("/app/", data={"message": "Under a prefix"})
    assert response.status_code == 303
    assert response.location == "/app/"
    assert b"Under a prefix" in prefixed.get(response.location).get_data()


def test_prefix_login_flow(prefixed: Client) -> None:
    response = prefixed.get("/app/account")
    assert response.location == "/app/login"

    response = register(prefixed, prefix="/app")
    assert response.location == "/app/account"
    page = prefixed.get("/app/account").get_data()
    assert b"Hello, alice" in page
    assert b'action="/app/logout"' in page

    response = prefixed.post("/app/logout")
    assert response.location == "/app/"
    assert login(prefixed, prefix="/app").location == "/app/account"
