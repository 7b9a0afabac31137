"""Answering one request with gunicorn's HTTP layer, in a thread of our worker.

The event loop (:mod:`.gunicorn_worker`) has read and checked the request's
head; here gunicorn's own parser reads it again from those bytes (then from
the socket, for the body), the app runs, and gunicorn's response sends what
it returns, as gunicorn's sync worker does. What is left of a body the app
did not read is read and discarded, so the connection can be kept. The
undocumented names of gunicorn's HTTP layer used here are listed in
:mod:`.gunicorn_names`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gunicorn.http import RequestParser
from gunicorn.http.errors import NoMoreData
from gunicorn.http.wsgi import create

from ..bodylimit import CLOSE_CONNECTION
from .bodyinput import BodyInput
from .headgate import GateLimits

if TYPE_CHECKING:
    from .gunicorn_worker import Conn

#: How much of a body the app did not read is read and discarded so the
#: connection can be kept; past that it is closed.
_DRAIN = 64 * 1024


class _Feed:
    """What gunicorn's parser reads a request from: the bytes the event loop
    already read (and checked), then the socket (in a worker thread, with its
    timeout), whose bytes go through the connection's :attr:`Conn.framing`.
    Once ``paused``, only what was already read: nothing blocks."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.paused = False

    def recv(self, size: int) -> bytes:
        head = self.conn.head
        if head:
            data = bytes(head[:size])
            del head[:size]
            return data
        if self.paused:
            return b""
        data = self.conn.sock.recv(size)
        framing = self.conn.framing
        if framing is not None:  # raises from the body's read, where BodyLimit answers it
            if data:
                framing.feed(data)
            else:
                framing.ended()  # gunicorn < 27 would take a body cut short as whole
        return data


class Answering:
    """The part of :class:`.gunicorn_worker.GatedWorker` that answers a
    request; it stands on these names of gunicorn's worker base class."""

    cfg: Any
    log: Any
    wsgi: Any
    alive: bool
    nr: int
    max_requests: int
    limits: GateLimits
    handle_error: Callable[..., None]
    _wake: Callable[[], None]  # the worker's: wakes its event loop

    def _answer(self, conn: Conn) -> bool:
        try:
            return self._serve(conn)
        except Exception:  # never lose the thread
            self.log.exception("Error handling request")
            return False

    def _serve(self, conn: Conn) -> bool:
        """Parse and answer one request; whether the connection is kept."""
        conn.sock.settimeout(self.limits.read_timeout)
        feed = _Feed(conn)
        parser = RequestParser(self.cfg, feed, conn.client)  # type: ignore[arg-type]
        req = None
        try:
            req = next(parser)
            resp = self._respond(conn, req)
        except (NoMoreData, StopIteration):
            return False
        except OSError as exc:  # the client went away, or a read or write timed out
            self.log.debug("Connection error: %s", exc)
            return False
        except Exception as exc:
            self.handle_error(req, conn.sock, conn.client, exc)
            return False
        if not self.alive or resp.should_close() or not _drained(req):
            return False
        feed.paused = True
        rest = bytes(conn.head)
        conn.head.clear()
        conn.head += parser.unreader.read() + rest  # the next request's first bytes
        conn.checked = 0
        return True

    def _respond(self, conn: Conn, req: Any) -> Any:
        """Run the app for ``req`` and send its response (as gunicorn's sync worker)."""
        environ: Any = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            start = datetime.now()
            resp, environ = create(req, conn.sock, conn.client, conn.server, self.cfg)
            self._count_request()
            if not self.alive or self.cfg.keepalive <= 0:
                resp.force_close()
            if environ.get("CONTENT_LENGTH") or "HTTP_TRANSFER_ENCODING" in environ:
                environ["wsgi.input"] = BodyInput(environ["wsgi.input"], environ)
            body = self.wsgi(environ, resp.start_response)
            try:
                if environ.get(CLOSE_CONNECTION):
                    resp.force_close()  # before it sends its headers
                if isinstance(body, environ["wsgi.file_wrapper"]):
                    resp.write_file(body)
                else:
                    for item in body:
                        resp.write(item)
                resp.close()
            finally:
                self.log.access(resp, req, environ, datetime.now() - start)
                close = getattr(body, "close", None)
                if close is not None:
                    close()
            return resp
        except OSError:
            raise  # the client went away: no error to log or answer (see _serve)
        except Exception:
            if resp is not None and resp.headers_sent:
                # Too late for an error response: the connection is all we can end.
                self.log.exception("Error handling request")
                raise StopIteration() from None
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")

    def _count_request(self) -> None:
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
            self._wake()


def _drained(req: Any) -> bool:
    """Read and discard what the app left of the body; whether it all came
    (within :data:`_DRAIN` bytes), so the next request can follow."""
    total = 0
    try:
        while data := req.body.read(8192):
            total += len(data)
            if total > _DRAIN:
                return False
    except Exception:  # a malformed chunked body, a timeout: close instead
        return False
    return True
