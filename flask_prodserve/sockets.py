"""Open the listening socket before any server starts, or take systemd's.

Binding here, once, for every backend gives the same "port in use" error
everywhere, lets ``--port 0`` report the port the OS picked in the banner,
and hands each server a socket it already knows how to adopt (waitress
``sockets=``, gunicorn ``fd://``, Werkzeug ``fd=``).

Under systemd socket activation the socket is already bound and listening
(:func:`from_systemd`), and every backend is handed that one the same way.
systemd keeps it open while the service restarts, so connections wait in
its queue instead of being refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import ipaddress
import os
import socket
import stat
import sys
from collections.abc import MutableMapping
from typing import TYPE_CHECKING

from werkzeug.serving import get_interface_ip

from .config import Layer, Origin
from .errors import ServeError

if TYPE_CHECKING:
    from .config import ServeConfig

#: The first file descriptor systemd passes (``SD_LISTEN_FDS_START``).
LISTEN_FDS_START = 3
#: When systemd passes several sockets, the one named so is served
#: (``FileDescriptorName=`` in the ``.socket`` unit, ``LISTEN_FDNAMES``).
FD_NAME = "http"
_LISTEN_VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
_LISTEN_STREAM = "use ListenStream=HOST:PORT in the .socket unit"


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


def from_systemd(environ: MutableMapping[str, str]) -> socket.socket | None:
    """The listening socket systemd passed to this process, or None.

    Follows ``sd_listen_fds(unset_environment=1)``: the sockets are for the
    process whose ID is ``LISTEN_PID``, and the variables are removed either
    way, so a process we start (the reloader's child, a gunicorn worker)
    never takes them for its own. ``LISTEN_FDS=0`` means none.
    """
    pid, count, names = (environ.pop(name, None) for name in _LISTEN_VARS)
    if pid is None or pid.strip() != str(os.getpid()) or count in (None, "0"):
        return None
    if not count.isdigit():
        raise ServeError(
            f"LISTEN_FDS={count!r} is not a number of sockets. It is set by systemd; "
            "unset LISTEN_FDS and LISTEN_PID if you set them yourself."
        )
    fds = range(LISTEN_FDS_START, LISTEN_FDS_START + int(count))
    fd = _chosen(fds, names)
    for other in fds:  # sd_listen_fds marks them close-on-exec; only ours is used
        if other != fd:
            with contextlib.suppress(OSError):  # not open: nothing to mark
                os.set_inheritable(other, False)
    return _listening(fd)


def _chosen(fds: range, names: str | None) -> int:
    if len(fds) == 1:
        return fds[0]
    named = [fd for fd, name in zip(fds, (names or "").split(":"), strict=False) if name == FD_NAME]
    if len(named) == 1:
        return named[0]
    raise ServeError(
        f"systemd passed {len(fds)} sockets (LISTEN_FDNAMES={names or ''!r}) and flask "
        f"serve listens on one: set FileDescriptorName={FD_NAME} in the .socket unit "
        "of the one to serve."
    )


def _listening(fd: int) -> socket.socket:
    """``fd`` as a socket, if it is a listening TCP socket."""
    where = f"fd {fd} from systemd (LISTEN_FDS)"
    try:
        is_socket = stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        raise ServeError(
            f"{where} is not open. Let systemd start flask serve from the service its "
            ".socket unit activates, or unset LISTEN_FDS and LISTEN_PID."
        ) from None
    if not is_socket:
        raise ServeError(f"{where} is not a socket: {_LISTEN_STREAM}.")
    sock = socket.socket(fileno=fd)
    problem = _not_listening_tcp(sock)
    if problem:
        sock.detach()  # not ours to close
        raise ServeError(f"{where} is {problem}.")
    sock.set_inheritable(True)  # the dev server's reloader child adopts it
    return sock


def _not_listening_tcp(sock: socket.socket) -> str:
    """Why ``sock`` cannot be served, or ``""``."""
    if sock.family == getattr(socket, "AF_UNIX", None):
        # Our --host/--port, banner and checks speak TCP (and gunicorn would
        # delete a socket file systemd owns when it stops).
        return f"a Unix socket ({sock.getsockname()}): flask serve serves TCP; {_LISTEN_STREAM}"
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        kind = ", ".join(str(getattr(v, "name", v)) for v in (sock.family, sock.type))
        return f"not a TCP stream socket ({kind}): {_LISTEN_STREAM}"
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        return "a connection, not a listening socket: set Accept=no in the .socket unit"
    return ""


def adopt(config: ServeConfig, sock: socket.socket) -> ServeConfig:
    """``config`` with the host and port ``sock`` listens on, whose origin says
    systemd set them and names any explicit setting they replaced."""
    host, port = sock.getsockname()[:2]
    label = f"the socket systemd passed (fd {sock.fileno()})"
    origins = dict(config.origins)
    for name, value in (("host", host), ("port", port)):
        given, origin = getattr(config, name), config.origins[name]
        replaced = origin.layer is not Layer.DEFAULT and given != value
        origins[name] = Origin(Layer.SYSTEMD, label, f"{origin.label} {given}" if replaced else "")
    return dataclasses.replace(config, host=host, port=port, origins=origins)
