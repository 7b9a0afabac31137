"""Raw HTTP/1.1 over a socket, for tests where the exact bytes matter.

Send any bytes, read one complete response (Content-Length, chunked, or
until the server closes), and tell whether the server closed the connection.
A reset counts as closed: a server that closes with request bytes still
unread sends one, after its response (Linux keeps that response readable).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field


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

    def _take(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size:
            if not self._fill(deadline):
                raise ConnectionError(f"closed after {len(self.buffer)} of {size} bytes")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _line(self, deadline: float) -> bytes:
        while b"\r\n" not in self.buffer:
            if not self._fill(deadline):
                raise ConnectionError("closed in the middle of a line")
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def response(self, timeout: float | None = None) -> Response:
        """Read one response; ``ConnectionError`` if the server closes first."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill(deadline):
                raise ConnectionError(f"closed before a full response: {self.buffer!r}")
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        body = self._body(headers, deadline)
        return Response(int(status_line.split()[1]), headers, body, head)

    def _body(self, headers: dict[str, str], deadline: float) -> bytes:
        if "content-length" in headers:
            return self._take(int(headers["content-length"]), deadline)
        if "chunked" in headers.get("transfer-encoding", ""):
            chunks = []
            while size := int(self._line(deadline).split(b";")[0], 16):
                chunks.append(self._take(size, deadline))
                self._take(2, deadline)
            while self._line(deadline):  # trailer fields, then the empty line
                pass
            return b"".join(chunks)
        while self._fill(deadline):  # delimited by the server closing
            pass
        body, self.buffer = self.buffer, b""
        return body

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
