"""ClientSocket: the same answers as a plain socket, with fewer system calls."""

from __future__ import annotations

import os
import select
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flask_prodserve.backends.clientsocket import ClientSocket


@pytest.fixture
def pair() -> Iterator[tuple[ClientSocket, socket.socket]]:
    ours, peer = socket.socketpair()
    client = ClientSocket.adopt(ours, 0.5)
    assert ours.fileno() == -1  # the fd now belongs to the ClientSocket
    try:
        yield client, peer
    finally:
        client.close()
        peer.close()


def test_blocking_means_the_blocking_timeout(pair: tuple[ClientSocket, socket.socket]) -> None:
    client, _ = pair
    client.setblocking(True)
    assert client.gettimeout() == 0.5
    client.setblocking(False)
    assert client.gettimeout() == 0.0
    client.settimeout(None)  # still possible, explicitly
    assert client.gettimeout() is None


def test_a_mode_change_to_the_same_mode_is_skipped(
    pair: tuple[ClientSocket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = pair
    calls: list[Any] = []
    real = socket.socket.settimeout
    monkeypatch.setattr(
        socket.socket, "settimeout", lambda self, value: calls.append(value) or real(self, value)
    )
    client.setblocking(True)
    client.settimeout(0.5)
    client.setblocking(True)
    client.setblocking(False)
    client.setblocking(False)
    assert calls == [0.5, 0.0]


def test_recv_reads_what_is_there_and_times_out_as_set(
    pair: tuple[ClientSocket, socket.socket],
) -> None:
    client, peer = pair
    client.setblocking(True)
    peer.sendall(b"hello")
    assert client.recv(100) == b"hello"
    with pytest.raises(TimeoutError):
        client.recv(100)
    client.setblocking(False)
    with pytest.raises(BlockingIOError):
        client.recv(100)
    peer.close()
    client.setblocking(True)
    assert client.recv(100) == b""


def read_while(peer: socket.socket, size: int, write: Callable[[], None]) -> bytes:
    """What ``peer`` receives (up to ``size`` bytes) while ``write()`` runs."""
    received = bytearray()

    def read_all() -> None:
        while len(received) < size:
            chunk = peer.recv(65536)
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=read_all)
    reader.start()
    write()
    reader.join(10)
    assert not reader.is_alive()
    return bytes(received)


BIG = bytes(range(256)) * 16_384  # 4 MiB: far more than the socket buffers hold


def test_sendall_sends_everything_when_the_buffer_fills(
    pair: tuple[ClientSocket, socket.socket],
) -> None:
    client, peer = pair
    client.setblocking(True)
    assert read_while(peer, len(BIG), lambda: client.sendall(BIG)) == BIG


def nothing_to_read(sock: socket.socket) -> bool:
    return not select.select([sock], [], [], 0.05)[0]


def test_held_bytes_go_out_with_the_next_write_in_one_call(
    pair: tuple[ClientSocket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, peer = pair
    client.setblocking(True)
    calls: list[int] = []
    real = os.writev
    monkeypatch.setattr(os, "writev", lambda fd, parts: calls.append(len(parts)) or real(fd, parts))
    with client.hold():
        client.sendall(b"head|")
    assert nothing_to_read(peer)
    client.sendall(b"body")
    assert calls == [2]  # one system call for both
    assert peer.recv(100) == b"head|body"
    client.sendall(b"more")  # holding was for the block only
    assert peer.recv(100) == b"more"


def test_held_bytes_then_more_than_the_buffer_holds(
    pair: tuple[ClientSocket, socket.socket],
) -> None:
    client, peer = pair
    client.setblocking(True)
    with client.hold():
        client.sendall(b"head|")
    assert read_while(peer, len(BIG) + 5, lambda: client.sendall(BIG)) == b"head|" + BIG


@pytest.mark.parametrize("write", ["send_held", "send", "sendfile"])
def test_every_other_write_sends_what_was_held_first(
    pair: tuple[ClientSocket, socket.socket], tmp_path: Path, write: str
) -> None:
    client, peer = pair
    client.setblocking(True)
    client.send_held()  # nothing held: nothing sent
    assert nothing_to_read(peer)
    with client.hold():
        client.sendall(b"held|")
    assert nothing_to_read(peer)
    if write == "send_held":
        client.send_held()
    elif write == "send":
        client.send(b"more")
    else:
        (tmp_path / "file").write_bytes(b"more")
        with (tmp_path / "file").open("rb") as file:
            client.sendfile(file)
    expected = b"held|" + (b"" if write == "send_held" else b"more")
    assert peer.recv(100) == expected


def test_sendall_times_out_when_nobody_reads(pair: tuple[ClientSocket, socket.socket]) -> None:
    client, _ = pair
    client.setblocking(True)
    with pytest.raises(TimeoutError):
        client.sendall(b"x" * 16 * 1024 * 1024)


def test_recv_within(pair: tuple[ClientSocket, socket.socket]) -> None:
    client, peer = pair
    client.setblocking(True)
    assert client.recv_within(100, 0.01) is None  # nothing came
    peer.sendall(b"next")
    assert client.recv_within(100, 0.01) == b"next"
    threading.Timer(0.05, peer.sendall, [b"later"]).start()
    assert client.recv_within(100, 5) == b"later"
    peer.close()
    assert client.recv_within(100, 5) == b""  # closed
    assert client.gettimeout() == 0.5  # the wait did not change it
