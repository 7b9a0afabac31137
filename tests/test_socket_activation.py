"""systemd socket activation: the ``LISTEN_FDS`` protocol on real file
descriptors, and ``flask serve`` started by ``systemd-socket-activate`` on
every backend, answering connections made while no server was running."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from .helpers import ECHO, PROD_BACKENDS, ROOT, LiveServer

needs_socket_activate = pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None and not os.environ.get("CI"),
    reason="systemd-socket-activate is not installed: 'bash scripts/test.sh' installs it",
)

# ------------------------------------------------ the protocol, on real fds

# Runs in a fresh process: puts the passed fds where systemd puts them (3, 4,
# ...), sets the LISTEN_* variables ("self" is this process's ID) and reports
# what from_systemd made of them and which variables are left.
_PROBE = """
import fcntl, json, os, sys
from flask_prodserve.errors import ServeError
from flask_prodserve.sockets import from_systemd

passed = [int(fd) for fd in sys.argv[1].split(",") if fd]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in passed]
for fd in passed:
    os.close(fd)
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)
    os.close(fd)
variables = json.loads(sys.argv[2])
variables["LISTEN_PID"] = variables["LISTEN_PID"].replace("self", str(os.getpid()))
os.environ.update(variables)
try:
    sock = from_systemd(os.environ)
    result = sock and [sock.fileno(), *sock.getsockname()[:2]]
except ServeError as exc:
    result = str(exc)
left = sorted(k for k in os.environ if k.startswith("LISTEN_"))
print(json.dumps({"result": result, "left": left}))
"""

Opener = Callable[[ExitStack], list[Any]]


def probe(variables: dict[str, str], passed: list[Any]) -> dict[str, Any]:
    fds = [p if isinstance(p, int) else p.fileno() for p in passed]
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, ",".join(map(str, fds)), json.dumps(variables)],
        pass_fds=fds,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def tcp_listener(stack: ExitStack) -> socket.socket:
    sock = stack.enter_context(socket.socket())
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock


def _pipe(stack: ExitStack) -> list[Any]:
    read, write = os.pipe()
    stack.callback(os.close, read)
    stack.callback(os.close, write)
    return [read]


def _connection(stack: ExitStack) -> list[Any]:
    # What Accept=yes passes: an accepted connection, not the listening socket.
    listener = tcp_listener(stack)
    stack.enter_context(socket.create_connection(listener.getsockname(), timeout=10))
    return [stack.enter_context(listener.accept()[0])]


def _udp(stack: ExitStack) -> list[Any]:
    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    sock.bind(("127.0.0.1", 0))
    return [sock]


def _unix(stack: ExitStack) -> list[Any]:
    sock = stack.enter_context(socket.socket(socket.AF_UNIX))
    sock.bind("\0flask-prodserve-test-" + str(os.getpid()))  # abstract: no file to remove
    sock.listen(8)
    return [sock]


def test_a_listening_socket_is_taken_and_the_variables_removed() -> None:
    with ExitStack() as stack:
        sock = tcp_listener(stack)
        seen = probe({"LISTEN_PID": "self", "LISTEN_FDS": "1"}, [sock])
        assert seen == {"result": [3, *sock.getsockname()], "left": []}


@pytest.mark.parametrize(
    "variables",
    [
        pytest.param({"LISTEN_PID": "1", "LISTEN_FDS": "1"}, id="another-process's"),
        pytest.param({"LISTEN_PID": "self", "LISTEN_FDS": "0"}, id="LISTEN_FDS=0"),
        pytest.param({"LISTEN_PID": "", "LISTEN_FDS": "1"}, id="no-pid"),
    ],
)
def test_variables_not_for_this_process_are_ignored_and_removed(
    variables: dict[str, str],
) -> None:
    # As sd_listen_fds(unset_environment=1): the server binds as usual, and
    # nothing the server starts sees them either.
    with ExitStack() as stack:
        assert probe(variables, [tcp_listener(stack)]) == {"result": None, "left": []}


@pytest.mark.parametrize(
    ("opener", "count", "message"),
    [
        pytest.param(_pipe, "1", "fd 3 from systemd (LISTEN_FDS) is not a socket: use "
                     "ListenStream=HOST:PORT in the .socket unit.", id="pipe"),
        pytest.param(lambda stack: [], "1", "fd 3 from systemd (LISTEN_FDS) is not open. ",
                     id="not-open"),
        pytest.param(_connection, "1", "fd 3 from systemd (LISTEN_FDS) is a connection, not "
                     "a listening socket: set Accept=no in the .socket unit.", id="accept-yes"),
        pytest.param(_udp, "1", "is not a TCP stream socket (AF_INET, SOCK_DGRAM): use "
                     "ListenStream=HOST:PORT", id="datagram"),
        pytest.param(_unix, "1", "is a Unix socket (", id="unix"),
        pytest.param(lambda stack: [], "two", "LISTEN_FDS='two' is not a number of sockets",
                     id="not-a-number"),
    ],
)  # fmt: skip
def test_what_cannot_be_served_is_one_line_naming_the_fd_and_the_fix(
    opener: Opener, count: str, message: str
) -> None:
    with ExitStack() as stack:
        seen = probe({"LISTEN_PID": "self", "LISTEN_FDS": count}, opener(stack))
    assert message in seen["result"]
    assert "\n" not in seen["result"]
    assert seen["left"] == []


def test_of_several_sockets_the_one_named_http_is_served() -> None:
    with ExitStack() as stack:
        other, ours = tcp_listener(stack), tcp_listener(stack)
        variables = {"LISTEN_PID": "self", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "metrics:http"}
        assert probe(variables, [other, ours])["result"] == [4, *ours.getsockname()]
        variables["LISTEN_FDNAMES"] = "web.socket:web.socket"
        seen = probe(variables, [other, ours])
    assert seen["result"] == (
        "systemd passed 2 sockets (LISTEN_FDNAMES='web.socket:web.socket') and flask serve "
        "listens on one: set FileDescriptorName=http in the .socket unit of the one to serve."
    )


# ------------------------------------- systemd-socket-activate, real servers

MODES = {
    "gunicorn": ["--prod", "--server", "gunicorn"],
    "waitress": ["--prod", "--server", "waitress"],
    "werkzeug": ["--dev", "--no-reload"],
    "werkzeug-reloader": ["--dev", "--reload"],  # the reloader's child serves the socket
}
SOFTWARE = {"gunicorn": "gunicorn/", "waitress": "waitress", "werkzeug": "Werkzeug/"}


@pytest.fixture
def systemd_socket() -> Iterator[socket.socket]:
    """The listening socket, held by the test as systemd holds it: it stays
    open while servers come and go."""
    with ExitStack() as stack:
        yield tcp_listener(stack)


@pytest.fixture
def activate(
    flask_serve: Callable[..., LiveServer], systemd_socket: socket.socket
) -> Callable[..., LiveServer]:
    """Start ``flask serve`` under ``systemd-socket-activate``, which passes it
    the socket (as fd 3, named ``http``) once a connection is waiting."""
    fd = systemd_socket.fileno()
    move = "" if fd == 3 else f"exec 3<&{fd} {fd}<&-; "
    # systemd-socket-activate passes on the sockets it was given (sd_listen_fds).
    command = move + 'LISTEN_PID=$$ LISTEN_FDS=1 exec systemd-socket-activate --fdname=http "$@"'

    def start(mode: str, *extra: str) -> LiveServer:
        args = [*ECHO, "serve", *MODES[mode], *extra]
        launcher = ["bash", "-c", command, "bash"]
        server = flask_serve(args, wait=False, launcher=launcher, pass_fds=[fd])
        server.host, server.port = systemd_socket.getsockname()
        server.wait_for_log("Received 1 descriptors")  # systemd-socket-activate runs
        return server

    return start


def echo(server: LiveServer, path: str) -> dict[str, Any]:
    status, _, body = server.request("GET", path, timeout=30)
    assert status == 200, body
    data: dict[str, Any] = json.loads(body)
    return data


@needs_socket_activate
@pytest.mark.parametrize("mode", [*PROD_BACKENDS, "werkzeug", "werkzeug-reloader"])
def test_the_first_connection_starts_the_server_on_the_socket_systemd_passed(
    activate: Callable[..., LiveServer], mode: str
) -> None:
    server = activate(mode)
    assert "Serving Flask app" not in server.log  # nothing runs until a client comes
    environ = echo(server, "/echo/first")
    assert environ["SERVER_SOFTWARE"].startswith(SOFTWARE[mode.split("-")[0]])
    assert server.proc is not None
    if mode == "werkzeug-reloader":  # the parent watches files, its child serves
        assert environ["pid"] != server.proc.pid
    log = server.wait_for_log("/echo/first")
    assert "Communication attempt on fd 3." in log  # started by that connection
    address = f"127.0.0.1:{server.port}"
    banner = log.split("Execing", 1)[1]
    assert banner.count(f" * Listening on the socket systemd passed (fd 3), {address}\n") == 1
    assert f" * Running on http://{address}/\n" in banner
    assert "is ignored" not in banner
    assert server.terminate() == 0


@needs_socket_activate
@pytest.mark.parametrize("backend", PROD_BACKENDS)
def test_a_connection_made_while_no_server_runs_is_answered_by_the_next(
    activate: Callable[..., LiveServer], backend: str
) -> None:
    first = activate(backend)
    before = echo(first, "/echo/before")["pid"]
    assert first.terminate() == 0
    # What `systemctl restart` does between stop and start: the socket stays
    # open, so the kernel accepts the connection and queues it.
    waiting = http.client.HTTPConnection(first.host, first.port, timeout=30)
    try:
        waiting.request("GET", "/echo/between")
        second = activate(backend)
        response = waiting.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["pid"] != before
    finally:
        waiting.close()
    assert "/echo/between" in second.wait_for_log("/echo/between")
    assert second.terminate() == 0


@needs_socket_activate
def test_an_explicit_address_that_differs_from_the_socket_is_ignored_with_a_warning(
    activate: Callable[..., LiveServer],
) -> None:
    server = activate("waitress", "--host", "127.0.0.1", "--port", "9")
    echo(server, "/echo/x")
    log = server.wait_for_log("/echo/x")
    assert (
        " * Warning: --port 9 is ignored: systemd's socket decides where to listen (change "
        "ListenStream= in the .socket unit, or remove the setting)\n"
    ) in log
    assert "Warning: --host" not in log  # it agreed with the socket
    assert server.terminate() == 0


def test_an_fd_that_is_not_a_socket_stops_the_cli_with_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "PRODSERVE"))}
    command = 'exec 3</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"'
    args = [*ECHO, "serve", "--prod", "--server", "waitress"]
    done = subprocess.run(
        ["bash", "-c", command, "bash", sys.executable, "-m", "flask", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr == (
        "Error: fd 3 from systemd (LISTEN_FDS) is not a socket: use ListenStream=HOST:PORT "
        "in the .socket unit.\n"
    )
