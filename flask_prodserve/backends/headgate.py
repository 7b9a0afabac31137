"""The request-head gate: when the bytes of a request head are complete,
too large or ambiguous. Pure; the gunicorn worker applies it in its event
loop (:mod:`.gunicorn_worker`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..bodylimit import BodyTooLarge
from ..framing import head_framing_problem, request_line_problem, trailer_problem

#: Where a request head ends: the empty line. A bare-LF one is let through
#: for gunicorn's parser to refuse (400) rather than left to time out.
_HEAD_END = re.compile(rb"\n\r?\n")
_TRANSFER_ENCODING = b"transfer-encoding"

#: Return value of :func:`head_verdict`: hand the request to gunicorn.
PASS = 0

REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
}


def _error(status: int) -> bytes:
    reason = REASONS[status]
    return (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(reason) + 1}\r\n"
        f"\r\n{reason}\n"
    ).encode()


#: The whole response for each refusal, by status.
ERRORS = {status: _error(status) for status in REASONS}


def head_end(head: bytes | bytearray) -> int:
    """Where a complete request head ends (after its empty line)."""
    end = _HEAD_END.search(head)
    return len(head) if end is None else end.end()


def chunked_body(head: bytes) -> bool:
    """Whether the request whose head this is sends a chunked body."""
    for line in head.lower().split(b"\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip() == _TRANSFER_ENCODING and value.strip().endswith(b"chunked"):
            return True
    return False


@dataclass(frozen=True)
class GateLimits:
    """The limits the gate and the worker enforce, in seconds and bytes
    (``read_timeout``: for each read and write while a request is handled)."""

    header_timeout: float = 10
    max_header_size: int = 64 * 1024
    read_timeout: float = 30
    max_body_size: int = 1024**3


def head_verdict(head: bytearray, checked: int, max_size: int, max_line: int) -> int | None:
    """What to do with the bytes of a request head received so far.

    ``None``: wait for more; :data:`PASS`: hand the request to gunicorn's
    parser; otherwise the HTTP status to refuse it with. ``checked`` bytes of
    ``head`` were looked at before (the search for the end resumes there).
    """
    if len(head) > max_line + 4 and head.find(b"\n", 2, max_line + 4) < 0:
        # The request line alone is too long (after one optional CRLF), whether
        # or not the rest arrived: gunicorn before 27 would answer 400.
        return 414
    end = _HEAD_END.search(head, max(checked - 2, 0))
    if end is None:
        return 431 if len(head) >= max_size else None
    if end.end() > max_size:
        return 431
    # gunicorn refuses "chunked" twice and chunked with Content-Length, but not
    # e.g. "gzip" on one line and "chunked" on the next: check them all here.
    block = bytes(head[: end.start()])
    if _TRANSFER_ENCODING in block.lower() and head_framing_problem(block):
        return 400
    # The same request lines as under waitress, whatever gunicorn's release
    # (27 takes HTTP/1.2 for HTTP/1.x; 23 takes more).
    if request_line_problem(block.lstrip(b"\r\n").split(b"\n", 1)[0].rstrip(b"\r")):
        return 400
    return PASS


class ChunkedFraming:
    """Follows the chunked framing of a body as its bytes pass to gunicorn's
    parser, to refuse what every gunicorn release should, as soon as it
    arrives.

    gunicorn takes any number of hex digits as a chunk size and then waits for
    that many bytes (2^160 of them, if the client says so) until the read
    deadline; and before 27 it takes trailer fields that must never be
    trailers (RFC 9110, 6.5.1) and a body cut short in its trailers.
    :meth:`feed` raises :class:`~flask_prodserve.bodylimit.BodyTooLarge` (413)
    for a size over ``max_size``, and :class:`ValueError` (400) for a size of
    more than 16 digits, a line not ended by CRLF or too long, or a
    forbidden trailer; :meth:`ended` raises ValueError if the stream ended
    before the body did.
    """

    _MAX_LINE = 4096

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.line = bytearray()  # the size or trailer line so far
        self.skip = 0  # data bytes (and their CRLF) still to pass over
        self.trailers: list[bytes] | None = None  # after the last chunk
        self.done = False  # the empty line after the trailers was seen

    def feed(self, data: bytes) -> None:
        at = 0
        while at < len(data) and not self.done:
            if self.skip:
                step = min(self.skip, len(data) - at)
                self.skip -= step
                at += step
                continue
            end = data.find(b"\n", at)
            self.line += data[at : len(data) if end < 0 else end]
            if len(self.line) > self._MAX_LINE:
                raise ValueError("a chunk size or trailer line with no end")
            if end < 0:
                return
            at = end + 1
            if not self.line.endswith(b"\r"):
                raise ValueError("a line of the chunked body ended by LF alone")
            line = bytes(self.line[:-1])
            self.line.clear()
            self._line(line)

    def ended(self) -> None:
        """The stream ended (the client closed its side)."""
        if not self.done:
            raise ValueError("the chunked body ended before its last chunk and trailers")

    def _line(self, line: bytes) -> None:
        if self.trailers is None:
            self._size(line.split(b";", 1)[0].strip(b" \t"))
        elif line:
            self.trailers.append(line)
        else:
            self.done = True
            problem = trailer_problem(b"\r\n".join(self.trailers)) if self.trailers else None
            if problem:
                raise ValueError(problem)

    def _size(self, digits: bytes) -> None:
        if len(digits) > 16:
            raise ValueError(f"a chunk size of {len(digits)} hex digits")
        size = int(digits, 16)  # ValueError for no hex number: gunicorn refuses it too
        if size > self.max_size:
            raise BodyTooLarge(size)
        if size == 0:
            self.trailers = []  # the last chunk: trailer lines follow, then an empty one
        else:
            self.skip = size + 2  # the data and its CRLF
