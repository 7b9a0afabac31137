"""The listening socket: one bind for every backend, clear errors."""

from __future__ import annotations

import pytest

from flask_prodserve.errors import ServeError
from flask_prodserve.sockets import bind, display_urls


def test_a_port_in_use_is_reported() -> None:
    with bind("127.0.0.1", 0, 16) as first:
        port = first.getsockname()[1]
        with pytest.raises(ServeError, match=rf"Port {port} on 127.0.0.1 is already in use"):
            bind("127.0.0.1", port, 16, where="FLASK_SERVE_PORT")


def test_port_zero_picks_a_free_port_and_the_urls_show_it() -> None:
    with bind("127.0.0.1", 0, 16) as sock:
        port = sock.getsockname()[1]
        assert port > 0
        assert display_urls(sock, "/app") == [f"http://127.0.0.1:{port}/app/"]


def test_ipv6_loopback_url_has_brackets() -> None:
    try:
        sock = bind("::1", 0, 16)
    except ServeError:
        pytest.skip("no IPv6 loopback on this machine")
    with sock:
        assert display_urls(sock, "")[0].startswith("http://[::1]:")


def test_an_address_not_on_this_machine() -> None:
    with pytest.raises(ServeError, match="not an address of this machine"):
        bind("192.0.2.1", 0, 16)  # TEST-NET-1: bind fails locally, nothing is sent
