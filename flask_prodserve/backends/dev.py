"""Serve with Werkzeug's development server, like ``flask run`` does."""

from __future__ import annotations

import os
import signal
import socket
from typing import TYPE_CHECKING

from werkzeug.debug import DebuggedApplication
from werkzeug.serving import BaseWSGIServer, is_running_from_reloader, make_server

from .. import metrics

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from ..config import ServeConfig
    from ..lifecycle import Lifecycle
    from . import Events

_FD_VAR = "WERKZEUG_SERVER_FD"  # how Werkzeug's reloader hands the socket to its child


def inherited_socket() -> socket.socket | None:
    """In the reloader's child process, the socket its parent bound."""
    if not is_running_from_reloader() or _FD_VAR not in os.environ:
        return None
    return socket.socket(fileno=int(os.environ[_FD_VAR]))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def check_options(config: ServeConfig) -> None:
    """server_options are for the production server; the dev server ignores them."""


def run(
    wsgi_app: WSGIApplication,
    sock: socket.socket,
    config: ServeConfig,
    lifecycle: Lifecycle,
    events: Events,
) -> int:
    app = wsgi_app
    if config.debugger:
        debugged = DebuggedApplication(app, evalex=True)
        debugged.trusted_hosts.append(config.host)
        app = debugged
    host, port = sock.getsockname()[:2]
    server = make_server(host, port, app, threaded=True, fd=sock.fileno())
    events.started()
    # Werkzeug's server only stops on KeyboardInterrupt; SIGTERM would kill it outright.
    signal.signal(signal.SIGTERM, _interrupt)
    if not config.reload:
        _serve(server, lifecycle)
        return 0
    from werkzeug._reloader import run_with_reloader

    os.environ[_FD_VAR] = str(sock.fileno())
    try:
        # The parent only watches files; the child (WERKZEUG_RUN_MAIN) serves.
        run_with_reloader(lambda: _serve(server, lifecycle))
    finally:
        server.server_close()
    return 0


def _serve(server: BaseWSGIServer, lifecycle: Lifecycle) -> None:
    lifecycle.run("on_start")
    lifecycle.run("worker_init")
    metrics.worker_started()
    try:
        server.serve_forever()  # returns on Ctrl+C, and on SIGTERM (see _interrupt)
    finally:
        lifecycle.run("on_stop")
