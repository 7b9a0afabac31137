"""Exceptions for mistakes a user can fix; the CLI shows them as one line."""

from __future__ import annotations

from typing import Any

NO_VALUE: Any = object()


class ProdServeError(Exception):
    """A problem the user can fix; ``str()`` is the whole message."""


class ConfigError(ProdServeError, ValueError):
    """A setting has a bad value: names the setting, where it was set, and the fix."""

    def __init__(self, where: str, value: Any, problem: str) -> None:
        self.where = where
        self.value = value
        self.problem = problem
        shown = "" if value is NO_VALUE or isinstance(value, bool) else f" (got {value!r})"
        super().__init__(f"{where}: {problem}{shown}.")


class ServeError(ProdServeError):
    """The server cannot start, for example because the port is in use."""
