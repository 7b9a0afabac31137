"""Serve with gunicorn, embedded through ``gunicorn.app.base.BaseApplication``.

``BaseApplication`` (unlike ``Application``) does not parse ``sys.argv`` or
``GUNICORN_CMD_ARGS``. Every setting gunicorn would otherwise take from its
own defaults or the environment (``PORT``, ``WEB_CONCURRENCY``,
``FORWARDED_ALLOW_IPS``) is set explicitly here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from typing import TYPE_CHECKING, Any, cast

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.config import KNOWN_SETTINGS

from ..errors import ServeError
from . import GRACE_EXPIRED, check_server_options
from .gunicorn_wire import GatedWorker, GateLimits, on_the_wire

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from ..config import ServeConfig
    from ..lifecycle import Lifecycle
    from ..proxy import ProxyTrust

# gunicorn settings that our own options set, and hooks we rely on.
_OURS = {
    "bind": "--host/--port",
    "workers": "--workers",
    "threads": "--threads",
    "timeout": "--timeout",
    "graceful_timeout": "--graceful-timeout",
    "backlog": "--backlog",
    "max_requests": "--max-requests",
    "max_requests_jitter": "--max-requests-jitter",
    "accesslog": "--access-log-file",
    "keepalive": "--keepalive",
    "limit_request_line": "--max-request-line",
    "limit_request_fields": "--max-header-count",
    "limit_request_field_size": "--max-header-size",
    "forwarded_allow_ips": "--proxy",
    "secure_scheme_headers": "--proxy",
    "forwarder_headers": "--proxy",
    "post_fork": "@prodserve.worker_init",
    "post_worker_init": "@prodserve.worker_init",
    "when_ready": "@prodserve.on_start",
    "on_exit": "@prodserve.on_stop",
}


def settings(config: ServeConfig, fd: int, lifecycle: Lifecycle) -> dict[str, Any]:
    """The gunicorn settings for ``config``, serving the already-bound ``fd``."""
    return {
        "bind": [f"fd://{fd}"],
        "workers": config.workers,
        # gthread keeps connections alive, lets a worker's requests that wait
        # on I/O overlap, and (unlike sync) serves connections still queued in
        # the backlog on a graceful stop. CPU-bound throughput comes from workers.
        "worker_class": _ThreadWorker,
        "threads": config.threads,
        "timeout": config.timeout,
        "graceful_timeout": config.graceful_timeout,
        "keepalive": config.keepalive,
        "limit_request_line": config.max_request_line,
        "limit_request_fields": config.max_header_count,
        # Per field; the worker's header gate enforces the total.
        "limit_request_field_size": config.max_header_size,
        "backlog": config.backlog,
        "max_requests": config.max_requests,
        "max_requests_jitter": config.max_requests_jitter,
        # Our AccessLog middleware logs requests identically for every server.
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        # gunicorn >= 25.1 would open a control socket at a machine-wide path:
        # two instances (or parallel tests) would collide on it.
        "control_socket_disable": True,
        **_proxy_settings(config.proxy, h2c="http2_cleartext" in config.server_options),
        "proc_name": "flask-prodserve",
        "post_fork": _reset_stop_signals,
        "when_ready": lambda arbiter: lifecycle.run("on_start"),
        "post_worker_init": lambda worker: lifecycle.run("worker_init"),
        "on_exit": lambda arbiter: lifecycle.run("on_stop"),
        **config.server_options,
    }


def _proxy_settings(trust: ProxyTrust, *, h2c: bool = False) -> dict[str, Any]:
    """gunicorn's own handling of forwarded headers, for ``trust``.

    gunicorn would trust X-Forwarded-Proto (-Ssl, -Protocol) from loopback,
    and headers named SCRIPT_NAME or PATH_INFO that rewrite the path. Only
    the scheme is left to it, from trusted proxies; ForwardedHeaders
    (ProxyFix) applies the rightmost ``hops`` values of every forwarded
    header the same way under every server, and strips them otherwise.
    """
    if not trust.hops:
        # Every peer "trusted" to set nothing: the same as trusting none, but
        # gunicorn then skips parsing the peer's address for every request
        # (about 25 microseconds, measured). Not when the app enabled
        # cleartext HTTP/2, which gunicorn allows from trusted peers only.
        return {
            "forwarded_allow_ips": "" if h2c else "*",
            "secure_scheme_headers": {},
            "forwarder_headers": "",
        }
    return {
        "forwarded_allow_ips": ",".join(trust.addresses) or "*",
        "secure_scheme_headers": {"X-FORWARDED-PROTO": "https"},
        "forwarder_headers": "",
    }


def check_options(config: ServeConfig) -> None:
    check_server_options(config, {s.name for s in KNOWN_SETTINGS if s.name}, _OURS)


_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}


def _reset_stop_signals(arbiter: object, worker: object) -> None:
    """In a new worker: let a stop signal that arrived before it was booted end it.

    The master blocks stop signals around fork (see ``_Arbiter.spawn_worker``):
    a forked worker would otherwise inherit the master's handlers, which only
    queue the signal for the master's loop, and a SIGTERM arriving then would
    be lost, leaving the master to wait out the grace period for that worker.
    """
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # a pending one ends it now


# Workers report work they had to cut by writing to this pipe (made before fork).
_cut_reader, _cut_writer = -1, -1


# How long a stopping worker waits for the head of a request on a connection
# it holds (as gthread's STOP_KEEPALIVE_LINGER for kept-alive ones).
_STOP_LINGER = 2.0


class _ThreadWorker(GatedWorker):
    """gunicorn's gthread worker, with the header gate of :class:`GatedWorker`
    and a graceful stop that keeps its promises.

    On SIGTERM the stock worker stops polling its listener but keeps it open
    until it exits, so the kernel goes on queueing new connections that are
    then reset. This one first takes the connections already queued (those
    clients are owed an answer), then closes the listener so new ones are
    refused, and reports when the grace period ran out with requests in flight.
    """

    def init_process(self) -> None:
        config = cast(EmbeddedApplication, self.app).serve_config
        self.limits = GateLimits(config.header_timeout, config.max_header_size, config.timeout)
        super().init_process()

    stopping = False  # told to stop (SIGTERM), not just recycled (max_requests)

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.stopping = True
        super().handle_exit(sig, frame)

    def set_accept_enabled(self, enabled: bool | None) -> None:
        super().set_accept_enabled(enabled)
        if enabled or self.alive:
            return
        for listener in self.sockets:
            # Only when the whole server stops: a recycled worker leaves the
            # queued connections to the other workers (they accept with a
            # free thread) instead of taking them all on its way out.
            while self.stopping and self.accept_one(listener):  # False on EAGAIN
                pass
            listener.close()
        self.cap_waiting(time.monotonic() + _STOP_LINGER)

    def run(self) -> None:
        super().run()
        if self.nr_conns > 0 and _cut_writer >= 0:
            os.write(_cut_writer, b"x")


class _Arbiter(Arbiter):
    """Exits with GRACE_EXPIRED when stopping had to cut requests."""

    cut = False

    def spawn_worker(self) -> Any:
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            return super().spawn_worker()
        finally:  # in the master; the worker unblocks in _reset_stop_signals
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)

    def kill_workers(self, sig: int) -> None:
        if sig == signal.SIGKILL and self.WORKERS:
            self.cut = True  # workers that outlived the grace period
        super().kill_workers(sig)

    def stop(self, graceful: bool = True) -> None:
        super().stop(graceful)
        with contextlib.suppress(BlockingIOError):  # nothing written: nothing was cut
            self.cut = self.cut or bool(os.read(_cut_reader, 1))

    def halt(self, reason: str | None = None, exit_status: int = 0) -> None:
        try:
            super().halt(reason, exit_status)  # stops, then always sys.exit()
        except SystemExit as exc:
            if exc.code == 0 and self.cut:
                raise SystemExit(GRACE_EXPIRED) from None
            raise


class EmbeddedApplication(BaseApplication):
    """A gunicorn application whose settings and WSGI app are given, not read."""

    def __init__(
        self, wsgi_app: WSGIApplication, options: dict[str, Any], serve_config: ServeConfig
    ) -> None:
        self.wsgi_app = wsgi_app
        self.options = options
        self.serve_config = serve_config  # read by the workers
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:  # the stubs spell the WSGI type differently
        return self.wsgi_app

    def run(self) -> None:
        global _cut_reader, _cut_writer
        _cut_reader, _cut_writer = os.pipe()
        os.set_blocking(_cut_reader, False)
        _Arbiter(self).run()


def run(
    wsgi_app: WSGIApplication, sock: socket.socket, config: ServeConfig, lifecycle: Lifecycle
) -> int:
    master = os.getpid()
    try:
        # do_load_config turns a bad setting into print() + sys.exit(1).
        # gunicorn closes the listener itself, so it takes ownership of the fd.
        options = settings(config, sock.detach(), lifecycle)
        application = EmbeddedApplication(on_the_wire(wsgi_app), options, config)
    except SystemExit:
        raise ServeError("gunicorn refused its settings (see the message above).") from None
    try:
        application.run()  # the arbiter ends every path with sys.exit()
    except SystemExit as exc:
        if os.getpid() != master:
            raise  # a worker process is exiting: let it, without returning into the CLI
        return exc.code if isinstance(exc.code, int) else 1
    return 0
