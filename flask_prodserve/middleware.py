"""Build the WSGI application that the server runs.

The chain, outermost first:
:class:`~flask_prodserve.proxy.ForwardedHeaders` (so everything after it sees
the real client) -> :class:`HealthCheck` (cheap, never logged) ->
:class:`~flask_prodserve.metrics.Metrics` (answers the metrics path, never
logged, and measures every other request) -> :class:`AccessLog` (so that
requests outside the prefix are logged too) ->
:class:`~flask_prodserve.bodylimit.BodyLimit` ->
:class:`~werkzeug.middleware.dispatcher.DispatcherMiddleware`
mounting the Flask app at ``url_prefix`` (a 404 outside it) -> in production,
the static files (:func:`~flask_prodserve.staticfiles.static_layer`) -> the
Flask app.

Mounting is done here, not by the server, because waitress and gunicorn
mount prefixes differently (waitress serves paths outside the prefix,
gunicorn answers them with a 500 and matches ``/appx`` to ``/app``); the
same middleware behaves identically under every server.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from .bodylimit import BodyLimit
from .clock import EverySecond
from .logbuffer import direct_handler
from .metrics import STARTED, Metrics, watch_routes
from .proxy import ForwardedHeaders
from .responses import ObservedBody, plain_response
from .staticfiles import static_layer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask

    from .config import ServeConfig
    from .lifecycle import Lifecycle
    from .prometheus import Recorder

access_logger = logging.getLogger("flask_prodserve.access")


def mount(app: Flask, prefix: str, *, static_files: bool = False) -> WSGIApplication:
    """Serve ``app`` under ``prefix`` (already normalised; ``""`` = the root),
    with its static folders in front of it if ``static_files``.

    ``APPLICATION_ROOT`` follows the prefix unless the app set its own, so
    the session cookie is scoped to the prefix and ``url_for`` outside a
    request in the serving process (background work, emails) produces
    prefixed URLs.
    """
    served: WSGIApplication = static_layer(app) if static_files else app
    if not prefix:
        return served
    if app.config.get("APPLICATION_ROOT", "/") == "/":
        app.config["APPLICATION_ROOT"] = prefix
    outside = NotFound(f"The application on this server is served under {prefix}/.")
    return DispatcherMiddleware(outside, {prefix: served})


def build_wsgi_app(
    app: Flask,
    config: ServeConfig,
    lifecycle: Lifecycle,
    recorder: Recorder | None = None,
    *,
    generation: int = 1,
) -> WSGIApplication:
    """The full chain for ``config``; ``recorder`` holds the metrics when they
    are on; ``generation`` numbers the app's loads (the access log shows it)."""
    static_files = config.static_files and config.mode == "prod"
    wsgi_app: WSGIApplication = BodyLimit(
        mount(app, config.url_prefix, static_files=static_files), config.max_body_size
    )
    if config.access_log and config.mode == "prod":
        # The dev server logs requests itself, in its own familiar format.
        wsgi_app = AccessLog(wsgi_app, config.access_log_format, generation=generation)
    if recorder is not None:
        watch_routes(app)
        wsgi_app = Metrics(wsgi_app, config.metrics_path, config.metrics_allow, recorder)
    if config.health_path:
        # Outside the access log: probes every few seconds would drown it.
        wsgi_app = HealthCheck(wsgi_app, config.health_path, lifecycle.is_ready)
    return ForwardedHeaders(wsgi_app, config.proxy)


class HealthCheck:
    """Answer ``path`` with 200 and ``path/ready`` with the readiness checks'
    verdict (200 or 503), before the prefix mount and without touching the app."""

    def __init__(self, app: WSGIApplication, path: str, is_ready: Callable[[], bool]) -> None:
        self.app = app
        self.path = path
        self.ready_path = path + "/ready"
        self.is_ready = is_ready

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == self.path:
            return plain_response(start_response, "200 OK", b"ok\n")
        if path == self.ready_path:
            if self.is_ready():
                return plain_response(start_response, "200 OK", b"ready\n")
            return plain_response(start_response, "503 Service Unavailable", b"not ready\n")
        return self.app(environ, start_response)


class AccessLog:
    """Log one line per request: the combined log format plus the seconds
    taken, one JSON object, or the user's ``{field}`` template.

    Used for every production server so the log reads the same whichever one
    runs (waitress has no access log at all). The line is written when the
    response has been sent, so the size and duration are the real ones.

    A body that is the server's ``wsgi.file_wrapper`` (a static file) reaches
    the server as it is, so that gunicorn still sends it with ``sendfile`` and
    waitress from the file: its ``close``, which the server calls once the
    file is sent, writes the line, with the size from ``Content-Length``.
    """

    def __init__(
        self,
        app: WSGIApplication,
        fmt: str = "combined",
        logger: logging.Logger = access_logger,
        *,
        generation: int = 1,
    ) -> None:
        self.app = app
        self.logger = logger
        self.fmt = fmt
        self.generation = generation  # which load of the app serves (see reloading)
        #: Called with ``(environ, status line, size, started)`` for every
        #: request, logged or not: the metrics share this measurement.
        self.observers: list[Callable[[WSGIEnvironment, str, int, float], None]] = []

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        logging_on = self.logger.isEnabledFor(logging.INFO)
        if not logging_on and not self.observers:
            return self.app(environ, start_response)
        # The instant the metrics middleware saw the request, when it runs.
        started = environ.get(STARTED) or time.perf_counter()
        status: list[str] = []

        sent_headers: list[Any] = []

        def recording_start_response(s: str, headers: Any, exc_info: Any = None) -> Any:
            status[:] = [s]
            sent_headers[:] = [headers]
            return start_response(s, headers, exc_info)

        body = self.app(environ, recording_start_response)

        def done(size: int) -> None:
            status_line = status[0] if status else "-"  # "-": the response never started
            try:
                if logging_on:
                    self._log(environ, status_line, size, started)
            finally:
                for observer in self.observers:
                    observer(environ, status_line, size, started)

        wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(wrapper, type) and isinstance(body, wrapper):
            size = _content_length(sent_headers[0] if sent_headers else [])
            if log_at_close(body, lambda: done(size)):
                return body
        return ObservedBody(body, done)

    def _log(self, environ: WSGIEnvironment, status_line: str, size: int, started: float) -> None:
        if self.fmt == "combined":
            line = combined_line(environ, status_line, size, started, self.generation)
        else:
            fields = access_fields(environ, status_line, size, started, self.generation)
            if self.fmt == "json":
                line = json.dumps(fields, separators=(",", ":"))
            else:
                line = self.fmt.format_map(fields)
        handler = direct_handler(self.logger)
        if handler is None:
            self.logger.info(line)
        else:
            handler.write_line(line)


def log_at_close(body: Any, on_close: Callable[[], None]) -> bool:
    """Make ``body.close()`` call ``on_close`` after closing ``body``, keeping
    ``body`` itself (and so its class); ``False`` if its attributes are fixed."""
    close = getattr(body, "close", None)
    logged: list[bool] = []

    def close_and_log() -> None:
        try:
            if close is not None:
                close()
        finally:
            if not logged:  # once, should a server close it twice
                logged.append(True)
                on_close()

    try:
        body.close = close_and_log
    except AttributeError:  # __slots__: no attribute of its own
        return False
    return True


def _content_length(headers: Any) -> int:
    """The response's ``Content-Length``, 0 if it has none."""
    for name, value in headers:
        if name.lower() == "content-length" and value.isdigit():
            return int(value)
    return 0


_LOG_TIME = "%d/%b/%Y:%H:%M:%S %z"  # the combined log format's
_log_time = EverySecond(lambda second: time.strftime(_LOG_TIME, time.localtime(second)))


def combined_line(
    environ: WSGIEnvironment, status: str, size: int, started: float, generation: int = 1
) -> str:
    """The default line: the combined log format, then the seconds taken and
    the generation of the app that served (a reload makes a new one).

    Written out rather than made from :func:`access_fields` with a template:
    one f-string costs about 12 microseconds a request less under load
    (measured in-process), and this line is written for every request.
    """
    get = environ.get
    return (
        f"{get('REMOTE_ADDR') or '-'} - {get('REMOTE_USER') or '-'} "
        f"[{_log_time()}] "
        f'"{get("REQUEST_METHOD") or "-"} {_request_path(environ)} '
        f'{get("SERVER_PROTOCOL") or "-"}" {_status_code(status)} {size} '
        f'"{get("HTTP_REFERER") or "-"}" "{get("HTTP_USER_AGENT") or "-"}" '
        f"{time.perf_counter() - started:.6f} {generation}"
    )


def access_fields(
    environ: WSGIEnvironment, status: str, size: int, started: float, generation: int = 1
) -> dict[str, Any]:
    """The values an access-log line can show (see :data:`ACCESS_LOG_FIELDS`)."""
    now = time.time()
    return {
        "remote_addr": environ.get("REMOTE_ADDR", ""),
        "remote_user": environ.get("REMOTE_USER", ""),
        "time": _log_time(int(now)),
        "timestamp": round(now, 6),
        "method": environ.get("REQUEST_METHOD", ""),
        "path": _request_path(environ),
        "protocol": environ.get("SERVER_PROTOCOL", ""),
        "status": _status_code(status),
        "size": size,
        "referer": environ.get("HTTP_REFERER", ""),
        "user_agent": environ.get("HTTP_USER_AGENT", ""),
        "duration": time.perf_counter() - started,
        "generation": generation,
    }


def _request_path(environ: WSGIEnvironment) -> str:
    """The full path asked for, with its query string, quoted as on the wire."""
    path = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe="/;=,@:")
    query = environ.get("QUERY_STRING")
    return f"{path}?{query}" if query else path


def _status_code(status: str) -> int | str:
    """``200`` for ``"200 OK"``; ``"-"`` (no response started) as it is."""
    return int(status.split(" ", 1)[0]) if status[:3].isdigit() else status
