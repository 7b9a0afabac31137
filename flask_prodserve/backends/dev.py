"""Serve with Werkzeug's development server, like ``flask run`` does."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from werkzeug.debug import DebuggedApplication
from werkzeug.serving import is_running_from_reloader, make_server

from . import stop_on_sigterm

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from ..config import ServeConfig

_FD_VAR = "WERKZEUG_SERVER_FD"  # how Werkzeug's reloader hands the socket to its child


def inherited_socket() -> socket.socket | None:
    """In the reloader's child process, the socket its parent bound."""
    if not is_running_from_reloader() or _FD_VAR not in os.environ:
        return None
    return socket.socket(fileno=int(os.environ[_FD_VAR]))


def run(wsgi_app: WSGIApplication, sock: socket.socket, config: ServeConfig) -> int:
    app = wsgi_app
    if config.debugger:
        debugged = DebuggedApplication(app, evalex=True)
        debugged.trusted_hosts.append(config.host)
        app = debugged
    host, port = sock.getsockname()[:2]
    server = make_server(host, port, app, threaded=True, fd=sock.fileno())
    stop_on_sigterm()
    if not config.reload:
        server.serve_forever()  # returns on Ctrl+C; SIGTERM raises SystemExit(0)
        return 0
    from werkzeug._reloader import run_with_reloader

    os.environ[_FD_VAR] = str(sock.fileno())
    try:
        run_with_reloader(server.serve_forever)
    finally:
        server.server_close()
    return 0
