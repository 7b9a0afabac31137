"""Serve with waitress through its public API (``create_server``).

waitress has no graceful shutdown of its own: on SIGTERM its loop ends and
in-flight requests die. :func:`run` therefore drives the loop itself, and on
the first SIGTERM or Ctrl+C it takes the connections the kernel has already
queued, stops listening (new connections are refused), lets every request in
flight finish within ``graceful_timeout``, then stops. A second signal stops
at once. The loop also applies the header deadline and keep-alive limit of
:mod:`.waitress_http`, whose stricter parser the server uses.

On POSIX every waitress process is a worker of :mod:`.waitress_supervisor`,
which replaces crashed, hung and recycled workers and reloads on SIGHUP;
where there is no ``fork`` (Windows) one process serves alone.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.utilities import queue_logger

from .. import metrics
from ..reloading import Loaded
from ..swapping import serving_alone
from . import GRACE_EXPIRED, Events, check_server_options
from .waitress_http import channel_class, check_deadlines

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from ..config import ServeConfig
    from ..lifecycle import Lifecycle
    from ..proxy import ProxyTrust

# waitress options that our own options set (the socket is passed separately).
_OURS = {
    "threads": "--threads",
    "channel_timeout": "--timeout",
    "cleanup_interval": "--timeout",
    "backlog": "--backlog",
    "max_request_header_size": "--max-header-size",
    "max_request_body_size": "--max-body-size",
    "trusted_proxy": "--proxy",
    "trusted_proxy_count": "--proxy",
    "trusted_proxy_headers": "--proxy",
    "clear_untrusted_proxy_headers": "--proxy",
    "log_untrusted_proxy_headers": "--proxy",
    "url_prefix": "--url-prefix",
    "host": "--host",
    "port": "--port",
    "listen": "--host/--port",
    "sockets": "--host/--port",
    "unix_socket": "--host/--port",
}


def adjustments(config: ServeConfig) -> dict[str, Any]:
    """The waitress options for ``config``."""
    return {
        "threads": config.threads,
        # Inactivity limit, e.g. for a body that stops arriving; checked every
        # second rather than waitress's default 30.
        "channel_timeout": config.timeout,
        "cleanup_interval": 1,
        "backlog": config.backlog,
        # waitress refuses a size equal to its limit; ours is the largest accepted.
        "max_request_header_size": config.max_header_size + 1,
        "max_request_body_size": config.max_body_size + 1,
        # Prefix mounting is ours (the same under every server); waitress's own
        # url_prefix would also serve paths outside the prefix.
        "url_prefix": "",
        "expose_tracebacks": False,  # never show tracebacks to clients
        # waitress's default of 100 open connections lets 100 slow clients
        # hold every slot until the header deadline; connections are cheap
        # here (one event loop), threads are what is scarce.
        "connection_limit": 1000,
        "ident": "waitress",
        **proxy_adjustments(config.proxy),
        **config.server_options,
    }


def proxy_adjustments(proxy: ProxyTrust) -> dict[str, Any]:
    """waitress's forwarded-header options for ``proxy``.

    Forwarded headers are applied by our ForwardedHeaders middleware, one
    implementation for every server: waitress's ``trusted_proxy`` takes a
    single address (not a list or a network), and it would rewrite
    REMOTE_ADDR before the middleware could check the real peer against
    ``proxy.addresses``. waitress's own clearing stays off too: the
    middleware removes every forwarded header from an untrusted peer
    (waitress would leave X-Forwarded-Prefix), and it can only log its hint
    ("serve with --proxy 1") if it sees them.
    """
    return {"trusted_proxy": None, "clear_untrusted_proxy_headers": False}


def check_options(config: ServeConfig) -> None:
    # waitress declares its options in one table, Adjustments._params (the
    # source of its own docs and command line); it has no public accessor.
    known = {name for name, _ in getattr(Adjustments, "_params")}  # noqa: B009
    check_server_options(config, known, _OURS)


class _StopRequest:
    """Signal handler: the first signal asks for a graceful stop; a SIGTERM
    after it is the same request again; a SIGINT after it is Ctrl+C pressed
    again (``escalate``: stop at once) or, in a supervised worker, the same
    request again."""

    def __init__(self, server: Any, events: Events, escalate: bool = True) -> None:
        self.server = server
        self.events = events
        self.escalate = escalate
        self.requested = False

    def __call__(self, signum: int, frame: object) -> None:
        if self.requested and signum == signal.SIGTERM:
            return  # the same request again (GNU timeout signals the process, then its group)
        self.events.stopping(signal.Signals(signum).name, not self.requested)
        if self.requested and self.escalate:
            raise KeyboardInterrupt
        self.requested = True
        self.server.pull_trigger()  # wake the loop now rather than at its next timeout


def _stop_now(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _nothing() -> None:
    pass


def _not_stopping(signame: str, graceful: bool) -> None:
    pass


@dataclass
class Role:
    """What a serving process does around waitress's loop: serve alone, or
    as one worker of a supervisor (``supervised``)."""

    #: With the waitress server, once the signal handlers are in place,
    #: before the loop; may raise.
    begin: Callable[[Any], None]
    #: Once the server has closed.
    end: Callable[[], None] = _nothing
    #: Every loop iteration (at most ``_TICK`` apart); True asks for a
    #: graceful stop (a worker whose supervisor is gone).
    tick: Callable[[], bool] = lambda: False
    #: A worker leaves stopping to its supervisor: a second SIGTERM does not
    #: cut requests (SIGQUIT does), and Ctrl+C goes to the parent only.
    supervised: bool = False
    events: Events = field(default_factory=lambda: Events(_nothing, _not_stopping))


def run(
    wsgi_app: WSGIApplication,
    sock: socket.socket,
    config: ServeConfig,
    lifecycle: Lifecycle,
    events: Events,
) -> int:
    if hasattr(os, "fork"):
        from .waitress_supervisor import supervise

        return supervise(wsgi_app, sock, config, lifecycle, events)

    # One process: a reload (reload_file) swaps the app in it (see swapping).
    first = Loaded(1, lifecycle.app, wsgi_app, lifecycle)
    app, watcher = serving_alone(first, events.loader, config, events.reload_note)

    def begin(server: Any) -> None:
        lifecycle.run("on_start")
        lifecycle.run("worker_init")
        metrics.worker_started()
        if watcher is not None:
            watcher.start()
        events.started()  # with the signal handlers in place: a stop is always handled

    def end() -> None:
        if watcher is not None:
            watcher.stop()
        lifecycle.run("on_stop")

    alone = Role(begin, end, events=events)
    return serve(app, sock, config, alone)


def serve(wsgi_app: WSGIApplication, sock: socket.socket, config: ServeConfig, role: Role) -> int:
    """Serve on ``sock`` until a stop signal; 0, or GRACE_EXPIRED if requests were cut."""
    server: Any = create_server(wsgi_app, sockets=[sock], **adjustments(config))
    server.channel_class = channel_class(config)  # before the loop accepts anyone
    queue_logger.addFilter(_EVERY_10_SECONDS)
    stop = _StopRequest(server, role.events, escalate=not role.supervised)
    signal.signal(signal.SIGTERM, stop)
    if role.supervised:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGQUIT, _stop_now)
    else:
        signal.signal(signal.SIGINT, stop)
    if config.workers == 1:  # the figures describe this process only
        _watch_threads(server.task_dispatcher)
    try:
        role.begin(server)
    except BaseException:
        wasyncore.close_all(server._map)
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        raise
    try:
        deadlines = _Deadlines(server)
        while not stop.requested:
            wasyncore.loop(timeout=_TICK, map=server._map, use_poll=True, count=1)
            deadlines.check()
            if role.tick():
                stop.requested = True
        finished = _drain(server, config.graceful_timeout, deadlines)
    except KeyboardInterrupt:
        finished = False
    finally:
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        wasyncore.close_all(server._map)
        role.end()
    return 0 if finished else GRACE_EXPIRED


def _watch_threads(dispatcher: Any) -> None:
    """Report busy threads and queued requests to the metrics. waitress's task
    dispatcher documents neither ``active_count`` nor ``queue`` (both plain
    attributes since waitress 1.0): read them only if present."""
    if hasattr(dispatcher, "active_count") and hasattr(dispatcher, "queue"):
        metrics.watch_threads(lambda: (dispatcher.active_count, len(dispatcher.queue)))


class _Every:
    """A logging filter that lets one record through per ``seconds``.

    waitress warns "Task queue depth is N" for every request that waits for
    a thread: thousands of lines a second under load. One now and then still
    says that all threads are busy.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.next = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now < self.next:
            return False
        self.next = now + self.seconds
        return True


_EVERY_10_SECONDS = _Every(10.0)

# Seconds between deadline checks, and the longest the loop waits for an event.
_TICK = 0.5


class _Deadlines:
    """Apply the connections' deadlines at most every ``_TICK`` seconds (cheap when not due)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.due = 0.0

    def check(self) -> None:
        now = time.time()  # waitress's clock
        if now >= self.due:
            self.due = now + _TICK
            check_deadlines(self.server, now)


def _drain(server: Any, grace: float, deadlines: _Deadlines) -> bool:
    """Serve what is queued and in flight, without accepting more; True when done in time."""
    while True:  # accept what the kernel already queued: those clients were promised a reply
        before = len(server._map)
        server.handle_accept()
        if len(server._map) == before:
            break
    server.accepting = False
    server.del_channel()
    server.socket.close()  # from here on, new connections are refused
    deadline = time.monotonic() + grace
    while True:
        channels = [c for c in list(server._map.values()) if isinstance(c, HTTPChannel)]
        now = time.time()  # waitress's clock
        busy = [c for c in channels if _busy(c, now)]
        for channel in channels:
            if channel not in busy:
                channel.handle_close()  # idle keep-alive connection
        if not busy:
            return True
        if time.monotonic() >= deadline:
            return False
        wasyncore.loop(timeout=0.05, map=server._map, use_poll=True, count=1)
        deadlines.check()  # a client still sending its headers gets no extra time


#: Seconds a new connection has to send its first request while the server
#: drains: its client connected to send one (the supervisor drains workers
#: under a steady stream of new connections).
_FIRST_REQUEST = 1.0


def _busy(channel: Any, now: float) -> bool:
    """A request is being received, run or sent on this connection, or is
    about to arrive on a new one."""
    if channel.requests or channel.request is not None or channel.total_outbufs_len:
        return True
    if not getattr(channel, "served_at", True) and now - channel.last_activity < _FIRST_REQUEST:
        return True
    try:  # bytes waiting unread: a request that has arrived but is not parsed yet
        return bool(channel.socket.recv(1, socket.MSG_PEEK))
    except OSError:  # nothing to read (BlockingIOError) or a broken connection
        return False
