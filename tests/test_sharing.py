"""Kept-alive connections shared by the workers (flask_prodserve/backends/sharing.py):
what the workers share through, then a real 2-worker server on loopback."""

from __future__ import annotations

import json
import os
import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fcntl", reason="sharing connections takes Linux")

from flask_prodserve.backends import sharing  # after the skip above
from flask_prodserve.backends.balance import Board
from flask_prodserve.backends.sharing import Selector, Shares

from .helpers import LiveServer, children, needs_gunicorn, serve_args
from .rawhttp import RawClient, request

pytestmark = pytest.mark.skipif(
    not sharing.supported(), reason="sharing connections takes Linux (EPOLLEXCLUSIVE, memfd)"
)
HOST = "Host: localhost"


@pytest.fixture
def shares() -> Iterator[Shares]:
    """Shares of a board whose slots 0 and 1 are up (this process plays both workers)."""
    board = Board(4)
    for slot in (board.reserve(), board.reserve()):
        assert slot is not None
        board.claim(slot)
    made = Shares(board, inboxes=2)
    yield made
    made.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A client and the server's end of one TCP connection on loopback."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=5)
        server, _ = listener.accept()
    with client, server:
        yield client, server


def test_a_copy_given_to_the_other_worker_is_the_same_connection(
    shares: Shares, pair: tuple[socket.socket, socket.socket]
) -> None:
    client, server = pair
    cell = shares.cell(0, 5)
    given: set[int] = set()
    shares.give(server, cell, 0, given)
    assert given == {os.getpid()}  # the process in slot 1 (this one, here)
    shares.give(server, cell, 0, given)  # given already: not again
    assert shares.take(0) is None  # given to the others, not to itself
    taken = shares.take(1)
    assert taken is not None
    copy, got = taken
    with copy:
        assert got == cell
        assert shares.take(1) is None  # one copy each
        client.sendall(b"ping")
        assert copy.recv(4) == b"ping"
        copy.sendall(b"pong")
        assert client.recv(4) == b"pong"


def test_cells_of_different_workers_never_meet(shares: Shares) -> None:
    mine = {shares.cell(0, n) for n in range(sharing.SHARES)}
    theirs = {shares.cell(1, n) for n in range(sharing.SHARES)}
    assert len(mine) == len(theirs) == sharing.SHARES
    assert not mine & theirs
    assert shares.cell(0, sharing.SHARES) == shares.cell(0, 0)  # reused in turn


def test_a_claim_holds_across_processes_until_released_or_its_holder_exits(
    shares: Shares,
) -> None:
    held_r, held_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the other worker
        ok = shares.claim(7)
        os.write(held_w, b"1" if ok else b"0")
        os.read(done_r, 1)  # until the parent has tried
        os._exit(0)
    try:
        assert os.read(held_r, 1) == b"1"
        assert not shares.claim(7)  # held by the other process
        assert shares.claim(8)  # another connection's claim is free
        shares.release(8)
    finally:
        os.write(done_w, b"x")
        assert os.waitpid(pid, 0)[1] == 0
    assert shares.claim(7)  # the kernel released it when its holder exited
    shares.release(7)
    for fd in (held_r, held_w, done_r, done_w):
        os.close(fd)


def test_idle_time_counts_from_the_last_answer_by_any_worker(
    shares: Shares, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "monotonic_ns", lambda: 10_000_000_000)
    shares.answered(3)
    assert shares.idle_until(3, keepalive=5) == 15.0


def test_the_selector_wakes_on_bytes_and_watches_exclusively(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    client, server = pair
    selector = Selector()
    try:
        key = selector.register(server, selectors.EVENT_READ, "data", exclusive=True)
        assert selector.get_map()[server.fileno()] is key
        assert selector.select(0) == []
        client.sendall(b"x")
        assert selector.select(1) == [(key, selectors.EVENT_READ)]
        with pytest.raises(KeyError):
            selector.register(server, selectors.EVENT_READ)
        with pytest.raises(ValueError, match="EVENT_READ"):
            selector.register(client, selectors.EVENT_WRITE)
        assert selector.unregister(server) is key
        assert selector.select(0) == []
    finally:
        selector.close()


# -- a real server: 2 workers x 2 threads ---------------------------------------


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    log = tmp_path_factory.mktemp("sharing") / "server.log"
    args = serve_args("gunicorn", "--workers", "2", "--threads", "2", "--keepalive", "2")
    live = LiveServer(args, log)
    try:
        yield live.start()
    finally:
        live.kill()


def pid_of(client: RawClient, path: str = "/echo/x") -> int:
    client.send(request("GET", path, HOST))
    response = client.response()
    assert response.status == 200
    return int(json.loads(response.body)["pid"])


@needs_gunicorn
def test_a_kept_alive_connection_is_answered_by_a_worker_that_waits(two: LiveServer) -> None:
    # A busy worker is not waiting, so the kernel wakes another for its
    # connection. Between requests both wait: the one that answered last
    # watches the connection again after the other (it stopped while
    # answering), so the other is woken first, and both answer on it.
    with RawClient(two.host, two.port) as client:
        pids = []
        for _ in range(6):
            pids.append(pid_of(client))
            time.sleep(0.05)  # both workers are back waiting
    assert len(set(pids)) == 2, (pids, two.log)


@needs_gunicorn
def test_without_sharing_a_connection_stays_with_its_worker(tmp_path: Path) -> None:
    args = serve_args("gunicorn", "--workers", "2", "--threads", "2", "--no-share-connections")
    live = LiveServer(args, tmp_path / "server.log")
    try:
        live.start()
        with RawClient(live.host, live.port) as client:
            pids = []
            for _ in range(6):
                pids.append(pid_of(client))
                time.sleep(0.05)  # as above, where the other worker answers
    finally:
        live.kill()
    assert len(set(pids)) == 1, (pids, live.log)


@needs_gunicorn
@pytest.mark.parametrize("pause", [0.05, 0.3])
def test_a_body_sent_in_pieces_on_a_shared_connection_is_read_by_one_worker(
    two: LiveServer, pause: float
) -> None:
    # While one worker's thread reads the body, its bytes wake the other
    # worker, which must leave them alone (it cannot take the claim).
    body = bytes(range(256)) * 12
    with RawClient(two.host, two.port) as client:
        pid_of(client)  # answered and kept alive: shared from now on
        for _ in range(3):
            upload = request("POST", "/upload", HOST, f"Content-Length: {len(body)}", body=body)
            head = len(upload) - len(body)
            for start in range(0, len(upload), 1024):
                client.send(upload[start : min(start + 1024, len(upload))])
                if start <= head:
                    time.sleep(pause)
            response = client.response()
            assert response.status == 200, two.log
            assert json.loads(response.body) == {"size": len(body)}
            assert pid_of(client) > 0  # the connection still carries requests


@needs_gunicorn
def test_a_head_sent_in_pieces_on_a_shared_connection_is_read_by_one_worker(
    two: LiveServer,
) -> None:
    second = request("GET", "/echo/pieces", HOST, "X-One: 1", "X-Two: 2")
    with RawClient(two.host, two.port) as client:
        pid_of(client)
        for _ in range(3):
            for start in range(0, len(second), 10):
                client.send(second[start : start + 10])
                time.sleep(0.02)
            response = client.response()
            assert response.status == 200, two.log
            assert json.loads(response.body)["HTTP_X_TWO"] == "2"


def holders(server: LiveServer, port: int) -> set[int]:
    """The workers holding the server's end of the connection from ``port``."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server.port and int(remote.split(":")[1], 16) == port:
            inode = fields[9]
    if inode is None:
        return set()
    found = set()
    for pid in children(server):
        with_fds = Path(f"/proc/{pid}/fd")
        try:
            links = [os.readlink(fd) for fd in with_fds.iterdir()]
        except OSError:  # an fd closed while listed
            continue
        if f"socket:[{inode}]" in links:
            found.add(pid)
    return found


def wait_for(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


@needs_gunicorn
def test_a_connection_its_client_closes_is_closed_in_every_worker(two: LiveServer) -> None:
    client = RawClient(two.host, two.port)
    port = client.sock.getsockname()[1]
    pid_of(client)
    assert wait_for(lambda: len(holders(two, port)) == 2, 5), two.log  # both watch it
    client.close()
    # Well before the 2 s keep-alive: the worker that reads the end shuts the
    # connection down, which wakes the other, which closes its copy.
    assert wait_for(lambda: not holders(two, port), 1.5), two.log


@needs_gunicorn
def test_an_idle_shared_connection_closes_after_the_keepalive(two: LiveServer) -> None:
    with RawClient(two.host, two.port) as client:
        for _ in range(3):
            time.sleep(0.5)  # answered by one worker or the other: idle time starts anew
            pid_of(client)
        answered = time.monotonic()
        closed = client.wait_closed(10)
        assert closed is not None, two.log
        assert 1.8 < time.monotonic() - answered < 4.0, two.log  # --keepalive 2
