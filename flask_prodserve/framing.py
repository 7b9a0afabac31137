"""Request framing that two HTTP parsers could read differently.

Both production backends refuse these with a 400 and close the connection:
a proxy in front that picks the other reading would see a second request
hidden in the body (request smuggling). gunicorn refuses some of them
itself and waitress 3.0.2 none, so each backend checks the request head
with :func:`framing_problem` before its own parser acts on it.
"""

from __future__ import annotations


def framing_problem(line: bytes, fields: list[tuple[bytes, bytes]]) -> str | None:
    """Why the body's length could be read two ways, or None.

    ``line`` is the request line; ``fields`` are (lower-case name, value)
    pairs. RFC 9112 (6.1, 6.3) lets a server refuse all of these.
    """
    codings = [v for name, v in fields if name == b"transfer-encoding"]
    if not codings:
        return None
    if len(codings) > 1:
        return "Transfer-Encoding is given more than once."
    if [c.strip(b" \t").lower() for c in codings[0].split(b",")].count(b"chunked") > 1:
        return "Transfer-Encoding lists chunked more than once."
    if any(name == b"content-length" for name, _ in fields):
        return "Both Transfer-Encoding and Content-Length are given."
    if not line.rstrip().endswith(b" HTTP/1.1"):
        return "Transfer-Encoding is only accepted in HTTP/1.1 requests."
    return None


def head_framing_problem(head: bytes) -> str | None:
    """:func:`framing_problem` for a raw request head (its lines, without the empty one)."""
    lines = [line.rstrip(b"\r") for line in head.split(b"\n")]
    while lines and not lines[0]:  # blank lines before the request are allowed
        lines.pop(0)
    if not lines:
        return None
    pairs = (f.partition(b":") for f in lines[1:] if f)
    return framing_problem(lines[0], [(n.strip().lower(), v) for n, _, v in pairs])
