"""waitress's HTTP/1.1 handling, made strict where it is too lenient.

Subclasses of waitress's parser, channel and task, installed on the server
by :func:`channel_class`:

- The parser refuses framing that a proxy in front could read differently
  (request smuggling): ``Transfer-Encoding`` with ``Content-Length``, given
  twice, listing ``chunked`` twice, or in an HTTP/1.0 request; and folded
  header lines (waitress would join a folded ``Transfer-Encoding``). It
  also enforces ``max_header_count`` and ``max_request_line``, which
  waitress lacks, and refuses what gunicorn 27's parser refuses and
  waitress 3.0.2 lets through: request lines without HTTP/1.0 or HTTP/1.1,
  targets in a form their method does not allow
  (:func:`~flask_prodserve.framing.request_line_problem`), and in chunked
  bodies, sizes too large to be a number and forbidden trailer fields
  (:mod:`.waitress_chunked`). A refused request gets its 4xx and the
  connection is closed: nothing after it is parsed.
- The channel knows two deadlines waitress lacks, checked by
  :meth:`Channel.check_deadlines`: a request's line and headers must arrive
  within ``header_timeout`` of its first byte (else 408 and close), and an
  idle keep-alive connection is closed after ``keepalive``. waitress's own
  ``channel_timeout`` measures inactivity only, so a client trickling a byte
  every few seconds would otherwise be kept forever. A client that closes
  its side before the end of the body it announced gets 400 (waitress
  would close without a word; the request never runs either way).
- The task closes the connection after a response when the WSGI chain set
  :data:`~flask_prodserve.bodylimit.CLOSE_CONNECTION` (an app may not send
  ``Connection: close`` through waitress).
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.task import WSGITask
from waitress.utilities import BadRequest, Error, RequestHeaderFieldsTooLarge, build_http_date

from ..bodylimit import CLOSE_CONNECTION
from ..framing import head_framing_problem, request_line_problem
from .waitress_chunked import ChunkedBody

if TYPE_CHECKING:
    from waitress.adjustments import Adjustments

    from ..config import ServeConfig

_CRLF = b"\r\n"


class URITooLong(BadRequest):
    """RFC 9112 section 3: a request line too long to parse gets 414, as
    under gunicorn and nginx (waitress has no such limit or status)."""

    code = 414
    reason = "URI Too Long"


class Parser(HTTPRequestParser):
    """Parses one request; refuses ambiguous framing and enforces our limits."""

    max_fields = 100
    max_line = 8190

    def __init__(self, adj: Adjustments) -> None:
        super().__init__(adj)
        # Made when the request's first bytes arrive: its header deadline starts here.
        self.started = time.time()  # waitress's clock (HTTPChannel.last_activity)
        self.line_done = False
        self.limit_error: Error | None = None  # a more precise status than ParsingError's 400

    def received(self, data: bytes) -> int:
        if not self.line_done and self.body_rcv is None and self._line_too_long(data):
            self._refuse(URITooLong(f"The request line is longer than {self.max_line} bytes."))
        else:
            consumed = super().received(data)
            if self.error is None:
                return consumed
            if self.limit_error is not None:
                self.error = self.limit_error
        # The connection closes after the error response: whatever follows
        # (a body, or a request hidden after it) must never be parsed.
        return len(data)

    def _line_too_long(self, data: bytes) -> bool:
        """The request line is over the limit, whether or not its end has arrived."""
        limit = self.max_line + 2  # with its CRLF
        # Bounded work per call; the window also covers blank lines before
        # the request (waitress skips them). parse_header checks exactly.
        window = 2 * limit
        head = (self.header_plus[:window] + data[:window]).lstrip()[:limit]
        if b"\n" in head:
            self.line_done = True
            return False
        return len(head) >= limit

    def _refuse(self, error: Error) -> None:
        # As waitress does for its own 431: the error task needs a request line.
        HTTPRequestParser.parse_header(self, b"GET / HTTP/1.0\r\n")
        self.error = error
        self.completed = True

    def parse_header(self, header_plus: bytes) -> None:
        # Byte-string searches first: most requests need no field-by-field scan.
        line, _, block = header_plus.partition(_CRLF)  # block ends with an empty line
        self._check_line(line)
        if block.startswith((b" ", b"\t")) or b"\r\n " in block or b"\r\n\t" in block:
            raise ParsingError("Folded header lines are not accepted.")  # waitress joins them
        if block.count(_CRLF) - 1 > self.max_fields:
            problem = f"More than {self.max_fields} header fields."
            self.limit_error = RequestHeaderFieldsTooLarge(problem)
            raise ParsingError(problem)
        if b"transfer-encoding" in block.lower():
            framing = head_framing_problem(header_plus)
            if framing:
                raise ParsingError(framing)
        super().parse_header(header_plus)
        if self.chunked and self.body_rcv is not None:
            # waitress's receiver with gunicorn 27's checks. waitress's limits
            # are ours plus one (see .waitress.adjustments).
            self.body_rcv = ChunkedBody(
                self.body_rcv.buf,
                max_size=self.adj.max_request_body_size - 1,
                max_head=self.adj.max_request_header_size - 1,
            )

    def _check_line(self, line: bytes) -> None:
        if len(line) > self.max_line:
            too_long = f"The request line is longer than {self.max_line} bytes."
            self.limit_error = URITooLong(too_long)
            raise ParsingError(too_long)
        problem = request_line_problem(line)  # waitress serves HTTP/0.9, GET *, ...
        if problem:
            raise ParsingError(problem)


class Task(WSGITask):
    """Runs the WSGI app; closes the connection when the chain asks for it."""

    def build_response_header(self) -> bytes:
        # Called once, just before the status line and headers are written.
        if self.environ is not None and self.environ.get(CLOSE_CONNECTION):
            self.set_close_on_finish()  # adds Connection: close
        return super().build_response_header()


class Channel(HTTPChannel):
    """One client connection, with a header deadline and a keep-alive limit."""

    task_class = Task
    parser_class = Parser
    header_timeout = 10.0
    keepalive = 5.0
    served_at = 0.0  # when the last response was handed over; 0: none yet
    reading = False  # in handle_read()

    def service(self) -> None:
        super().service()
        self.served_at = time.time()

    def check_deadlines(self, now: float) -> None:
        """Close the connection if its client is too slow or it idles too long."""
        if self.requests or self.will_close or self.close_when_flushed:
            return  # a request is being served, or the connection is closing anyway
        request = self.request
        if request is None:
            # Before the first request the client gets as long as for headers.
            idle = self.keepalive if self.served_at else self.header_timeout
            if not self.total_outbufs_len and now - self.last_activity >= idle:
                self.will_close = True
        elif (
            isinstance(request, Parser)
            and not request.headers_finished
            # A pipelined request's clock starts when the one before it is done.
            and now - max(request.started, self.served_at) >= self.header_timeout
        ):
            self._time_out(now)

    def _time_out(self, now: float) -> None:
        """Answer 408 (best effort: a client this slow may not read it) and close."""
        self._answer_and_close(
            "408 Request Timeout", f"the headers took over {self.header_timeout:g} s.", now
        )

    def handle_read(self) -> None:
        # At the client's end of stream waitress's recv() calls handle_close()
        # itself; the flag tells handle_close() that this is why.
        self.reading = True
        try:
            super().handle_read()
        finally:
            self.reading = False

    def handle_close(self) -> None:
        request = self.request
        if self.reading and request is not None and request.headers_finished:
            # The client closed its side before the end of the body it
            # announced. waitress runs a request only once its body is
            # complete, so this one never runs; RFC 9112 section 8 lets a
            # server answer an incomplete request with an error first.
            self._answer_and_close(
                "400 Bad Request", "the connection ended before the request body did.", time.time()
            )
        super().handle_close()

    def _answer_and_close(self, status: str, why: str, now: float) -> None:
        """Send a final response straight to the socket and mark the connection closing."""
        body = f"{status[4:]}: {why}\n"
        head = [
            f"HTTP/1.1 {status}",
            "Connection: close",
            f"Content-Length: {len(body)}",
            "Content-Type: text/plain; charset=utf-8",
            f"Date: {build_http_date(int(now))}",
            f"Server: {self.adj.ident}",
        ]
        data = ("\r\n".join(head) + "\r\n\r\n" + body).encode("latin-1")
        # Not behind the unsent rest of an earlier response (a pipelining client).
        if self.socket is not None and not self.total_outbufs_len:
            with contextlib.suppress(OSError):  # the client is gone or not reading
                self.socket.send(data)
        self.will_close = True


def channel_class(config: ServeConfig) -> type[Channel]:
    """The channel class for ``config`` (limits and deadlines as class attributes)."""

    class ConfiguredParser(Parser):
        max_fields = config.max_header_count
        max_line = config.max_request_line

    class ConfiguredChannel(Channel):
        parser_class = ConfiguredParser
        header_timeout = float(config.header_timeout)
        keepalive = float(config.keepalive)

    return ConfiguredChannel


def check_deadlines(server: Any, now: float) -> None:
    """Apply :meth:`Channel.check_deadlines` to every connection of ``server``."""
    for channel in list(server.active_channels.values()):
        if isinstance(channel, Channel):
            channel.check_deadlines(now)
