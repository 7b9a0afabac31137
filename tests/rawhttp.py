"""Raw HTTP/1.1 over a socket, for tests where the exact bytes on the wire matter.

``http.client`` normalises what it sends and hides what the server does with
the connection; this sends bytes as given and reads responses as they come.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""


class RawClient:
    """One client connection; every read waits at most ``timeout`` seconds."""

    def __init__(self, host: str, port: int, timeout: float = 10) -> None:
        self.sock = socket.create_connection((host.strip("[]"), port), timeout=timeout)
        self.buf = b""
        self.eof = False

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        """Read more; EOF or a reset both end the stream."""
        if self.eof:
            raise ConnectionError(f"connection closed; unparsed: {self.buf[:200]!r}")
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
        self.buf += data

    def _take(self, size: int) -> bytes:
        while len(self.buf) < size:
            self._fill()
        data, self.buf = self.buf[:size], self.buf[size:]
        return data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_response(self) -> Response:
        """The next complete response (raises ``TimeoutError`` if none comes)."""
        status = int(self._line().split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = self._take(int(headers["content-length"]))
        elif "chunked" in headers.get("transfer-encoding", ""):
            body = self._chunked()
        elif status < 200 or status in (204, 304):
            body = b""
        else:
            while not self.eof:
                self._fill()
            body, self.buf = self.buf, b""
        return Response(status, headers, body)

    def _chunked(self) -> bytes:
        body = b""
        while size := int(self._line().split(b";")[0], 16):
            body += self._take(size)
            self._line()
        while self._line():  # trailers
            pass
        return body

    def closed_within(self, seconds: float) -> bool:
        """Whether the server closes the connection within ``seconds``
        (any bytes still unread are discarded)."""
        deadline = time.monotonic() + seconds
        while not self.eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                self._fill()
            except TimeoutError:
                return False
        return True


def request(method: str, path: str, *headers: str, body: bytes = b"") -> bytes:
    """The bytes of one request: ``request("GET", "/", "Host: x")``."""
    head = "".join(f"{h}\r\n" for h in (f"{method} {path} HTTP/1.1", *headers))
    return (head + "\r\n").encode("latin-1") + body
