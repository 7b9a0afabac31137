"""The request-head gate: when the bytes of a request head are complete,
too large or ambiguous. Pure; the gunicorn worker applies it in its event
loop (:mod:`.gunicorn_worker`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..framing import head_framing_problem

#: Where a request head ends: the empty line. A bare-LF one is let through
#: for gunicorn's parser to refuse (400) rather than left to time out.
_HEAD_END = re.compile(rb"\n\r?\n")
_TRANSFER_ENCODING = b"transfer-encoding"

#: Return value of :func:`head_verdict`: hand the request to gunicorn.
PASS = 0

REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
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


@dataclass(frozen=True)
class GateLimits:
    """The limits the gate and the worker enforce, in seconds and bytes
    (``read_timeout``: for each read and write while a request is handled)."""

    header_timeout: float = 10
    max_header_size: int = 64 * 1024
    read_timeout: float = 30


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
