"""Serve with gunicorn, embedded through ``gunicorn.app.base.BaseApplication``.

``BaseApplication`` (unlike ``Application``) does not parse ``sys.argv`` or
``GUNICORN_CMD_ARGS``. Every setting gunicorn would otherwise take from its
own defaults or the environment (``PORT``, ``WEB_CONCURRENCY``,
``FORWARDED_ALLOW_IPS``) is set explicitly here.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication

from ..errors import ServeError

if TYPE_CHECKING:
    import socket

    from _typeshed.wsgi import WSGIApplication

    from ..config import ServeConfig


def settings(config: ServeConfig, fd: int) -> dict[str, Any]:
    """The gunicorn settings for ``config``, serving the already-bound ``fd``."""
    return {
        "bind": [f"fd://{fd}"],
        "workers": config.workers,
        # gthread keeps connections alive and lets a worker's requests that
        # wait on I/O overlap; CPU-bound throughput comes from the workers.
        "worker_class": "gthread",
        "threads": config.threads,
        "timeout": config.timeout,
        "graceful_timeout": 30,
        "keepalive": 5,
        "backlog": config.backlog,
        # Our AccessLog middleware logs requests identically for every server.
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        # gunicorn >= 25.1 would open a control socket at a machine-wide path:
        # two instances (or parallel tests) would collide on it.
        "control_socket_disable": True,
        # gunicorn trusts X-Forwarded-Proto from loopback by default; trust nobody.
        "forwarded_allow_ips": "",
        "proc_name": "flask-prodserve",
        "post_fork": _reset_stop_signals,
    }


def _reset_stop_signals(arbiter: object, worker: object) -> None:
    """Let a stop signal that reaches a worker before it is booted end it.

    A forked worker inherits the master's handlers, which only queue the
    signal for the master's loop; a SIGTERM arriving in that window is lost
    and the master then waits the whole grace period for the worker.
    """
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


class EmbeddedApplication(BaseApplication):
    """A gunicorn application whose settings and WSGI app are given, not read."""

    def __init__(self, wsgi_app: WSGIApplication, options: dict[str, Any]) -> None:
        self.wsgi_app = wsgi_app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:  # the stubs spell the WSGI type differently
        return self.wsgi_app


def run(wsgi_app: WSGIApplication, sock: socket.socket, config: ServeConfig) -> int:
    master = os.getpid()
    try:
        # do_load_config turns a bad setting into print() + sys.exit(1).
        # gunicorn closes the listener itself, so it takes ownership of the fd.
        application = EmbeddedApplication(wsgi_app, settings(config, sock.detach()))
    except SystemExit:
        raise ServeError("gunicorn refused its settings (see the message above).") from None
    try:
        application.run()  # the arbiter ends every path with sys.exit()
    except SystemExit as exc:
        if os.getpid() != master:
            raise  # a worker process is exiting: let it, without returning into the CLI
        return exc.code if isinstance(exc.code, int) else 1
    return 0
