"""Lifecycle hooks registered on the extension, run by every backend alike.

========== ================================ ====================================
hook       gunicorn                         waitress / dev server
========== ================================ ====================================
on_start   once, in the master, when ready  once, before serving
worker_init in each worker, after fork      once, before serving
on_stop    once, in the master, at exit     once, after the server stopped
ready      on each ``<health_path>/ready``  the same
========== ================================ ====================================

Each hook is called with the app, inside an app context.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from flask import Flask

Hook = Callable[["Flask"], Any]
Stage = Literal["on_start", "worker_init", "on_stop"]

logger = logging.getLogger("flask_prodserve")


@dataclass
class Hooks:
    """The functions registered for each stage."""

    on_start: list[Hook] = field(default_factory=list)
    worker_init: list[Hook] = field(default_factory=list)
    on_stop: list[Hook] = field(default_factory=list)
    ready: list[Hook] = field(default_factory=list)


@dataclass
class Lifecycle:
    """One app's hooks, bound to the app for the backends to call."""

    app: Flask
    hooks: Hooks = field(default_factory=Hooks)

    def run(self, stage: Stage) -> None:
        for hook in getattr(self.hooks, stage):
            with self.app.app_context():
                hook(self.app)

    def is_ready(self) -> bool:
        """True when every readiness check returns a true value without raising."""
        for check in self.hooks.ready:
            try:
                with self.app.app_context():
                    if not check(self.app):
                        return False
            except Exception:
                logger.warning("readiness check %s failed", check.__name__, exc_info=True)
                return False
        return True
