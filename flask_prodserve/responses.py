"""Response helpers shared by the middleware."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse


def plain_response(start_response: StartResponse, status: str, body: bytes) -> list[bytes]:
    """A short text/plain response that no cache keeps (health answers, refusals)."""
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]
    start_response(status, headers)
    return [body]


def drain(body: Iterable[bytes]) -> None:
    """Iterate a response to its end (a lazy middleware calls its app only
    then) and close it, as a server would, discarding the bytes."""
    try:
        for _ in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


class ObservedBody:
    """Wraps a response body to count its bytes and call ``on_close(size)``
    when the server closes it (after the last byte was sent, or on abort)."""

    def __init__(self, body: Iterable[bytes], on_close: Callable[[int], None]) -> None:
        self.body = body
        self.on_close = on_close
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.body:
            self.size += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.on_close(self.size)
