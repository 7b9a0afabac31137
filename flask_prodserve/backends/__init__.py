"""Server backends, imported lazily by name.

``import flask_prodserve`` must not import gunicorn (it does not exist on
Windows and costs start-up time in dev mode), so a backend module is
imported only when it is about to serve.
"""

from __future__ import annotations

import difflib
import gc
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..errors import NO_VALUE, ConfigError

if TYPE_CHECKING:
    import socket

    from _typeshed.wsgi import WSGIApplication

    from ..config import ServeConfig
    from ..lifecycle import Lifecycle
    from ..reloading import AppLoader

MODULES = {
    "werkzeug": "flask_prodserve.backends.dev",
    "waitress": "flask_prodserve.backends.waitress",
    "gunicorn": "flask_prodserve.backends.gunicorn",
}


#: Exit status when the grace period ran out with requests still in flight.
#: Not 1, 3 or 4, which gunicorn uses for its own failures (those end in a
#: :class:`~flask_prodserve.errors.ServeError`, status 1), nor click's 2.
GRACE_EXPIRED = 5


@dataclass(frozen=True)
class Events:
    """What a backend reports while it runs, for the CLI to show."""

    #: The server accepted its settings and is about to serve.
    started: Callable[[], None]
    #: A stop signal arrived (its name, ``"SIGTERM"``); ``graceful`` is False
    #: when requests in flight are cut (a second Ctrl+C).
    stopping: Callable[[str, bool], None]
    #: A line about a reload: a generation ready, or why the reload changed nothing.
    reload_note: Callable[[str], None] = lambda line: None
    #: Imports the app afresh for a reload (None: no reloads).
    loader: AppLoader | None = None


class Backend(Protocol):
    """What a backend module provides."""

    def check_options(self, config: ServeConfig) -> None:
        """Raise ConfigError for ``server_options`` this server does not know."""

    def run(
        self,
        wsgi_app: WSGIApplication,
        sock: socket.socket,
        config: ServeConfig,
        lifecycle: Lifecycle,
        events: Events,
    ) -> int:
        """Serve on ``sock`` until stopped; return 0 or :data:`GRACE_EXPIRED`.

        Calls ``events.started()`` once the server has accepted its settings, handles
        stop signals and has run the on_start hooks;
        raises :class:`~flask_prodserve.errors.ProdServeError` when it cannot
        serve (a hook failed, a worker could not boot).
        """


def freeze_before_fork() -> None:
    """In a process about to fork a worker: keep the worker's garbage collector
    off the objects it inherits (the app, its modules), as the ``gc`` module's
    documentation advises for pre-fork servers.

    Otherwise each worker's first full collection, soon after it starts,
    walks all of them while every request in the worker waits: measured on 2
    CPUs (gunicorn, 4 workers, wrk -c32 on ``/json``), p99 81.7 ms in the run
    where it happened against 13.6-18.1 ms with this. Objects frozen in the
    parent are never collected there, so an old generation's cyclic garbage
    stays in the master after a reload; acyclic objects are freed as usual.
    """
    gc.freeze()


def load(name: str) -> Backend:
    """The backend module for a resolved server name."""
    module: Backend = importlib.import_module(MODULES[name])
    return module


def check_server_options(config: ServeConfig, known: set[str], ours: dict[str, str]) -> None:
    """Reject raw server options the server does not know, or that an option
    of ours already controls (``ours`` maps them to the option to use)."""
    where = config.origins["server_options"].label
    for name in config.server_options:
        if name in ours:
            problem = f"{name!r} is set by flask-prodserve; use {ours[name]} instead"
        elif name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "see the server's documentation"
            problem = f"{config.server} has no option {name!r}; {hint}"
        else:
            continue
        raise ConfigError(where, NO_VALUE, problem)
