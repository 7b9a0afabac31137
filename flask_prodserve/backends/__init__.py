"""Server backends, imported lazily by name.

``import flask_prodserve`` must not import gunicorn (it does not exist on
Windows and costs start-up time in dev mode), so a backend module is
imported only when it is about to serve.
"""

from __future__ import annotations

import importlib
import signal
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import socket

    from _typeshed.wsgi import WSGIApplication

    from ..config import ServeConfig

MODULES = {
    "werkzeug": "flask_prodserve.backends.dev",
    "waitress": "flask_prodserve.backends.waitress",
    "gunicorn": "flask_prodserve.backends.gunicorn",
}


class Backend(Protocol):
    """What a backend module provides."""

    def run(self, wsgi_app: WSGIApplication, sock: socket.socket, config: ServeConfig) -> int:
        """Serve on ``sock`` until stopped; return the process exit status."""


def load(name: str) -> Backend:
    """The backend module for a resolved server name."""
    module: Backend = importlib.import_module(MODULES[name])
    return module


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """Make SIGTERM stop the server the way Ctrl+C does: waitress and Werkzeug
    only react to ``KeyboardInterrupt``, and otherwise die mid-request."""
    signal.signal(signal.SIGTERM, _interrupt)
