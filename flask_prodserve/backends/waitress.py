"""Serve with waitress through its public API (``create_server``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from waitress.server import create_server

from . import stop_on_sigterm

if TYPE_CHECKING:
    import socket

    from _typeshed.wsgi import WSGIApplication

    from ..config import ServeConfig


def adjustments(config: ServeConfig) -> dict[str, Any]:
    """The waitress options for ``config`` (the socket is passed separately)."""
    return {
        "threads": config.threads,
        "channel_timeout": config.timeout,
        "backlog": config.backlog,
        # Prefix mounting is ours (the same under every server); waitress's own
        # url_prefix would also serve paths outside the prefix.
        "url_prefix": "",
        # Never show tracebacks to clients, and trust no proxy header.
        "expose_tracebacks": False,
        "clear_untrusted_proxy_headers": True,
        "ident": "waitress",
    }


def run(wsgi_app: WSGIApplication, sock: socket.socket, config: ServeConfig) -> int:
    server = create_server(wsgi_app, sockets=[sock], **adjustments(config))
    stop_on_sigterm()
    # run() returns after Ctrl+C or SIGTERM, once the worker threads are told to stop.
    server.run()
    return 0
