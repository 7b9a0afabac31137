"""Request framing that two HTTP parsers could read differently.

Both production backends refuse these with a 400 and close the connection:
a proxy in front that picks the other reading would see a second request
hidden in the body (request smuggling). gunicorn refuses some of them
itself and waitress 3.0.2 none, so each backend checks the request head
with :func:`framing_problem` before its own parser acts on it.

:func:`request_line_problem` and :func:`trailer_problem` hold the rules of
gunicorn 27's parser for request lines and trailer fields, which waitress
3.0.2 does not apply: its parser uses them to refuse what gunicorn refuses.
"""

from __future__ import annotations

import re


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


# RFC 9112 section 3.2 and RFC 3986 section 2: a request target is printable
# ASCII; anything else must be percent-encoded.
_TARGET_INVALID = re.compile(rb"[^\x21-\x7e]")
_VERSIONS = (b"HTTP/1.0", b"HTTP/1.1")


def request_line_problem(line: bytes) -> str | None:
    """Why ``line`` is not a request line to act on, or None.

    RFC 9112 section 3: method, target and version separated by single
    spaces; gunicorn 27 refuses anything else, and versions other than
    HTTP/1.x. Only HTTP/1.0 and HTTP/1.1 are accepted here: what a server
    does with HTTP/1.2 is a guess, and a request line without a version is
    HTTP/0.9, which has no headers and no status line.
    """
    parts = line.split(b" ", 2)
    if len(parts) != 3:
        return "The request line needs a method, a target and an HTTP version."
    method, target, version = parts
    if version not in _VERSIONS:
        return "Only HTTP/1.0 and HTTP/1.1 requests are served."
    return target_problem(method, target)


def target_problem(method: bytes, target: bytes) -> str | None:
    """Why ``target`` is not a request target that ``method`` allows, or None."""
    if not target or _TARGET_INVALID.search(target):
        return "The request target is empty or has characters that must be percent-encoded."
    if target == b"*":  # asterisk-form, RFC 9112 section 3.2.4
        return None if method == b"OPTIONS" else "The target * is only for OPTIONS requests."
    # Origin-form (/path) and absolute-form (http://host/path) are for every
    # method; anything else is authority-form (host:port), only for CONNECT
    # (RFC 9112 section 3.2.3). As gunicorn 27 tells them apart.
    if method != b"CONNECT" and not target.startswith(b"/") and b"://" not in target:
        return "The request target must be a path (/...) or an absolute URL (http://...)."
    return None


# RFC 9110 section 6.5.1: fields that route, frame or authenticate a message
# must not arrive after its body; gunicorn 27 refuses these.
FORBIDDEN_TRAILERS = frozenset(
    (b"host", b"content-length", b"transfer-encoding", b"trailer", b"authorization", b"te")
)
# RFC 9110 section 5.1 and 5.5: a token, a colon, then visible characters,
# spaces and tabs (no folded lines, no control characters, no bare CR).
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[\t\x20-\x7e\x80-\xff]*")


def trailer_problem(section: bytes) -> str | None:
    """Why the trailer section of a chunked body must be refused, or None.

    ``section`` is the trailer lines, without the empty line that ends them.
    The rules of gunicorn 27: every line a well-formed field, none of
    :data:`FORBIDDEN_TRAILERS` and no second Content-Type. (gunicorn drops
    names with an underscore by default, as waitress does.)
    """
    names = []
    for line in section.split(b"\r\n"):
        match = _FIELD.fullmatch(line)
        if match is None:
            return "A trailer line is not a valid header field."
        names.append(match[1])
    for name in names:
        if name.lower() in FORBIDDEN_TRAILERS:
            return f"{name.decode()} may not be sent as a trailer field."
    if [name.lower() for name in names].count(b"content-type") > 1:
        return "Content-Type is given twice in the trailer fields."
    return None
