"""The proxy setting: parsing, and the ForwardedHeaders middleware through a test client."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from flask import Flask, jsonify, redirect, request, url_for
from werkzeug.test import Client

from flask_prodserve.proxy import ForwardedHeaders, ProxyTrust, as_proxy

from .helpers import SPOOFED


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", ProxyTrust()),
        ("", ProxyTrust()),
        (0, ProxyTrust()),
        ("1", ProxyTrust(1)),
        (2, ProxyTrust(2)),
        ("1,127.0.0.1", ProxyTrust(1, ("127.0.0.1",))),
        ("1, 10.0.0.0/8 ,::1", ProxyTrust(1, ("10.0.0.0/8", "::1"))),
        ([1, "10.0.0.5"], ProxyTrust(1, ("10.0.0.5",))),
        (ProxyTrust(3), ProxyTrust(3)),
    ],
    ids=["zero", "empty", "int-zero", "one", "int", "one-address", "networks", "list", "instance"],
)
def test_proxy_values(value: Any, expected: ProxyTrust) -> None:
    assert as_proxy(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yes", "expected a number of proxy hops"),
        (True, "expected a number of proxy hops"),
        ("11", "from 0 to 10 proxy hops"),
        ("-1", "from 0 to 10 proxy hops"),
        ("1,nginx.local", "'nginx.local' is neither"),
        ("0,127.0.0.1", "at least 1 hop"),
        ({}, "expected a number of proxy hops"),
    ],
    ids=["word", "bool", "too-many", "negative", "hostname", "addresses-without-hops", "mapping"],
)
def test_bad_proxy_values(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        as_proxy(value)


@pytest.mark.parametrize(
    ("trust", "peer", "trusted"),
    [
        (ProxyTrust(), "127.0.0.1", False),  # not even loopback by default
        (ProxyTrust(1), "203.0.113.9", True),
        (ProxyTrust(1, ("127.0.0.1",)), "127.0.0.1", True),
        (ProxyTrust(1, ("127.0.0.1",)), "127.0.0.2", False),
        (ProxyTrust(1, ("10.0.0.0/8",)), "10.1.2.3", True),
        (ProxyTrust(1, ("10.0.0.0/8",)), "::ffff:10.1.2.3", True),
        (ProxyTrust(1, ("::1",)), "::1", True),
        (ProxyTrust(1, ("::1",)), "not-an-ip", False),
    ],
    ids=["default", "any", "exact", "other", "network", "mapped-v6", "v6", "garbage"],
)
def test_which_peers_are_trusted(trust: ProxyTrust, peer: str, trusted: bool) -> None:
    assert trust.trusts(peer) is trusted


def echo_app() -> Flask:
    app = Flask(__name__)

    @app.route("/")
    def index() -> Any:
        return jsonify(
            remote_addr=request.remote_addr,
            scheme=request.scheme,
            host=request.host,
            script_root=request.script_root,
            url_root=request.url_root,
            headers=sorted(k for k, _ in request.headers.items() if "forward" in k.lower()),
        )

    @app.route("/go")
    def go() -> Any:
        return redirect(url_for("index", _external=True))

    return app


def get(trust: ProxyTrust, headers: dict[str, str], peer: str = "127.0.0.1") -> dict[str, Any]:
    client = Client(ForwardedHeaders(echo_app(), trust))
    response = client.get("/", headers=headers, environ_base={"REMOTE_ADDR": peer})
    data: dict[str, Any] = json.loads(response.data)
    return data


def test_untrusted_headers_change_nothing_and_are_removed() -> None:
    seen = get(ProxyTrust(), SPOOFED)
    assert seen == {
        "remote_addr": "127.0.0.1",
        "scheme": "http",
        "host": "localhost",
        "script_root": "",
        "url_root": "http://localhost/",
        "headers": [],
    }


def test_untrusted_redirect_location_is_not_rewritten() -> None:
    client = Client(ForwardedHeaders(echo_app(), ProxyTrust()))
    response = client.get("/go", headers=SPOOFED)
    assert response.headers["Location"] == "http://localhost/"


def test_trusted_proxy_sets_client_scheme_host_and_prefix() -> None:
    seen = get(ProxyTrust(1, ("127.0.0.1",)), SPOOFED)
    assert seen["remote_addr"] == "6.6.6.6"
    assert seen["url_root"] == "https://evil.example:444/evil/"


def test_only_the_rightmost_hops_count() -> None:
    headers = {"X-Forwarded-For": "1.1.1.1, 2.2.2.2, 3.3.3.3"}
    assert get(ProxyTrust(1), headers)["remote_addr"] == "3.3.3.3"
    assert get(ProxyTrust(2), headers)["remote_addr"] == "2.2.2.2"


def test_a_peer_outside_the_trusted_addresses_is_not_trusted() -> None:
    seen = get(ProxyTrust(1, ("10.0.0.0/8",)), SPOOFED, peer="192.0.2.1")
    assert (seen["remote_addr"], seen["url_root"]) == ("192.0.2.1", "http://localhost/")


def test_underscore_spelling_is_removed_too() -> None:
    # X_Forwarded_For and X-Forwarded-For share one environ key.
    client = Client(ForwardedHeaders(echo_app(), ProxyTrust()))
    environ = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "6.6.6.6"}
    data = json.loads(client.get("/", environ_base=environ).data)
    assert data["remote_addr"] == "127.0.0.1"


def test_hint_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    client = Client(ForwardedHeaders(echo_app(), ProxyTrust()))
    with caplog.at_level(logging.WARNING, logger="flask_prodserve"):
        for _ in range(3):
            client.get(
                "/",
                headers={"X-Forwarded-For": "6.6.6.6"},
                environ_base={"REMOTE_ADDR": "127.0.0.1"},
            )
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "flask-prodserve: ignored X-Forwarded-For from 127.0.0.1: no proxy is trusted; if this "
        "server is behind a proxy you run (nginx, a PaaS router), serve with --proxy 1 so the "
        "app sees the client's address and scheme (logged once)."
    ]


def test_no_hint_without_forwarded_headers(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_prodserve"):
        get(ProxyTrust(), {})
    assert caplog.records == []
