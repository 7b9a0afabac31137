"""gunicorn at the wire: a gthread worker that slow clients cannot starve,
and the WSGI wrapper that lets the middleware chain close a connection.

gunicorn's gthread worker gives each new or kept-alive connection to a thread
as soon as a byte arrives, and the thread then blocks until the request line
and headers are in: fifty clients sending a header line every few seconds
occupy every thread and starve everyone else (slowloris). :class:`GatedWorker`
reads the head in its event loop instead, without blocking, and only a
complete one goes to a thread, with the bytes read so far handed to
gunicorn's parser. A head that takes longer than ``header_timeout`` gets a
408, one larger than ``max_header_size`` a 431, ambiguous framing a 400.

The bytes are read (``recv``), not peeked (``MSG_PEEK``): a level-triggered
poller reports a socket readable for as long as unread bytes wait on it, so
peeking at a partial head would spin the loop until the rest arrived.

A worker accepts a connection only while it has a thread free for it (see
:meth:`GatedWorker.has_free_thread`): the others, sharing the listening
socket, take the rest. gthread accepts up to 1000 and queues their requests
behind its busy threads, even while another worker idles. Only when no worker
has had a free thread for a while (:data:`OVERDUE`) does one take a queued
connection anyway, so busy clients cannot keep new ones out.

A thread that has answered on a kept-alive connection waits a moment for the
next request there, while no other work waits for a thread (see
:data:`FOLLOW_UP`): clients that reuse connections send it at once, and the
thread serves it without going back through the event loop.
"""

from __future__ import annotations

import errno
import itertools
import re
import select
import selectors
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from gunicorn import util as gunicorn_util
from gunicorn.config import Config
from gunicorn.http.body import LengthReader
from gunicorn.http.parser import RequestParser
from gunicorn.http.wsgi import Response
from gunicorn.workers.gthread import TConn, ThreadWorker
from werkzeug.exceptions import RequestTimeout

from ..clock import EverySecond
from ..framing import head_framing_problem
from ..limits import CLOSE_CONNECTION
from .clientsocket import ClientSocket

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

_T = TypeVar("_T")

#: Where a request head ends: the empty line. A bare-LF one is let through
#: for gunicorn's parser to refuse (400) rather than left to time out.
_HEAD_END = re.compile(rb"\n\r?\n")
_TRANSFER_ENCODING = b"transfer-encoding"
_READ_SIZE = 64 * 1024
#: How long a refused connection is read (and what arrives discarded) before
#: it is closed: closing with unread bytes would reset the connection and
#: could destroy the error response before the client reads it.
_LINGER = 2.0
#: Return value of :func:`head_verdict`: hand the request to gunicorn.
PASS = 0
#: How long (seconds) a thread that answered on a kept-alive connection waits
#: there for the next request's head before handing the connection back to
#: the event loop. The hand-off (two thread switches, a wake-up pipe, poller
#: registrations) cost about 60 microseconds a request, measured; a thread
#: that waits in recv() holds no CPU and no GIL. Short, and only while no
#: other connection waits for a thread: an idle client must not hold one.
FOLLOW_UP = 0.02
#: How many requests in a row a thread serves on one connection before it
#: hands the connection back to the event loop (and takes the next in line).
#: Measured under saturating load: the slowest 1% of requests took 160 ms
#: without this, 100 ms with it; throughput 2% less. A thread that keeps its
#: connection keeps its luck at getting the GIL, good or bad.
FOLLOW_UPS = 10
#: How long (seconds) a new connection that has sent nothing yet, or a kept-
#: alive one just answered, counts against its worker's free threads: long
#: enough for a client to send its request, short enough that clients that
#: never do cannot stop accepting. (A client that sends part of a head no
#: longer counts: slow ones must not.)
FRESH = 0.1
#: How long (seconds) connections may wait in the listener's queue while a
#: worker is not accepting before it takes one anyway, to queue behind its
#: busy threads: otherwise clients that keep their connections busy would
#: keep every thread, and a new client would wait until one of them left.
OVERDUE = 0.1

_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
}


def _error(status: int) -> bytes:
    reason = _REASONS[status]
    return (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(reason) + 1}\r\n"
        f"\r\n{reason}\n"
    ).encode()


_ERRORS = {status: _error(status) for status in _REASONS}


def head_verdict(head: bytearray, checked: int, max_size: int, max_line: int) -> int | None:
    """What to do with the bytes of a request head received so far.

    ``None``: wait for more; :data:`PASS`: hand the request to gunicorn's
    parser; otherwise the HTTP status to refuse it with. ``checked`` bytes of
    ``head`` were looked at before (the search for the end resumes there).
    """
    end = _HEAD_END.search(head, max(checked - 2, 0))
    if end is None:
        if len(head) > max_line + 4 and head.find(b"\n", 2, max_line + 4) < 0:
            return 414  # the request line alone is too long (after one optional CRLF)
        return 431 if len(head) >= max_size else None
    if end.end() > max_size:
        return 431
    # gunicorn refuses "chunked" twice and chunked with Content-Length, but not
    # e.g. "gzip" on one line and "chunked" on the next: check them all here.
    block = bytes(head[: end.start()])
    if _TRANSFER_ENCODING in block.lower() and head_framing_problem(block):
        return 400
    return PASS


@dataclass(frozen=True)
class GateLimits:
    """The limits a :class:`GatedWorker` enforces, in seconds and bytes
    (``read_timeout``: for each read and write while a request is handled)."""

    header_timeout: float = 10
    max_header_size: int = 64 * 1024
    read_timeout: float = 30


class SettledConfig(Config):
    """gunicorn's settings as one worker reads them: each looked up once.

    gunicorn looks a setting up through ``Config.__getattr__`` on every use,
    about 20 times a request (parser limits, hooks, keep-alive, proxy trust),
    and ``is_ssl`` is a property over two of them: 0.9 µs a setting here (the
    normal lookup fails first, raising an AttributeError inside) and 2.1 µs
    for ``is_ssl``. A worker's settings never change (a reload starts new
    workers), so the first value read is kept as a plain attribute. With
    :func:`http_date`, measured head to head: 10-18 % more requests/s.
    """

    def __init__(self, cfg: Config) -> None:
        # Not Config.__init__: the same settings, without building them again.
        self.__dict__.update(vars(cfg))

    def __getattr__(self, name: str) -> Any:
        value = super().__getattr__(name)
        self.__dict__[name] = value  # Config.__setattr__ refuses setting names
        return value

    @cached_property
    def is_ssl(self) -> bool:  # a property there, read per request
        return bool(super().is_ssl)

    def set(self, name: str, value: Any) -> None:
        raise AttributeError(f"a worker's settings are settled: cannot set {name!r}")


_http_date = gunicorn_util.http_date
_date_now = EverySecond(_http_date)


def http_date(timestamp: float | None = None) -> str:
    """gunicorn's ``util.http_date``, formatted once a second: gunicorn formats
    the ``Date`` header of every response (4 µs here), to the second."""
    return _date_now() if timestamp is None else _http_date(timestamp)


class GatedConn(TConn):
    """A client connection, with what the gate has read of its next request."""

    def __init__(
        self, cfg: Config, sock: socket.socket, client: Any, server: Any, worker: GatedWorker
    ) -> None:
        super().__init__(cfg, sock, client, server)
        self.worker = worker
        self.head = bytearray()
        self.checked = 0  # how much of head was searched for its end
        self.watched = False  # registered with the worker's poller
        self.lingering = False  # answered for the last time: closing

    def init(self) -> None:
        """In a worker thread, before each request on this connection."""
        super().init()
        # Each read and write must make progress within the timeout: a client
        # that announces a body and never sends it must not hold the thread.
        self.sock.settimeout(self.worker.limits.read_timeout)
        if self.head:
            cast(RequestParser, self.parser).unreader.unread(bytes(self.head))
            self.head, self.checked = bytearray(), 0

    def close(self, graceful: bool = False) -> None:
        if graceful and self.worker.gating:
            # gthread would wait here, in the worker's only event loop, for up to
            # 2 s until the client closes too: a few clients that never close
            # would stall every connection of the worker.
            self.worker.linger(self)
        else:
            super().close(graceful)


class GatedWorker(ThreadWorker):
    """gunicorn's gthread worker, with the request-head gate (see the module)."""

    limits = GateLimits()

    def init_process(self) -> None:
        # Connections waiting for their head, and connections closing, each by
        # deadline: every entry gets "now + the same delay", so insertion order
        # is deadline order.
        self.waiting: dict[GatedConn, float] = {}
        self.closing: dict[GatedConn, float] = {}
        self.cfg = SettledConfig(self.cfg)  # before the parsers and connections read it
        gunicorn_util.http_date = http_date  # a worker process is ours alone
        self.in_threads = 0  # connections given to a thread and not back yet
        self.accepting = False  # polling the listener (gthread's own flag is private)
        self.queued_since: float | None = None  # listener seen with a queue, while not accepting
        self.threads = int(self.cfg.threads)
        self.gating = _can_gate(self.cfg)
        super().init_process()

    def has_free_thread(self) -> bool:
        """Whether a connection accepted now would find a thread at once.

        Connections that will most likely want a thread in a moment count as
        busy for :data:`FRESH`: new ones that have sent nothing yet, and kept-
        alive ones that have just been answered. Without the first, the first
        worker to wake would accept a whole burst of new connections before
        any of their requests arrived; without the second, a worker would
        accept while its clients are reading their responses, then have more
        requests than threads (measured: 11 and 5 of 32 wrk connections on
        two 8-thread workers, every request of the first queued).
        """
        return self.in_threads + self._fresh() < self.threads

    def _fresh(self) -> int:
        """Connections that will likely want a thread soon (see :meth:`has_free_thread`),
        read off the deadlines of ``waiting`` and of gthread's kept-alive ones, newest first."""
        since = time.monotonic() - FRESH
        count = 0
        for conn in reversed(self.waiting):  # deadline = arrival + header_timeout
            if self.waiting[conn] - self.limits.header_timeout <= since:
                break
            count += not conn.head
        keepalive = self.cfg.keepalive
        for kept in reversed(self.keepalived_conns):  # timeout = answered + keepalive
            if kept.timeout - keepalive <= since:
                break
            count += 1
        return count

    def wait_for_and_dispatch_events(self, timeout: float | None) -> None:
        held_back = self.gating and not self.accepting
        if held_back:
            # Look again when FRESH connections stop counting, and at the
            # listener's queue, at least that often (gthread wakes every 1 s).
            timeout = FRESH if timeout is None else min(timeout, FRESH)
        super().wait_for_and_dispatch_events(timeout)
        if held_back and self.alive and not self.accepting:
            self._admit_overdue()

    def _admit_overdue(self) -> None:
        """Accept one connection if some have waited in the listener's queue for
        :data:`OVERDUE` (at most one each time): no worker had a free thread."""
        try:
            queued = bool(select.select(self.sockets, [], [], 0)[0])
        except (OSError, ValueError):  # a listener closed by a stop meanwhile
            queued = False
        now = time.monotonic()
        if not queued or self.queued_since is None:
            self.queued_since = now if queued else None
        elif now - self.queued_since >= OVERDUE:
            self.queued_since = now
            any(self.accept_one(listener) for listener in self.sockets)

    def set_accept_enabled(self, enabled: bool | None) -> None:
        # gthread re-enables accepting on every loop while under its connection
        # limit: accept only while a thread is free.
        if enabled and self.gating and self.alive:
            enabled = self.has_free_thread()
        super().set_accept_enabled(enabled)
        self.accepting = bool(enabled)
        if enabled:
            self.queued_since = None  # the poller sees the queue now

    def finish_request(self, conn: TConn, fs: Any) -> None:
        self.in_threads -= 1
        super().finish_request(conn, fs)

    def handle(self, conn: TConn) -> Any:
        """In a worker thread: serve ``conn``'s request, and the ones that follow
        it on the connection at once (see :data:`FOLLOW_UP`)."""
        keep = super().handle(conn)
        for _ in range(FOLLOW_UPS):
            if keep is not True or not self._next_head_in_thread(cast(GatedConn, conn)):
                break
            keep = super().handle(conn)
        return keep

    def _keepalive_after(self, conn: TConn, keepalive: bool) -> bool:
        # gthread drains an unread body under a deadline, setting the socket's
        # timeout there and back even when nothing is left to read. (Not in
        # gunicorn's stubs, which also say finish_body returns None: it returns
        # whether the body was drained.)
        parser: Any = conn.parser
        if keepalive and _nothing_left_to_read(conn):
            return bool(parser.finish_body())
        gthread: Any = super()
        return bool(gthread._keepalive_after(conn, keepalive))

    def _next_head_in_thread(self, conn: GatedConn) -> bool:
        """Wait up to :data:`FOLLOW_UP` for the complete head of the next request
        on ``conn``; whether it came (its bytes are then in ``conn.head``).

        Otherwise what was read goes back to the parser's read-ahead, where
        the event loop's gate takes it up (a refusal is sent from there).
        """
        parser = conn.parser
        if not (self.gating and self.alive and isinstance(parser, RequestParser)):
            return False
        # Another connection waits for a thread (in_threads counts every one
        # handed to the pool, this one included, until the event loop hears it
        # is done). The pool's queue is no measure: a request put there waits
        # until an idle thread wakes up and gets the GIL, and a thread seeing
        # it at that moment went back to the event loop for 30% of requests.
        if self.in_threads > self.threads:
            return False
        conn.head, conn.checked = bytearray(parser.unreader.take_buffered()), 0
        deadline = time.monotonic() + FOLLOW_UP
        sock = cast(ClientSocket, conn.sock)
        try:
            while True:
                verdict = self._verdict(conn) if conn.head else None
                if verdict == PASS:
                    return True
                remaining = deadline - time.monotonic()
                if verdict is not None or remaining <= 0:
                    break
                data = sock.recv_within(_READ_SIZE, remaining)
                if not data:
                    break  # nothing came, or closed: the poller will see it too
                conn.head += data
        except OSError:  # the connection failed
            pass
        if conn.head:
            parser.unreader.unread(bytes(conn.head))
        conn.head, conn.checked = bytearray(), 0
        return False

    def accept(self, listener: socket.socket) -> None:
        self.accept_one(listener)
        if self.gating and not self.has_free_thread():
            self.set_accept_enabled(False)

    def accept_one(self, listener: socket.socket) -> bool:
        """Accept one connection if one is queued; whether one was."""
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED):
                return False
            raise
        self.nr_conns += 1
        if self.gating:  # ClientSocket reads and writes a plain socket's fd directly
            sock = ClientSocket.adopt(sock, self.limits.read_timeout)
        self.enqueue_req(GatedConn(self.cfg, sock, client, listener.getsockname(), self))
        return True

    def enqueue_req(self, conn: TConn) -> None:
        """Every way to a thread (new, kept-alive and pipelining connections) leads here."""
        if not self.gating:
            self._to_thread(conn)
            return
        gated = cast(GatedConn, conn)
        if isinstance(gated.parser, RequestParser):  # what the last request's parser read ahead
            gated.head, gated.checked = bytearray(gated.parser.unreader.take_buffered()), 0
        if gated.sock.gettimeout() != 0:  # a kept-alive one already is non-blocking
            gated.sock.setblocking(False)
        self.waiting[gated] = time.monotonic() + self.limits.header_timeout
        self._readable(gated, None)

    def _readable(self, conn: GatedConn, _: object) -> None:
        try:
            data: bytes | None = conn.sock.recv(_READ_SIZE)
        except BlockingIOError:
            data = None  # nothing new: a spurious wake-up, or only read-ahead bytes to check
        except OSError:
            data = b""  # reset: as good as closed
        if conn.lingering:
            if data == b"":
                self._drop(conn)  # what arrives meanwhile is discarded
            return
        if data:
            conn.head += data
        verdict = self._verdict(conn) if conn.head else None
        if verdict is None:
            if data == b"":
                self._drop(conn)  # closed before its head was complete (or before a request)
            else:
                self._watch(conn)
        elif verdict == PASS:
            self._unwatch(conn)
            del self.waiting[conn]
            conn.data_ready = True  # the thread must not wait for bytes the gate already read
            self._to_thread(conn)
        else:
            self._refuse(conn, verdict)

    def _to_thread(self, conn: TConn) -> None:
        self.in_threads += 1  # back in finish_request, on this (the event loop's) thread
        super().enqueue_req(conn)

    def _verdict(self, conn: GatedConn) -> int | None:
        max_line = int(self.cfg.limit_request_line)
        verdict = head_verdict(conn.head, conn.checked, self.limits.max_header_size, max_line)
        conn.checked = len(conn.head)
        return verdict

    def _watch(self, conn: GatedConn) -> None:
        if not conn.watched:
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))
            conn.watched = True

    def _unwatch(self, conn: GatedConn) -> None:
        if conn.watched:
            self.poller.unregister(conn.sock)
            conn.watched = False

    def _drop(self, conn: GatedConn) -> None:
        self._unwatch(conn)
        self.waiting.pop(conn, None)
        self.closing.pop(conn, None)
        self.nr_conns -= 1
        conn.close()

    def _refuse(self, conn: GatedConn, status: int) -> None:
        log = self.log.debug if status == 408 else self.log.warning  # 408s can come by the dozen
        log("Invalid request from ip=%s: %s", _ip(conn), _REASONS[status])
        try:
            conn.sock.send(_ERRORS[status])  # a few hundred bytes: the socket buffer takes them
        except OSError:
            self._drop(conn)
            return
        del self.waiting[conn]
        self._close(conn)

    def linger(self, conn: GatedConn) -> None:
        """Close a connection gthread has finished with (and stopped counting)."""
        self.nr_conns += 1  # still open: still counted, until _drop
        conn.sock.setblocking(False)
        self._close(conn)

    def _close(self, conn: GatedConn) -> None:
        """Close after the client has read what was sent, or after a delay.

        Closing while unread bytes wait would make the kernel reset the
        connection, and the client could lose the response (RFC 9112, 9.6).
        """
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(conn)
            return
        conn.lingering = True
        conn.head, conn.checked = bytearray(), 0
        self.closing[conn] = time.monotonic() + _LINGER
        self._watch(conn)

    def murder_pending(self) -> None:
        """Also time out heads and closings that take too long (run after every poll)."""
        super().murder_pending()
        now = time.monotonic()
        for conn in _expired(self.closing, now):
            self._drop(conn)
        for conn in _expired(self.waiting, now):
            if conn.head:
                self._refuse(conn, 408)
            else:
                self._drop(conn)  # nothing sent yet (as an idle keep-alive one)

    def cap_waiting(self, deadline: float) -> None:
        """Give every connection waiting for its head until ``deadline`` at most."""
        for conn, when in self.waiting.items():
            self.waiting[conn] = min(when, deadline)


def _expired(deadlines: dict[GatedConn, float], now: float) -> list[GatedConn]:
    return [c for c, _ in itertools.takewhile(lambda item: item[1] <= now, deadlines.items())]


def _nothing_left_to_read(conn: TConn) -> bool:
    """Whether the body of ``conn``'s last request was read to its end (or it had none)."""
    body = getattr(getattr(conn.parser, "mesg", None), "body", None)
    reader = getattr(body, "reader", None)
    return isinstance(reader, LengthReader) and reader.length == 0


def _can_gate(cfg: Config) -> bool:
    """Whether this worker's connections start with a plain HTTP/1 request head:
    TLS, HTTP/2 with prior knowledge and PROXY protocol v2 read the socket
    before gunicorn's HTTP/1 parser would see the bytes the gate read."""
    return bool(
        not cfg.is_ssl
        and cfg.http2_cleartext in ("off", "upgrade")
        and cfg.proxy_protocol in ("off", "v1")
    )


def _ip(conn: TConn) -> str:
    client = conn.client
    return str(client[0] if isinstance(client, tuple) else client)


class OneWriteResponse(Response):
    """gunicorn's response, writing its headers together with the first bytes
    of its body when its socket is a :class:`ClientSocket` (see
    :meth:`ClientSocket.hold`).

    Not for chunked responses: a streaming app may yield ``b""`` to send its
    headers early, and gunicorn writes nothing for an empty chunk. Any other
    ``write()`` that sends the headers writes body bytes next, or nothing more
    until :meth:`close` (a HEAD, 204 or 304 response), which sends them.
    """

    def send_headers(self) -> None:
        sock = self.sock
        if self.headers_sent or self.chunked or not isinstance(sock, ClientSocket):
            super().send_headers()
            return
        with sock.hold():
            super().send_headers()

    def close(self) -> None:
        super().close()
        if isinstance(self.sock, ClientSocket):
            self.sock.send_held()


def on_the_wire(app: WSGIApplication) -> WSGIApplication:
    """``app``, with gunicorn closing the connection when the chain asks
    (:data:`~flask_prodserve.limits.CLOSE_CONNECTION`; gunicorn ignores a
    ``Connection: close`` from the app), a body that stops arriving
    answered with 408, and responses written by :class:`OneWriteResponse`."""

    def serve(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        response = getattr(start_response, "__self__", None)
        if type(response) is Response:
            # gthread makes a plain Response for every request, and gunicorn
            # has no setting for its class: this one, until it sends anything.
            response.__class__ = OneWriteResponse
        if environ.get("CONTENT_LENGTH") or "HTTP_TRANSFER_ENCODING" in environ:
            environ["wsgi.input"] = _BodyInput(environ["wsgi.input"], environ)
        body = app(environ, start_response)
        if environ.get(CLOSE_CONNECTION) and isinstance(response, Response):
            response.force_close()  # before it sends its headers
        return body

    return serve


class _ReadTimeout(RequestTimeout, TimeoutError):
    """The client sent no more of its body for ``--timeout`` seconds.

    An HTTP error (408) for Flask, and still a ``TimeoutError`` for code
    that catches the socket's own (BodyLimit buffering a chunked body).
    """

    description = "The request body stopped arriving."


class _Body(Protocol):
    def read(self, size: int | None = None, /) -> bytes: ...
    def readline(self, size: int | None = None, /) -> bytes: ...
    def readlines(self, size: int | None = None, /) -> list[bytes]: ...


class _BodyInput:
    """``wsgi.input`` whose read timeout raises :class:`_ReadTimeout` and
    closes the connection (where the next request starts is unknown)."""

    def __init__(self, body: _Body, environ: WSGIEnvironment) -> None:
        self.body = body
        self.environ = environ

    def read(self, size: int | None = None) -> bytes:
        return self._guard(self.body.read, size)

    def readline(self, size: int | None = None) -> bytes:
        return self._guard(self.body.readline, size)

    def readlines(self, size: int | None = None) -> list[bytes]:
        return self._guard(self.body.readlines, size)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def _guard(self, method: Callable[[int | None], _T], size: int | None) -> _T:
        try:
            return method(size)
        except TimeoutError:
            self.environ[CLOSE_CONNECTION] = True
            raise _ReadTimeout() from None
