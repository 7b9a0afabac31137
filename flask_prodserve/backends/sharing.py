"""Kept-alive connections that every worker process watches (Linux).

A kept-alive connection belongs to the worker that accepted it, and clients
send each request on the connection that became idle last (nginx's upstream
keepalive and urllib3's pool take the most recent first), which the worker
that answered last holds. So a request often arrives on a connection whose
worker is busy answering another one, and waits while another worker idles:
docs/servers.rst ("Tail latency") counts these collisions among the slowest
1 % of requests.

So once a connection has been answered and kept alive, its worker gives a
copy of it (the file descriptor, sent through each other worker's inbox, a
socket pair the master makes before it forks) to every other worker that is
up, and every worker watches it with ``EPOLLEXCLUSIVE``: when a request
arrives, the kernel wakes one worker that waits for work (the one that has
watched it longest, if it waits: a worker stops watching a connection while
it answers on it); a busy worker is not waiting, so an idle one answers.
Exactly one worker reads each request: a worker takes the connection's
claim before it reads the first byte of a request, and holds it until the
response is sent. A claim is a lock on one
byte of a file all the workers share (:func:`fcntl.lockf`), which the kernel
releases when the worker holding it dies.

The kernel, not the workers, decides who is woken, so this stands on
documented Linux interfaces only (``epoll(7)``, ``unix(7)`` ``SCM_RIGHTS``,
``fcntl(2)`` record locks); elsewhere, or with ``--no-share-connections``,
each connection stays with its worker.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import mmap
import os
import select
import selectors
import socket
import time
from collections.abc import Mapping
from typing import Any

from .balance import Board

#: Connections a worker shares at once (its slot's cells on the board).
SHARES = 1024


def supported() -> bool:
    """Whether this system has what sharing connections takes."""
    return hasattr(select, "EPOLLEXCLUSIVE") and hasattr(os, "memfd_create")


class Shares:
    """What the workers of one server share connections through; made by
    the master before it forks them (the inboxes, memory and claims file are
    inherited)."""

    def __init__(self, board: Board, inboxes: int) -> None:
        self.board = board
        self._inboxes = [
            socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(inboxes)
        ]
        for pair in self._inboxes:
            for end in pair:
                end.setblocking(False)
        # When each shared connection last answered a request (monotonic ns;
        # CLOCK_MONOTONIC is the same clock in every process).
        self._memory = mmap.mmap(-1, board.slots * SHARES * 8)
        self._activity = memoryview(self._memory).cast("q")
        self._claims = os.memfd_create("flask-prodserve-claims")

    def inbox(self, slot: int) -> socket.socket | None:
        """Where the worker in ``slot`` receives the copies given to it."""
        return self._inboxes[slot][1] if slot < len(self._inboxes) else None

    def cell(self, slot: int, number: int) -> int:
        """The cell of the ``number``-th connection the worker in ``slot`` shared."""
        return slot * SHARES + number % SHARES

    def give(self, sock: socket.socket, cell: int, slot: int, given: set[int]) -> bool:
        """Give a copy of ``sock`` to every other worker that is up and not
        in ``given`` (process IDs), which it adds them to; whether every one
        took it (an inbox holds only ``net.unix.max_dgram_qlen`` copies, 10
        by default, until its worker takes them: try again later)."""
        message = [cell.to_bytes(8, "little")]
        done = True
        for peer, pid in self.board.up(slot).items():
            if pid in given or peer >= len(self._inboxes):
                continue
            try:
                socket.send_fds(self._inboxes[peer][0], message, [sock.fileno()])
            except OSError:  # BlockingIOError: its inbox is full
                done = False
            else:
                given.add(pid)
        return done

    def take(self, slot: int) -> tuple[socket.socket, int] | None:
        """A copy given to the worker in ``slot``, and its cell; None if none waits."""
        inbox = self.inbox(slot)
        if inbox is None:
            return None
        try:
            data, fds, _, _ = socket.recv_fds(inbox, 8, 1)
        except OSError:  # BlockingIOError: none; EMFILE: the copy is dropped
            return None
        if not fds:
            return None
        return socket.socket(fileno=fds[0]), int.from_bytes(data, "little")

    def claim(self, cell: int) -> bool:
        """Take ``cell``'s claim for this process; whether it was free."""
        try:
            fcntl.lockf(self._claims, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, cell)
        except OSError:  # EACCES or EAGAIN: another worker holds it
            return False
        return True

    def release(self, cell: int) -> None:
        fcntl.lockf(self._claims, fcntl.LOCK_UN, 1, cell)

    def answered(self, cell: int) -> None:
        """Note that a request on ``cell``'s connection was just answered."""
        self._activity[cell] = time.monotonic_ns()

    def idle_until(self, cell: int, keepalive: float) -> float:
        """When ``cell``'s connection has been idle for ``keepalive`` seconds
        (:func:`time.monotonic`), whichever worker answered on it last."""
        return self._activity[cell] / 1e9 + keepalive

    def close(self) -> None:
        """In the master, once the workers are gone."""
        for pair in self._inboxes:
            for end in pair:
                end.close()
        os.close(self._claims)


class Selector(selectors.BaseSelector):
    """:mod:`selectors`' epoll selector for reading, which can also watch a
    file with ``EPOLLEXCLUSIVE`` (the standard library's sets its own flags)."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._keys: dict[int, selectors.SelectorKey] = {}

    def register(
        self, fileobj: Any, events: int, data: Any = None, exclusive: bool = False
    ) -> selectors.SelectorKey:
        if events != selectors.EVENT_READ:
            raise ValueError("only EVENT_READ is supported")
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        if fd in self._keys:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        self._epoll.register(fd, select.EPOLLIN | (select.EPOLLEXCLUSIVE if exclusive else 0))
        key = self._keys[fd] = selectors.SelectorKey(fileobj, fd, events, data)
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        key = self._keys.pop(fd)
        with contextlib.suppress(OSError):  # closed meanwhile: the kernel dropped it
            self._epoll.unregister(fd)
        return key

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # epoll counts in milliseconds: round up, or a wait shorter than one
        # would return at once, over and over (as selectors.EpollSelector does).
        wait = -1.0 if timeout is None else math.ceil(max(timeout, 0.0) * 1e3) * 1e-3
        ready = self._epoll.poll(wait, max(len(self._keys), 1))
        keys = self._keys
        return [(keys[fd], selectors.EVENT_READ) for fd, _ in ready if fd in keys]

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        """The keys by file descriptor."""
        return self._keys

    def close(self) -> None:
        self._epoll.close()
        self._keys.clear()
