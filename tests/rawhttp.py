"""Raw HTTP/1.1 over a socket, for tests where the exact bytes matter.

Send any bytes (requests are written by hand, malformed ones included), read
one complete response, parsed by h11 (Content-Length, chunked, or until the
server closes), and tell whether the server closed the connection.
A reset counts as closed: a server that closes with request bytes still
unread sends one, after its response (Linux keeps that response readable).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import h11

# h11 reads a response as the answer to a request it saw sent; the tests send
# their own bytes, so each response is read as the answer to this one. (A
# response to HEAD would be read as having a body: no test sends HEAD here.)
_ASKED = h11.Request(method="GET", target="/", headers=[("Host", "rawhttp")])


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; repeated names joined with ", "
    body: bytes
    raw_head: bytes = field(repr=False, default=b"")


class RawClient:
    """One client connection to ``host:port``; every read has a deadline."""

    def __init__(self, host: str, port: int, timeout: float = 10) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buffer = b""
        self.eof = False

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        """Read more into the buffer; False at EOF (or reset)."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from the server in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def response(self, timeout: float | None = None) -> Response:
        """Read one response; ``ConnectionError`` if the server closes first."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill(deadline):
                raise ConnectionError(f"closed before a full response: {self.buffer!r}")
        raw_head = self.buffer.split(b"\r\n\r\n", 1)[0]
        parser = h11.Connection(h11.CLIENT)
        parser.send(_ASKED)
        parser.send(h11.EndOfMessage())
        head: h11.Response | h11.InformationalResponse | None = None
        body: list[bytes] = []
        told_closed = False
        while True:
            if self.buffer:
                parser.receive_data(self.buffer)
                self.buffer = b""
            elif self.eof and not told_closed:
                parser.receive_data(b"")  # the server closed
                told_closed = True
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as exc:
                raise ConnectionError(f"closed in a response ({exc}): {raw_head!r}") from None
            if event is h11.NEED_DATA:
                self._fill(deadline)  # more bytes in the buffer, or eof
            elif isinstance(event, h11.InformationalResponse):
                head = event  # 100 Continue: a response of its own, without a body
                break
            elif isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            else:  # EndOfMessage, or ConnectionClosed after a body delimited by the close
                break
        self.buffer = bytes(parser.trailing_data[0])
        assert head is not None
        headers: dict[str, str] = {}
        for name, value in head.headers:  # names are lower case
            key, text = name.decode("latin-1"), value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        return Response(head.status_code, headers, b"".join(body), raw_head)

    def wait_closed(self, timeout: float) -> float | None:
        """Seconds until the server closed the connection, or None if it is
        still open after ``timeout``. Bytes that arrive meanwhile stay in
        :attr:`buffer` for the caller to check."""
        started = time.monotonic()
        deadline = started + timeout
        try:
            while self._fill(deadline):
                pass
        except TimeoutError:
            return None
        return time.monotonic() - started


def exchange(host: str, port: int, data: bytes, timeout: float = 10) -> tuple[Response, bool]:
    """Send ``data`` on a new connection; the first response, and whether the
    server then closed the connection (within ``timeout``) without sending more."""
    with RawClient(host, port, timeout) as client:
        client.send(data)
        response = client.response()
        closed = client.wait_closed(timeout) is not None and not client.buffer
    return response, closed


def request(method: str, path: str, *headers: str, body: bytes = b"") -> bytes:
    """The bytes of one request: ``request("GET", "/", "Host: x")``."""
    head = "".join(f"{h}\r\n" for h in (f"{method} {path} HTTP/1.1", *headers))
    return (head + "\r\n").encode("latin-1") + body
