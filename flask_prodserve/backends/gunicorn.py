"""Serve with gunicorn, embedded through ``gunicorn.app.base.BaseApplication``.

``BaseApplication`` (unlike ``Application``) does not parse ``sys.argv`` or
``GUNICORN_CMD_ARGS``. Every setting gunicorn would otherwise take from its
own defaults or the environment (``PORT``, ``WEB_CONCURRENCY``,
``FORWARDED_ALLOW_IPS``) is set explicitly here.

Only gunicorn's documented extension points are used here: the application
class, settings, server hooks and a worker class. The workers are ours
(:mod:`.gunicorn_worker`) when the installed gunicorn is one we tested
(:mod:`.gunicorn_names`), gunicorn's own ``gthread`` otherwise.

What the workers have to tell the master (a hook that failed, requests cut
at a stop, a new worker ready during a reload) comes back through a pipe
(:class:`.gunicorn_reload.Reports`). SIGHUP and the ``reload_file`` trigger
deploy new code one worker at a time (:mod:`.gunicorn_reload`).
"""

from __future__ import annotations

import os
import signal
import socket
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.config import KNOWN_SETTINGS
from gunicorn.errors import HaltServer

from .. import metrics
from ..errors import ServeError
from ..proxy import ProxyTrust
from ..reloading import OBJECT, AppLoader, Loaded
from . import GRACE_EXPIRED, Events, check_server_options, freeze_before_fork, sharing
from .balance import Board
from .gunicorn_names import networks_allowed, worker_fallback
from .gunicorn_reload import Reloader, Reports, worker_ready
from .headgate import GateLimits
from .sharing import Shares

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from ..config import ServeConfig
    from ..lifecycle import Lifecycle

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
    # The master keeps the workers' connection balance (.balance) with these.
    "pre_fork": "@prodserve.worker_init",
    "child_exit": "a @prodserve.on_stop hook",
    # The app is loaded before the fork already; gunicorn would also keep the
    # first generation's app for every worker forked after a reload.
    "preload_app": "the default (the app is loaded before the workers fork already)",
}
# Hooks the metrics need, reserved while metrics_path is set.
_METRICS_HOOKS = {
    "on_reload": "--metrics-path",
    "worker_exit": "--metrics-path",
}
_KNOWN = {s.name for s in KNOWN_SETTINGS if s.name}
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def settings(
    config: ServeConfig,
    fd: int,
    reloader: Reloader,
    report_fd: int,
    events: Events,
    board: Board | None = None,
) -> dict[str, Any]:
    """The gunicorn settings for ``config``, serving the already-bound ``fd``."""
    lifecycle = reloader.current.lifecycle  # on_start and on_stop: the first generation's
    options = {
        "bind": [f"fd://{fd}"],
        "workers": config.workers,
        "worker_class": _worker_class(config),
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
        **_proxy_settings(config.proxy, h2c="http2_cleartext" in config.server_options),
        "proc_name": "flask-prodserve",
        "post_fork": _stop_early,
        "when_ready": lambda arbiter: _when_ready(lifecycle, events, reloader),
        "pre_fork": lambda arbiter, worker: _pre_fork(config, reloader, board, worker),
        "post_worker_init": lambda worker: worker_ready(reloader, report_fd, worker),
        "on_exit": lambda arbiter: _on_exit(lifecycle, reloader),
        "child_exit": lambda arbiter, worker: _child_exit(config, board, worker),
    }
    if config.metrics_path:
        options["on_reload"] = lambda arbiter: metrics.reloaded()
        # In a worker, as it exits: its last requests go to the files.
        options["worker_exit"] = lambda arbiter, worker: metrics.worker_exiting()
    if "control_socket_disable" in _KNOWN:
        # gunicorn >= 25.1 would open a control socket at a machine-wide path:
        # two instances (or parallel tests) would collide on it.
        options["control_socket_disable"] = True
    return {**options, **config.server_options}


def _pre_fork(config: ServeConfig, reloader: Reloader, board: Board | None, worker: Any) -> None:
    """In the master, before it forks ``worker``."""
    reloader.pre_fork()  # not while new code is being imported
    worker.board_slot = board.reserve() if board is not None else None
    metrics.forking(config.workers)  # counts restarts
    freeze_before_fork()


def _child_exit(config: ServeConfig, board: Board | None, worker: Any) -> None:
    """In the master, once ``worker`` has exited (even by SIGKILL)."""
    slot = getattr(worker, "board_slot", None)
    if board is not None and slot is not None:
        board.release(slot)
    if config.metrics_path:
        # Take its in-flight and "alive" figures out of the sums.
        metrics.process_exited(worker.pid)


def _worker_class(config: ServeConfig) -> Any:
    """Our worker, or gunicorn's ``gthread`` (see :func:`.gunicorn_names.worker_fallback`)."""
    if worker_fallback(config.server_options) is not None:
        # gthread keeps connections alive and, on a graceful stop, serves
        # connections still queued in the backlog (sync drops them).
        return "gthread"
    from .gunicorn_worker import GatedWorker

    return GatedWorker


def _proxy_settings(trust: ProxyTrust, *, h2c: bool = False) -> dict[str, Any]:
    """gunicorn's own handling of forwarded headers, for ``trust``.

    gunicorn would trust X-Forwarded-Proto (-Ssl, -Protocol) from loopback,
    and headers named SCRIPT_NAME or PATH_INFO that rewrite the path. Only
    the scheme is left to it, from trusted proxies; ForwardedHeaders
    (ProxyFix) applies the rightmost ``hops`` values of every forwarded
    header the same way under every server, and strips them otherwise.
    """
    if trust.hops and not (networks_allowed() or all("/" not in a for a in trust.addresses)):
        # gunicorn < 24.1 takes no networks in forwarded_allow_ips: the scheme
        # is then left to ForwardedHeaders too, which applies X-Forwarded-Proto
        # from the same trusted peers.
        trust = ProxyTrust(0, ())
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
    ours = {**_OURS, **_METRICS_HOOKS} if config.metrics_path else _OURS
    check_server_options(config, _KNOWN, ours)


# Set in a worker process that got a stop signal before post_fork ran.
_stopped_before_post_fork: list[int] = []


def _stop_early(arbiter: Any, worker: Any) -> None:
    """In a new worker, until gunicorn installs the worker's own handlers: a
    stop signal ends the worker's loop as soon as it starts. (The handlers
    inherited from the master would only queue it for the master's loop, and
    the master would wait the whole grace period for this worker.)"""

    def stop(signum: int, frame: Any) -> None:
        worker.alive = False

    for sig in _STOP_SIGNALS:
        signal.signal(sig, stop)
    if _stopped_before_post_fork:  # between fork and here (see _when_ready)
        worker.alive = False


def _on_exit(lifecycle: Lifecycle, reloader: Reloader) -> None:
    reloader.stop()
    lifecycle.run("on_stop")


def _when_ready(lifecycle: Lifecycle, events: Events, reloader: Reloader) -> None:
    """In the master, once it listens with its signal handlers in place, and
    before any worker starts: announce stops, run on_start, then say it runs
    (a stop signal from someone who read "Running on" is always handled)."""
    stopping: list[str] = []  # the signals seen, in order
    master = os.getpid()

    def announce(previous: Any) -> Any:
        def handler(signum: int, frame: Any) -> None:
            if os.getpid() != master:
                # A worker just forked, before post_fork replaced this handler:
                # the signal is the worker's, and _stop_early acts on it.
                _stopped_before_post_fork.append(signum)
                return
            first = not stopping
            if signum == signal.SIGTERM and not first:
                # The same request again (GNU timeout signals the process and
                # then its group): the graceful stop goes on, said once.
                previous(signum, frame)
                return
            stopping.append(signal.Signals(signum).name)
            if signum == signal.SIGINT and first:
                signum = signal.SIGTERM  # a first Ctrl+C stops gracefully, as SIGTERM
            events.stopping(stopping[-1], signum == signal.SIGTERM)
            previous(signum, frame)

        return handler

    for sig in _STOP_SIGNALS:
        signal.signal(sig, announce(signal.getsignal(sig)))
    reloader.start()
    lifecycle.run("on_start")
    events.started()


class EmbeddedApplication(BaseApplication):
    """A gunicorn application whose settings are given, not read, and whose
    WSGI app is the generation the master forks its workers with."""

    def __init__(
        self,
        reloader: Reloader,
        options: dict[str, Any],
        gate_limits: GateLimits,
        report_fd: int,
        board: Board | None = None,
        shares: Shares | None = None,
    ) -> None:
        self.reloader = reloader
        self.options = options
        # Read by our workers:
        self.gate_limits = gate_limits
        self.report_fd = report_fd
        self.board = board
        self.shares = shares
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:  # in each worker, after the fork (preload_app is refused)
        return self.reloader.current.wsgi_app


def run(
    wsgi_app: WSGIApplication,
    sock: socket.socket,
    config: ServeConfig,
    lifecycle: Lifecycle,
    events: Events,
) -> int:
    master = os.getpid()
    read_fd, report_fd = os.pipe()
    os.set_blocking(read_fd, False)
    reports = Reports(read_fd)
    limits = GateLimits(
        config.header_timeout, config.max_header_size, config.timeout, config.max_body_size
    )
    first = Loaded(1, lifecycle.app, wsgi_app, lifecycle)
    loader = events.loader or AppLoader(OBJECT, config)
    reloader = Reloader(loader, first, config, events, reports)
    # Room for the workers gunicorn's TTIN signal (and reloads) may add.
    board = Board(max(64, 4 * config.workers), starting=config.workers)
    # Inboxes for the workers and for those a reload starts beside them.
    shared = config.share_connections and sharing.supported()
    shares = Shares(board, inboxes=2 * config.workers) if shared else None
    try:
        # do_load_config turns a bad setting into print() + sys.exit(1).
        # gunicorn closes the listener itself, so it takes ownership of the fd.
        options = settings(config, sock.detach(), reloader, report_fd, events, board)
        application = EmbeddedApplication(reloader, options, limits, report_fd, board, shares)
    except SystemExit:
        raise ServeError("gunicorn refused its settings (see the message above).") from None
    try:
        Arbiter(application).run()  # ends every path with sys.exit()
        status = 0
    except SystemExit as exc:
        if os.getpid() != master:
            raise  # a worker process is exiting: let it, without returning into the CLI
        status = exc.code if isinstance(exc.code, int) else 1
    except HaltServer as exc:  # a second worker failed to boot while the first one's halt ran
        status = exc.exit_status
    finally:
        reloader.stop()
        if shares is not None:
            shares.close()
    return _outcome(status, reports.rest())


def _outcome(status: int, reports: list[str]) -> int:
    """The exit status for how gunicorn ended, or the error that ended it."""
    hooks = [line.removeprefix("hook ") for line in reports if line.startswith("hook ")]
    if hooks:
        raise ServeError(hooks[0])
    if status == Arbiter.WORKER_BOOT_ERROR:
        raise ServeError("A gunicorn worker failed to boot (see gunicorn's error above).")
    if status == Arbiter.APP_LOAD_ERROR:
        raise ServeError("A gunicorn worker could not load the app (see the error above).")
    if status != 0:
        raise ServeError(f"gunicorn stopped with exit status {status} (see its log above).")
    return GRACE_EXPIRED if "cut" in reports else 0
