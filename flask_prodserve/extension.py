"""The Flask extension: ``ProdServe(app)`` or ``prodserve.init_app(app)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import Layer, check_names, layer_values, validate
from .lifecycle import Hook, Hooks, Lifecycle

if TYPE_CHECKING:
    from flask import Flask

EXTENSION_KEY = "prodserve"


class ProdServe:
    """Serve a Flask app with ``flask serve``.

    Keyword arguments are defaults for this extension's apps, with the same
    names as the options (``ProdServe(app, port=8080, url_prefix="/app")``).
    An app's ``PRODSERVE_*`` config keys override them, environment variables
    override those, and command-line flags override everything.

    ``flask serve`` works without this extension too; registering it adds
    these defaults, validates the app's ``PRODSERVE_*`` config when the app
    is created, and carries the lifecycle hooks (:meth:`on_start`,
    :meth:`worker_init`, :meth:`on_stop`, :meth:`ready`).
    """

    def __init__(self, app: Flask | None = None, **defaults: Any) -> None:
        check_names(defaults, Layer.EXTENSION)
        validate(defaults, Layer.EXTENSION)
        self.defaults: dict[str, Any] = defaults
        self.hooks = Hooks()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register on ``app`` and check its ``PRODSERVE_*`` config keys.

        Raises :class:`~flask_prodserve.ConfigError` naming the key of a bad
        value, so a typo fails when the app is created, not when it is served.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                f"ProdServe is already registered on the app {app.name!r}. Call "
                "ProdServe(app) or init_app(app) once per app; to change settings, "
                "set PRODSERVE_* keys in app.config instead."
            )
        config_values = layer_values({}, {}, app.config, {})[Layer.CONFIG]
        validate(config_values, Layer.CONFIG)
        app.extensions[EXTENSION_KEY] = self

    def on_start(self, func: Hook) -> Hook:
        """Register ``func(app)`` to run once when the server is ready."""
        self.hooks.on_start.append(func)
        return func

    def worker_init(self, func: Hook) -> Hook:
        """Register ``func(app)`` to run in each worker process after it is
        forked (gunicorn, waitress on POSIX), or once (waitress on Windows, dev
        server): the place to reset connection pools, such as SQLAlchemy's
        ``db.engine.dispose()``."""
        self.hooks.worker_init.append(func)
        return func

    def on_stop(self, func: Hook) -> Hook:
        """Register ``func(app)`` to run once when the server has stopped."""
        self.hooks.on_stop.append(func)
        return func

    def ready(self, func: Hook) -> Hook:
        """Register a readiness check for ``<health_path>/ready``: return a
        true value when the app can serve (database reachable, ...)."""
        self.hooks.ready.append(func)
        return func


def _registered(app: Flask) -> ProdServe | None:
    ext = app.extensions.get(EXTENSION_KEY)
    return ext if isinstance(ext, ProdServe) else None


def extension_defaults(app: Flask) -> dict[str, Any]:
    """The ``ProdServe(...)`` defaults registered on ``app``, if any."""
    ext = _registered(app)
    return dict(ext.defaults) if ext else {}


def lifecycle_for(app: Flask) -> Lifecycle:
    """The hooks registered for ``app`` (none without the extension)."""
    ext = _registered(app)
    return Lifecycle(app, ext.hooks if ext else Hooks())
