"""Prometheus metrics, exact across every worker process, on every backend.

With ``metrics_path`` set, :func:`start` (in the process that binds the socket,
before gunicorn forks) makes a fresh directory for ``prometheus_client``'s
multiprocess mode and the metrics in it; every worker writes its own files
there, and a scrape adds them up (:mod:`flask_prodserve.prometheus`). The
directory is removed by :func:`stop` when the server exits.

:class:`Metrics` sits in the WSGI chain just inside the health check: it
answers ``metrics_path`` itself (outside the app and the URL prefix, never in
the access log, never counted) and records every other request from the
instant it arrives to the last byte handed to the server, the span the access
log reports (the start instant is shared through the environ, :data:`STARTED`).

The route label is the rule Flask matched (``/item/<int:n>``), noted in the
environ (:data:`ROUTE`) by the app's first ``before_request`` function, which
Flask calls for every request once its URL is matched, before any other can
answer it (:func:`watch_routes`; the request object itself is gone from the
environ once the app returns). Paths no rule matches share the label ``""``.

Each process counts its requests in memory and publishes them in batches
(:mod:`flask_prodserve.tally`).

``prometheus_client`` is imported only when metrics are on.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from flask import request

from .responses import ObservedBody, plain_response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask

    from .config import ServeConfig
    from .converters import Networks
    from .prometheus import Recorder

#: The environ key holding ``time.perf_counter()`` when the request arrived.
STARTED = "flask_prodserve.started"
#: The environ key holding the URL rule that matched.
ROUTE = "flask_prodserve.route"

_recorder: Recorder | None = None


def available() -> bool:
    """Whether ``prometheus_client`` can be imported (without importing it)."""
    return importlib.util.find_spec("prometheus_client") is not None


def start(config: ServeConfig) -> Recorder | None:
    """In the serving (master) process: the metrics for this run, or None when off."""
    global _recorder
    if not config.metrics_path:
        return None
    from .prometheus import Recorder

    _recorder = Recorder(threads=config.threads)
    return _recorder


def stop() -> None:
    """Remove this run's metrics files (only in the process that made them)."""
    global _recorder
    if _recorder is not None and _recorder.owner == os.getpid():
        _recorder.close()
        _recorder = None


# What the backends report; each does nothing while metrics are off.


def worker_started() -> None:
    """In a worker process, once it is ready to serve."""
    if _recorder is not None:
        _recorder.workers.set(1)


def worker_exiting() -> None:
    """In a worker process (gunicorn's or waitress's), as it exits: publish
    what it has not yet."""
    if _recorder is not None:
        _recorder.tally.publish()


def forking(workers: int) -> None:
    """In gunicorn's master, before each fork: past the first ``workers``, a restart."""
    if _recorder is not None:
        _recorder.forked(workers)


def process_exited(pid: int) -> None:
    """In gunicorn's master, when worker ``pid`` has exited."""
    if _recorder is not None:
        _recorder.process_exited(pid)


def reloaded() -> None:
    """In gunicorn's master, on a reload (SIGHUP)."""
    if _recorder is not None:
        _recorder.reloads.inc()


def watch_threads(busy: Callable[[], tuple[int, int]]) -> None:
    """A one-process server tells how many threads are busy and requests queued."""
    if _recorder is not None:
        _recorder.threads_busy = busy


class Metrics:
    """Answer ``path`` with the metrics (to clients in ``allow``, if given; 404
    to others) and record every other request.

    When ``app`` is the access log, the request is recorded with the access
    log's own measurement (its ``observers``) rather than measured twice.
    """

    def __init__(
        self, app: WSGIApplication, path: str, allow: Networks, recorder: Recorder
    ) -> None:
        self.app = app
        self.path = path
        self.networks = tuple(ipaddress.ip_network(a, strict=False) for a in allow)
        self.recorder = recorder
        observers = getattr(app, "observers", None)
        self.observed = isinstance(observers, list)
        if self.observed:
            observers.append(self._record)  # type: ignore[union-attr]

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == self.path:
            return self._scrape(environ, start_response)
        started = environ[STARTED] = perf_counter()
        self.recorder.enter()
        if self.observed:
            try:
                return self.app(environ, start_response)
            except BaseException:
                self._record(environ, "500", 0, started)  # the server answers 500
                raise
        status: list[str] = []

        def recording_start_response(s: str, headers: Any, exc_info: Any = None) -> Any:
            status[:] = [s]
            return start_response(s, headers, exc_info)

        try:
            body = self.app(environ, recording_start_response)
        except BaseException:
            self._record(environ, "500", 0, started)
            raise
        return ObservedBody(
            body, lambda size: self._record(environ, status[0] if status else "-", size, started)
        )

    def _record(self, environ: WSGIEnvironment, status: str, size: int, started: float) -> None:
        duration = perf_counter() - started
        rec = self.recorder
        rec.in_flight.pop()
        length = environ.get("CONTENT_LENGTH")
        rec.tally.record(
            (
                environ.get("REQUEST_METHOD", ""),
                status[:3],
                environ.get(ROUTE, ""),
                duration,
                int(length) if length and length.isdigit() else 0,
                size,
            )
        )

    def _scrape(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        if self.networks and not _allowed(environ.get("REMOTE_ADDR", ""), self.networks):
            return plain_response(start_response, "404 Not Found", b"not found\n")
        body, content_type = self.recorder.exposition()
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ]
        start_response("200 OK", headers)
        return [body]


def watch_routes(app: Flask) -> None:
    """Have ``app`` note the rule each request matched, once per app.

    A ``before_request`` function put first in the app's list, a common idiom
    (the decorator would append it, after functions of the app's that may
    answer the request themselves); it works for an app that has served
    requests too. Measured (timeit, Flask 3.1): 0.7 microseconds a request,
    where a URL value preprocessor, which Flask calls with the endpoint and
    view arguments looked up through the request proxy, cost 2.1.
    """
    first = app.before_request_funcs.setdefault(None, [])
    if _note_route not in first:
        first.insert(0, _note_route)


def _note_route() -> None:
    req = request._get_current_object()  # type: ignore[attr-defined]
    rule = req.url_rule
    if rule is not None:
        req.environ[ROUTE] = rule.rule


def _allowed(peer: str, networks: tuple[Any, ...]) -> bool:
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in networks)
