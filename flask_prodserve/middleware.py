"""Build the WSGI application that the server runs.

The chain, outermost first: :class:`AccessLog` (so that requests outside the
prefix are logged too) -> :class:`~werkzeug.middleware.dispatcher.DispatcherMiddleware`
mounting the Flask app at ``url_prefix`` (a 404 outside it) -> the Flask app.

Mounting is done here, not by the server, because waitress and gunicorn
mount prefixes differently (waitress serves paths outside the prefix,
gunicorn answers them with a 500 and matches ``/appx`` to ``/app``); the
same middleware behaves identically under every server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask

    from .config import ServeConfig

access_logger = logging.getLogger("flask_prodserve.access")


def mount(app: Flask, prefix: str) -> WSGIApplication:
    """Serve ``app`` under ``prefix`` (already normalised; ``""`` = the root).

    ``APPLICATION_ROOT`` follows the prefix unless the app set its own, so
    the session cookie is scoped to the prefix and ``url_for`` outside a
    request (CLI commands, emails) produces prefixed URLs.
    """
    if not prefix:
        return app
    if app.config.get("APPLICATION_ROOT", "/") == "/":
        app.config["APPLICATION_ROOT"] = prefix
    outside = NotFound(f"The application on this server is served under {prefix}/.")
    return DispatcherMiddleware(outside, {prefix: app})


def build_wsgi_app(app: Flask, config: ServeConfig) -> WSGIApplication:
    """The full chain for ``config``."""
    wsgi_app = mount(app, config.url_prefix)
    if config.access_log and config.mode == "prod":
        # The dev server logs requests itself, in its own familiar format.
        wsgi_app = AccessLog(wsgi_app)
    return wsgi_app


class AccessLog:
    """Log one line per request, in the combined log format plus the duration.

    Used for every production server so the log reads the same whichever one
    runs (waitress has no access log at all). The line is written when the
    response has been sent, so the size and duration are the real ones.
    """

    def __init__(self, app: WSGIApplication, logger: logging.Logger = access_logger) -> None:
        self.app = app
        self.logger = logger

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self.logger.isEnabledFor(logging.INFO):
            return self.app(environ, start_response)
        started = time.perf_counter()
        status: list[str] = []

        def recording_start_response(s: str, headers: Any, exc_info: Any = None) -> Any:
            status[:] = [s]
            return start_response(s, headers, exc_info)

        body = self.app(environ, recording_start_response)
        return _LoggedBody(body, lambda size: self._log(environ, status, size, started))

    def _log(self, environ: WSGIEnvironment, status: list[str], size: int, started: float) -> None:
        path = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe="/;=,@:")
        if environ.get("QUERY_STRING"):
            path += "?" + environ["QUERY_STRING"]
        self.logger.info(
            '%s - %s [%s] "%s %s %s" %s %s "%s" "%s" %.6f',
            environ.get("REMOTE_ADDR", "-"),
            environ.get("REMOTE_USER") or "-",
            time.strftime("%d/%b/%Y:%H:%M:%S %z"),
            environ.get("REQUEST_METHOD", "-"),
            path,
            environ.get("SERVER_PROTOCOL", "-"),
            status[0].split(" ", 1)[0] if status else "-",
            size or "-",
            environ.get("HTTP_REFERER", "-"),
            environ.get("HTTP_USER_AGENT", "-"),
            time.perf_counter() - started,
        )


class _LoggedBody:
    """Wraps a response body to count its bytes and log when it is closed."""

    def __init__(self, body: Iterable[bytes], on_close: Any) -> None:
        self.body = body
        self.on_close = on_close
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.body:
            self.size += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.on_close(self.size)
