"""One worker process of :mod:`.waitress_supervisor`: what it runs after fork,
and the one-line messages it writes to its parent on a pipe:

============== =============================================================
``ready``      it serves: worker_init ran (and, in a reload, its readiness
               check passed), waitress listens; its loop starts next
``beat``       it makes progress (sent every half second): a thread is free,
               or a new request started since the last beat. A worker silent
               for ``timeout`` seconds is hung (every thread stuck on the
               same requests, or its loop blocked) and is killed.
``recycle``    it has started ``max_requests`` requests: the parent starts a
               replacement, then stops this one
``cut``        a stop cut requests in flight
``fail MSG``   it could not start: a worker_init hook raised, or (in a reload)
               its readiness check failed
============== =============================================================
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any, NoReturn

from .. import metrics
from ..errors import ProdServeError
from ..loaderrors import one_line
from ..reloading import answers
from .waitress import Role, serve

if TYPE_CHECKING:
    import socket

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..config import ServeConfig
    from ..reloading import Loaded

READY, BEAT, RECYCLE, CUT, FAIL = "ready", "beat", "recycle", "cut", "fail"

#: Seconds between beats.
BEAT_EVERY = 0.5

#: Signals the parent handles; it blocks them around ``fork``.
PARENT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


def work(
    loaded: Loaded,
    trial: bool,
    sock: socket.socket,
    config: ServeConfig,
    report_fd: int,
    max_requests: int,
) -> NoReturn:
    """In a just-forked child (with the parent's signals blocked): serve
    ``loaded`` until told to stop, then exit; never returns into the caller.

    A worker on ``trial`` (a reload's) must also answer its own readiness
    check (:func:`~flask_prodserve.reloading.answers`) before it reports ready.
    """
    status = 1
    link = _Link(report_fd, os.getppid(), config.threads, max_requests)
    try:
        _take_signals()

        def begin(server: Any) -> None:
            loaded.lifecycle.run("worker_init")
            problem = answers(loaded, loaded.wsgi_app, config.health_path) if trial else ""
            if problem:
                raise _NotReady(problem)
            metrics.worker_started()
            link.dispatcher = server.task_dispatcher
            link.send(READY)  # the loop starts next, on a socket already listening

        role = Role(begin, tick=link.tick, supervised=True)
        status = serve(link.counting(loaded.wsgi_app), sock, config, role)
        if status:
            link.send(CUT)
    except BaseException as exc:
        why = str(exc) if isinstance(exc, ProdServeError) else one_line(exc)
        if trial:
            why = f"a new worker (pid {os.getpid()}) was not ready: {why}"
        link.send(f"{FAIL} {why}")
    finally:
        metrics.worker_exiting()  # its last requests, before os._exit skips every handler
        logging.shutdown()  # writes the access lines still pending
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(status)


class _NotReady(ProdServeError):
    """A reload's new worker did not pass its readiness check."""


def _take_signals() -> None:
    """This process's own signal handling, in place of the parent's."""
    signal.set_wakeup_fd(-1)  # the parent's wake-up pipe is not ours to write to
    for sig in PARENT_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)  # a SIGTERM before serve() ends the boot
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C: the parent passes it on
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload is the parent's
    signal.pthread_sigmask(signal.SIG_UNBLOCK, PARENT_SIGNALS)


class _Link:
    """The pipe to the parent, and what the worker counts to fill it."""

    def __init__(self, fd: int, parent: int, threads: int, max_requests: int) -> None:
        os.set_blocking(fd, False)  # serving never waits for the parent
        self.fd = fd
        self.parent = parent
        self.threads = threads
        self.limit = max_requests  # 0: never recycle
        self.requests = itertools.count(1)  # next() is atomic: no lock per request
        self.started = 0  # requests started so far (as of the latest one)
        self.seen = -1  # ``started`` at the previous beat
        self.dispatcher: Any = None  # waitress's task dispatcher, once serving
        self.due = 0.0

    def send(self, message: str) -> None:
        # A full pipe (the parent is busy) or a gone parent: serving goes on.
        with contextlib.suppress(OSError):
            os.write(self.fd, message.encode(errors="replace") + b"\n")

    def counting(self, app: WSGIApplication) -> WSGIApplication:
        """``app``, counting the requests it starts."""

        def counted(environ: WSGIEnvironment, start_response: StartResponse) -> Any:
            self.started = n = next(self.requests)
            if n == self.limit:
                self.send(RECYCLE)
            return app(environ, start_response)

        return counted

    def tick(self) -> bool:
        """From the serving loop: beat, or True when the parent is gone."""
        now = time.monotonic()
        if now < self.due:
            return False
        self.due = now + BEAT_EVERY
        if os.getppid() != self.parent:
            return True  # orphaned (the parent was killed): stop gracefully
        if self.started != self.seen or not self._all_threads_busy():
            self.send(BEAT)
        self.seen = self.started
        return False

    def _all_threads_busy(self) -> bool:
        # ``active_count`` is undocumented (a plain attribute since waitress
        # 1.0); without it, beats only show that the loop turns.
        busy = getattr(self.dispatcher, "active_count", 0)
        return isinstance(busy, int) and busy >= self.threads
