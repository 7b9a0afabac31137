"""Import the app afresh from disk, for a reload that deploys new code.

``flask serve`` imports the app once, in the process that binds the socket,
to read its settings. A reload (``kill -HUP``, or the ``reload_file``
trigger) needs the code on disk *now*: :meth:`AppLoader.fresh` drops the
user's own modules from ``sys.modules`` and imports the app again, the way
``flask serve`` loaded it (``--app``/``FLASK_APP``, ``app.py``/``wsgi.py``,
factories such as ``"app:create_app()"``), and wraps it in the same WSGI
stack (:func:`served`).

The user's modules are those the first load imported that live outside the
standard library, installed packages and flask_prodserve
(:func:`user_modules`): a reload deploys the app's code and templates, not
new versions of libraries (that takes a restart). The settings stay those
resolved at start: a reload changes code, not the port or the worker count.

Each loaded app is a *generation*, numbered from 1 (the first load); the
access log and the reload messages name it.

An app given as an object (``flask_prodserve.serve(app)``) has no import
path: :attr:`AppLoader.reimports` is False, and :meth:`AppLoader.fresh`
raises :class:`SameCode`, whose message says that a reload only restarts the
workers with the code they have.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from werkzeug.test import EnvironBuilder

from .errors import ProdServeError
from .extension import lifecycle_for
from .loaderrors import one_line
from .middleware import build_wsgi_app
from .responses import drain
from .sourcescan import is_library

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication
    from flask import Flask
    from flask.cli import ScriptInfo

    from .config import ServeConfig
    from .lifecycle import Lifecycle
    from .prometheus import Recorder


class ReloadFailed(ProdServeError):
    """The new code could not be loaded: the exception, file and line, in one line."""


class SameCode(ProdServeError):
    """The app was given as an object: there is no code to import again."""


@dataclass(frozen=True)
class Loaded:
    """One generation of the app, ready to serve."""

    generation: int
    app: Flask
    wsgi_app: WSGIApplication
    lifecycle: Lifecycle


def served(
    app: Flask, config: ServeConfig, recorder: Recorder | None, generation: int = 1
) -> Loaded:
    """``app`` wrapped in the stack ``flask serve`` runs, with its lifecycle hooks."""
    lifecycle = lifecycle_for(app)
    wsgi_app = build_wsgi_app(app, config, lifecycle, recorder, generation=generation)
    return Loaded(generation, app, wsgi_app, lifecycle)


def answers(loaded: Loaded, wsgi_app: WSGIApplication, health_path: str) -> str:
    """Why this worker is not ready, or "" if it is: ``<health_path>/ready``
    answered 200 by its own WSGI app (in-process, before it accepts
    connections), or, with no health path, the readiness checks passed."""
    if not health_path:
        return "" if loaded.lifecycle.is_ready() else "a readiness check failed"
    path = health_path + "/ready"
    environ = EnvironBuilder(path=path).get_environ()
    status: list[str] = []

    def start_response(line: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], Any]:
        status.append(line)
        return lambda data: None

    drain(wsgi_app(environ, start_response))
    got = status[0] if status else "no response"
    return "" if got.startswith("200") else f"{path} answered {got}"


@dataclass(frozen=True)
class AppSource:
    """Where the app came from: what Flask's ``ScriptInfo`` was given, and
    the modules the first load imported (see :func:`load`)."""

    import_path: str | None = None
    create_app: Callable[..., Flask] | None = None
    set_debug_flag: bool = True
    imported: frozenset[str] = frozenset()  # the user's among them: see user_modules
    reimports: bool = True  # False: an app object, with no import path


#: The source of an app passed as an object.
OBJECT = AppSource(reimports=False)


def load(info: ScriptInfo) -> tuple[Flask, AppSource]:
    """Load the app as ``flask`` does (``info.load_app()``), noting the
    modules the load imported. Exceptions are the app's own, as they come."""
    before = set(sys.modules)
    app = info.load_app()
    imported = frozenset(sys.modules.keys() - before)
    return app, AppSource(info.app_import_path, info.create_app, info.set_debug_flag, imported)


def user_modules(modules: Iterable[tuple[str, Any]]) -> list[str]:
    """The names of the modules that are the user's own: with a source file
    outside Python's library, installed packages and flask_prodserve."""
    own = []
    for name, module in modules:
        filename = getattr(module, "__file__", None)
        if isinstance(filename, str) and not is_library(filename):
            own.append(name)
    return sorted(own)


class AppLoader:
    """Loads the app again, in this process, for a reload (thread-safe)."""

    def __init__(
        self, source: AppSource, config: ServeConfig, recorder: Recorder | None = None
    ) -> None:
        self.source = source
        self.config = config
        self.recorder = recorder
        self._modules: set[str] | None = None  # the user's; see modules()
        self._lock = threading.Lock()

    @property
    def reimports(self) -> bool:
        """Whether a reload imports new code (False: an app given as an object)."""
        return self.source.reimports

    def modules(self) -> set[str]:
        """The user's modules, purged before each import: those the first load
        imported, and those new code imported since. (Sorted out only when
        first needed: the start of a server does not pay for it.)"""
        if self._modules is None:
            imported = ((n, sys.modules.get(n)) for n in self.source.imported)
            self._modules = set(user_modules(imported))
        return self._modules

    def first(self, app: Flask) -> Loaded:
        """Generation 1: the app loaded at start."""
        return served(app, self.config, self.recorder)

    def fresh(self, generation: int) -> Loaded:
        """Import the app from disk as it is now, as ``generation``.

        Raises :class:`ReloadFailed` (one line: the exception, file and line)
        if the import or the app factory raises, and :class:`SameCode` for an
        app given as an object.
        """
        if not self.source.reimports:
            raise SameCode(
                "the app was given as an object (serve(app)), not an import path: a reload "
                "restarts the workers with the same code; use 'flask --app MODULE serve' to "
                "deploy new code"
            )
        with self._lock:
            modules = self.modules()
            purge(modules)
            before = set(sys.modules)
            try:
                app = _script_info(self.source, modules).load_app()
            except Exception as exc:
                raise ReloadFailed(f"the new code failed to load: {one_line(exc)}") from exc
            finally:
                new = set(sys.modules) - before
                modules.update(user_modules((n, sys.modules.get(n)) for n in new))
        return served(app, self.config, self.recorder, generation)


def purge(names: Iterable[str]) -> None:
    """Forget these modules, so the next import reads their files again."""
    for name in names:
        sys.modules.pop(name, None)
    importlib.invalidate_caches()  # files written since the last import are found


def _script_info(source: AppSource, purged: set[str]) -> ScriptInfo:
    from flask.cli import ScriptInfo

    create_app = source.create_app
    if create_app is not None and create_app.__module__ in purged:
        # The factory's own module was purged: take the factory from its new code.
        module = importlib.import_module(create_app.__module__)
        create_app = getattr(module, create_app.__qualname__, create_app)
    return ScriptInfo(source.import_path, create_app, set_debug_flag=source.set_debug_flag)
