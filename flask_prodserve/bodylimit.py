"""The request body limit, applied the same way under every server.

A body with a ``Content-Length`` over the limit is refused with 413 before
the app runs. A chunked body (no ``Content-Length``) is read here first,
up to the limit, so the app never starts on a body it would have to reject
half-way; a malformed chunked body becomes a 400 here rather than an
exception inside a view (gunicorn raises its parse errors from
``wsgi.input.read()``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .responses import ObservedBody, plain_response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: Set in the environ when the connection must be closed after the response
#: (the rest of the body was not read). Backends honour it; an app may not
#: send ``Connection: close`` itself (a hop-by-hop header).
CLOSE_CONNECTION = "flask_prodserve.close_connection"


class BodyTooLarge(Exception):
    """Raised by a server's reader for a chunk larger than the limit, announced
    before its data (:class:`~flask_prodserve.backends.headgate.ChunkSizes`)."""


_CHUNK = 64 * 1024
_SPOOL_IN_MEMORY = 1024 * 1024


class BodyLimit:
    """Refuse bodies over ``max_size`` bytes (413), buffer chunked bodies."""

    def __init__(self, app: WSGIApplication, max_size: int) -> None:
        self.app = app
        self.max_size = max_size

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        length = environ.get("CONTENT_LENGTH", "")
        if length:
            if not length.isdigit():
                return _refuse(
                    environ, start_response, "400 Bad Request", "Invalid Content-Length."
                )
            if int(length) > self.max_size:
                return self._too_large(environ, start_response)
            return self.app(environ, start_response)
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return self._buffer_chunked(environ, start_response)
        return self.app(environ, start_response)

    def _too_large(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        return _refuse(
            environ,
            start_response,
            "413 Content Too Large",
            f"The request body is larger than this server accepts ({self.max_size} bytes).",
        )

    def _buffer_chunked(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        # Closed with the response body (ObservedBody), not by a with block.
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
        stream = environ["wsgi.input"]
        size = 0
        try:
            while True:
                chunk = stream.read(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_size:
                    spool.close()
                    return self._too_large(environ, start_response)
                spool.write(chunk)
        except BodyTooLarge:
            spool.close()
            return self._too_large(environ, start_response)
        except TimeoutError:  # socket.timeout: the server's read deadline
            spool.close()
            return _refuse(
                environ, start_response, "408 Request Timeout", "The request body stopped arriving."
            )
        except Exception:  # the server's chunked parser: any failure is the client's framing
            spool.close()
            return _refuse(
                environ, start_response, "400 Bad Request", "Malformed chunked request body."
            )
        spool.seek(0)
        environ["wsgi.input"] = spool
        environ["CONTENT_LENGTH"] = str(size)
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ["wsgi.input_terminated"] = True
        body = self.app(environ, start_response)
        return ObservedBody(body, lambda size: spool.close())


def _refuse(
    environ: WSGIEnvironment, start_response: StartResponse, status: str, message: str
) -> list[bytes]:
    environ[CLOSE_CONNECTION] = True
    return plain_response(start_response, status, f"{status[4:]}: {message}\n".encode())
