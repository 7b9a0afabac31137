"""Open the listening socket before any server starts.

Binding here, once, for every backend gives the same "port in use" error
everywhere, lets ``--port 0`` report the port the OS picked in the banner,
and hands each server a socket it already knows how to adopt (waitress
``sockets=``, gunicorn ``fd://``, Werkzeug ``fd=``).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys

from werkzeug.serving import get_interface_ip

from .errors import ServeError


def bind(host: str, port: int, backlog: int, *, where: str = "--port") -> socket.socket:
    """A listening TCP socket on ``host:port``; raises :class:`ServeError`."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ServeError(
            f"Cannot listen on {host!r}: {exc.strerror}. Use an address of this machine, "
            "such as 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)."
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        if sys.platform == "win32":
            # On Windows SO_REUSEADDR lets another process steal a bound port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined,unused-ignore]
        else:
            # Restart at once after a stop, without waiting out TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ServeError(_explain(exc, host, port, where)) from None
    sock.set_inheritable(True)  # the dev server's reloader child adopts it
    return sock


def _explain(exc: OSError, host: str, port: int, where: str) -> str:
    if exc.errno == errno.EADDRINUSE or getattr(exc, "winerror", None) == 10048:
        return (
            f"Port {port} on {host} is already in use by another program (port from {where}). "
            "Stop that program, or choose another port with --port."
        )
    if exc.errno == errno.EACCES:
        return (
            f"Not allowed to listen on port {port} (port from {where}): ports below 1024 "
            "need administrator rights. Use a port such as 8000."
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"Cannot listen on {host}: it is not an address of this machine. "
            "Use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)."
        )
    return f"Cannot listen on {host}:{port}: {exc.strerror or exc}."


def display_urls(sock: socket.socket, prefix: str) -> list[str]:
    """URLs a person can open for the bound socket, with the prefix."""
    host, port = sock.getsockname()[:2]
    hosts = [host]
    if host == "0.0.0.0":
        hosts = ["127.0.0.1", get_interface_ip(socket.AF_INET)]
    elif host == "::":
        hosts = ["::1", get_interface_ip(socket.AF_INET6)]
    shown = [f"[{h}]" if ":" in h else h for h in dict.fromkeys(hosts)]
    return [f"http://{h}:{port}{prefix}/" for h in shown]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # a host name other than localhost
