"""Lifecycle hooks registered on the extension, run by every backend alike.

=========== ================================ ====================================
hook        gunicorn, waitress (POSIX)       waitress (Windows), dev server
=========== ================================ ====================================
on_start    once, in the master, when ready  once, before serving
worker_init in each worker, after fork       once, before serving
on_stop     once, in the master, at exit     once, after the server stopped
ready       on each ``<health_path>/ready``  the same
=========== ================================ ====================================

Each hook is called with the app, inside an app context. A hook that raises
stops the server: :class:`HookFailed` names it, its exception and the line
that raised it.
"""

from __future__ import annotations

import logging
import os
import sysconfig
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .errors import ProdServeError

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
        """Call the hooks of ``stage``; :class:`HookFailed` if one raises."""
        for hook in getattr(self.hooks, stage):
            try:
                with self.app.app_context():
                    hook(self.app)
            except Exception as exc:
                logger.debug("%s hook %r failed", stage, _name(hook), exc_info=True)
                raise HookFailed(stage, hook, exc) from exc

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


class HookFailed(ProdServeError):
    """A lifecycle hook raised: ``worker_init hook 'connect' failed: ...``."""

    def __init__(self, stage: Stage, hook: Hook, exc: Exception) -> None:
        where = _raised_at(exc)
        super().__init__(
            f"{stage} hook {_name(hook)!r} failed: {type(exc).__name__}: {exc}"
            + (f" ({where})" if where else "")
        )


def _name(hook: Hook) -> str:
    return getattr(hook, "__name__", repr(hook))


def _raised_at(exc: BaseException) -> str:
    """``app.py, line 12``: the innermost frame of the app's own code that raised."""
    # Frames in these are not the app's: Python's, installed packages', ours.
    paths = sysconfig.get_paths()
    libraries = (paths["stdlib"], paths["purelib"], paths["platlib"], os.path.dirname(__file__))
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(libraries)
    ]
    return f"{frames[-1].filename}, line {frames[-1].lineno}" if frames else ""
