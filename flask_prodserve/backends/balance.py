"""Which worker process takes a new connection: one of those holding the fewest.

The workers share one listening socket, and a kept-alive connection stays
with the worker that accepted it. Left to the kernel, whichever worker wakes
first takes every connection of a burst: measured on 2 CPUs with ``wrk -c32``
against 2 workers, one worker held all 32 connections and served 2277 req/s
where a balanced pair served 7100. gunicorn's master is no help (it does not
see connections), so each worker posts how many connections it holds on a
:class:`Board` in memory shared by all the workers (made by the master before
it forks them), and accepts only while it holds no more than the least
loaded one.

A worker being started counts as holding none for :data:`BOOTING` seconds,
so the workers already up leave it the first connections of a burst instead
of taking them all; past that it is ignored until it is up, so one whose
``worker_init`` hook takes long does not hold the others back.
"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Iterable

#: How long (seconds) a worker being started counts as the least loaded.
BOOTING = 1.0

_FREE, _STARTING = 0, -1
_CELLS = 3  # per slot: owner pid (or _FREE, _STARTING), connections, when reserved (ns)
# The last two cells: how many times workers came or went (see Board.changes),
# and how many slots were ever reserved.
_CHANGES, _USED = -1, -2


def should_accept(mine: int, others: Iterable[int]) -> bool:
    """Whether a worker holding ``mine`` connections takes the next one."""
    return mine <= min(others, default=mine)


class Board:
    """Connection counts of up to ``slots`` workers, in shared memory.

    Slots are reserved and freed by the master only (gunicorn's ``pre_fork``
    and ``child_exit`` hooks, one at a time), so no lock is needed; a worker
    writes only its own slot, and a count read while it changes is at worst
    one off, which only makes one accept decision a little less even.
    """

    def __init__(self, slots: int, starting: int = 0) -> None:
        self.slots = slots
        # Anonymous: shared across fork().
        self._memory = mmap.mmap(-1, (slots * _CELLS + 2) * 8)
        self._cells = memoryview(self._memory).cast("q")
        # gunicorn forks its first workers up to 0.1 s apart: the first one up
        # must not take a burst meant for all of them.
        self._unforked = [self._mark_starting(slot) for slot in range(min(starting, slots))]

    def _mark_starting(self, slot: int) -> int:
        at = slot * _CELLS
        self._cells[at + 1] = 0
        self._cells[at + 2] = time.monotonic_ns()
        self._cells[at] = _STARTING
        # The master reserves the lowest free slot, so workers look at the
        # few used ones, not all (each turn of a worker's loop looks).
        self._cells[_USED] = max(self._cells[_USED], slot + 1)
        return slot

    def reserve(self) -> int | None:
        """In the master, before forking a worker: its slot (``None``: all taken,
        the worker then accepts as if it were alone)."""
        if self._unforked:
            return self._mark_starting(self._unforked.pop(0))
        for slot in range(self.slots):
            if self._cells[slot * _CELLS] == _FREE:
                return self._mark_starting(slot)
        return None

    def claim(self, slot: int) -> None:
        """In the worker, once it is up."""
        self._cells[slot * _CELLS] = os.getpid()
        self._cells[_CHANGES] += 1

    def post(self, slot: int, count: int) -> None:
        self._cells[slot * _CELLS + 1] = count

    @property
    def changes(self) -> int:
        """How many times a worker came up or went (a count that only grows;
        two at once may count as one, which still tells that it changed)."""
        return self._cells[_CHANGES]

    def up(self, slot: int) -> dict[int, int]:
        """The other workers that are up: their process ID by slot."""
        cells = self._cells
        pids = (cells[s * _CELLS] for s in range(cells[_USED]))
        return {s: pid for s, pid in enumerate(pids) if s != slot and pid > 0}

    def others(self, slot: int) -> list[int]:
        """The counts of the other workers that are up or just starting."""
        cells = self._cells
        now = time.monotonic_ns()
        counts = []
        for s in range(cells[_USED]):
            at = s * _CELLS
            owner = cells[at]
            if s == slot or owner == _FREE:
                continue
            if owner == _STARTING and now - cells[at + 2] > BOOTING * 1e9:
                continue
            counts.append(cells[at + 1])
        return counts

    def release(self, slot: int) -> None:
        """In the master, once the worker has exited (even by SIGKILL)."""
        self._cells[slot * _CELLS] = _FREE
        self._cells[_CHANGES] += 1
