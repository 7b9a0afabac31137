"""waitress's chunked-body receiver, with the checks gunicorn 27 makes.

waitress 3.0.2 reads a chunk size of any length and then waits for that
many bytes (a size of 2^160 holds the connection until ``--timeout``), lets
a chunk-size line or a trailer section grow until the body limit, and
ignores the trailer fields it receives. :class:`ChunkedBody` refuses, as
soon as the bytes that show it have arrived:

- a chunk size too large to be a number (over 63 bits): 400;
- a chunk that would take the body over ``--max-body-size``: 413 at once,
  rather than after that many bytes have been read;
- a chunk-size line or trailer section longer than ``--max-header-size``
  (400 and 431, as gunicorn), or with a bare LF, which would never end
  (RFC 9112 section 2.2);
- trailer fields that :func:`~flask_prodserve.framing.trailer_problem`
  refuses (``Content-Length``, ``Host``, ``Transfer-Encoding``, ...).

The connection is closed after the error response (see ``Parser``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from waitress.receiver import ChunkedReceiver
from waitress.utilities import BadRequest, RequestEntityTooLarge, RequestHeaderFieldsTooLarge

from ..framing import trailer_problem

if TYPE_CHECKING:
    from waitress.buffers import OverflowableBuffer

# A chunk size that does not fit a signed 64-bit integer is not a size any
# server can honour (nginx and others refuse it as well).
_LARGEST_CHUNK = 2**63 - 1
_END = b"\r\n\r\n"


class ChunkedBody(ChunkedReceiver):
    """Receives a chunked body; refuses sizes, lines and trailers gunicorn 27 refuses."""

    def __init__(self, buf: OverflowableBuffer, max_size: int, max_head: int) -> None:
        super().__init__(buf)
        self.max_size = max_size  # the body's bytes, without the chunk framing
        self.max_head = max_head  # a chunk-size line, and the trailer section

    def received(self, s: bytes) -> int:
        consumed = super().received(s)
        if self.error is None:
            self.error = self._problem()
        return consumed

    def _problem(self) -> BadRequest | None:
        # Checked after each read: waitress's loop has parsed what arrived.
        if self.chunk_remainder > _LARGEST_CHUNK:
            return BadRequest("The chunk size is too large to be a number.")
        if len(self.buf) + self.chunk_remainder > self.max_size:
            return RequestEntityTooLarge(
                f"The request body is larger than this server accepts ({self.max_size} bytes)."
            )
        if len(self.control_line) > self.max_head or b"\n" in self.control_line:
            return BadRequest("The chunk-size line is too long or ends with a bare LF.")
        if len(self.trailer) > self.max_head:
            return RequestHeaderFieldsTooLarge(
                f"The trailer fields are longer than {self.max_head} bytes."
            )
        if self.trailer.count(b"\n") != self.trailer.count(b"\r\n"):
            return BadRequest("A trailer line ends with a bare LF.")
        # Once complete, waitress keeps the trailer section with its ending,
        # or nothing (at most a CR) when the body had no trailer fields.
        if self.completed and self.trailer.endswith(_END):
            problem = trailer_problem(self.trailer[: -len(_END)])
            return None if problem is None else BadRequest(problem)
        return None
