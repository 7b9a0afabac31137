"""Reload new code in a process that serves alone (waitress on Windows).

Without ``fork`` there are no worker processes to replace, so a reload
(``reload_file``) happens inside the serving process: the app is imported
afresh (:meth:`.AppLoader.fresh`), its worker_init hooks run and it answers
its own readiness check; only then does :class:`SwappableApp` send new
requests to it. Requests already running finish on the generation they
started with. If anything fails, the old generation keeps serving and one
line says why.

The old code's modules are dropped from ``sys.modules`` by the import: code
of the old generation that imports one of the app's own modules lazily
(inside a function) gets the new one. Serving processes with ``fork`` get
whole new processes instead (:mod:`.backends.gunicorn_reload`,
:mod:`.backends.waitress_supervisor`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .lifecycle import HookFailed
from .loaderrors import one_line
from .reloading import ReloadFailed, SameCode, answers
from .touchfile import TouchWatcher

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from .config import ServeConfig
    from .reloading import AppLoader, Loaded


class SwappableApp:
    """A WSGI app that passes each request to the current generation."""

    def __init__(self, loaded: Loaded) -> None:
        self.loaded = loaded

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return self.loaded.wsgi_app(environ, start_response)


class InProcessReloader:
    """Reloads ``app`` (see the module docstring); one reload at a time."""

    def __init__(
        self,
        app: SwappableApp,
        loader: AppLoader,
        config: ServeConfig,
        note: Callable[[str], None],
    ) -> None:
        self.app = app
        self.loader = loader
        self.config = config
        self.note = note
        self._lock = threading.Lock()

    def reload(self) -> bool:
        """Load, check and switch to the next generation; whether it did."""
        with self._lock:
            current = self.app.loaded
            try:
                new = self.loader.fresh(current.generation + 1)
                new.lifecycle.run("worker_init")
                problem = answers(new, new.wsgi_app, self.config.health_path)
            except SameCode as exc:
                self.note(f"Reload: {exc}; here that changes nothing.")
                return False
            except (ReloadFailed, HookFailed) as exc:
                problem = str(exc)
            except Exception as exc:  # the app's readiness check raised
                problem = one_line(exc)
            if problem:
                self.note(
                    f"Reload failed, generation {current.generation} keeps serving: {problem}"
                )
                return False
            self.app.loaded = new
            self.note(f"Reloaded: generation {new.generation} ready (pid {os.getpid()})")
            return True


def serving_alone(
    first: Loaded, loader: AppLoader | None, config: ServeConfig, note: Callable[[str], None]
) -> tuple[SwappableApp, TouchWatcher | None]:
    """The app to serve, and the ``reload_file`` watcher to start (None when off)."""
    app = SwappableApp(first)
    if not (config.reload_file and loader is not None):
        return app, None
    reloader = InProcessReloader(app, loader, config, note)
    return app, TouchWatcher(config.reload_file, reloader.reload)
