"""``wsgi.input`` for our gunicorn worker: a body is never passed off as complete when it is not."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol, TypeVar

from werkzeug.exceptions import BadRequest, RequestTimeout

from ..bodylimit import CLOSE_CONNECTION

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

_T = TypeVar("_T")


class _ReadTimeout(RequestTimeout, TimeoutError):
    """The client sent no more of its body for ``--timeout`` seconds.

    An HTTP error (408) for Flask, and still a ``TimeoutError`` for code
    that catches the socket's own (BodyLimit buffering a chunked body).
    """

    description = "The request body stopped arriving."


class _Truncated(BadRequest):
    description = "The request body ended before its Content-Length."


class _Body(Protocol):
    def read(self, size: int | None = None, /) -> bytes: ...
    def readline(self, size: int | None = None, /) -> bytes: ...
    def readlines(self, size: int | None = None, /) -> list[bytes]: ...


class BodyInput:
    """``wsgi.input`` that never passes a body off as complete when it is not.

    A read that times out raises :class:`_ReadTimeout` (408); a body that
    ends before its ``Content-Length`` because the client half-closed raises
    :class:`_Truncated` (400), where gunicorn would return the bytes it got
    as if they were all (it sets ``wsgi.input_terminated``, so Werkzeug's
    own check of the length is off). Either closes the connection: where the
    next request would start is unknown.
    """

    def __init__(self, body: _Body, environ: WSGIEnvironment) -> None:
        self.body = body
        self.environ = environ
        length = environ.get("CONTENT_LENGTH")
        self.left = int(length) if length and length.isdigit() else None

    def read(self, size: int | None = None) -> bytes:
        return self._counted(self._guard(self.body.read, size), size, line=False)

    def readline(self, size: int | None = None) -> bytes:
        return self._counted(self._guard(self.body.readline, size), size, line=True)

    def readlines(self, size: int | None = None) -> list[bytes]:
        return list(self)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def _counted(self, data: bytes, size: int | None, *, line: bool) -> bytes:
        """``data``, unless it came short of what was asked because the body ended early."""
        if self.left is None:
            return data
        self.left -= len(data)
        short = size is None or size < 0 or len(data) < size
        if line and data.endswith(b"\n"):
            short = False  # a whole line, not the end of the body
        if self.left > 0 and short:
            self.environ[CLOSE_CONNECTION] = True
            raise _Truncated()
        return data

    def _guard(self, method: Callable[[int | None], _T], size: int | None) -> _T:
        try:
            return method(size)
        except TimeoutError:
            self.environ[CLOSE_CONNECTION] = True
            raise _ReadTimeout() from None
