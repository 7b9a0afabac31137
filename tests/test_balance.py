"""The workers' connection balance (flask_prodserve/backends/balance.py)."""

from __future__ import annotations

import os

import pytest

from flask_prodserve.backends import balance
from flask_prodserve.backends.balance import Board, should_accept


@pytest.mark.parametrize(
    ("mine", "others", "expected"),
    [
        (0, [], True),  # alone
        (3, [], True),
        (0, [0], True),  # a tie: both may take it
        (1, [0], False),  # the other holds fewer
        (1, [1, 2], True),
        (2, [1, 5], False),
        (0, [4, 4, 4], True),
    ],
)
def test_should_accept(mine: int, others: list[int], expected: bool) -> None:
    assert should_accept(mine, others) is expected


def test_a_board_is_shared_with_forked_workers() -> None:
    board = Board(4)
    mine, theirs = board.reserve(), board.reserve()
    assert (mine, theirs) == (0, 1)
    pid = os.fork()
    if pid == 0:  # the other worker: posts its count in shared memory
        board.claim(theirs)
        board.post(theirs, 7)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    board.claim(mine)
    board.post(mine, 2)
    assert board.others(mine) == [7]
    assert board.others(theirs) == [2]


def test_a_freed_slot_is_ignored_and_reused() -> None:
    board = Board(2)
    a, b = board.reserve(), board.reserve()
    assert a is not None and b is not None
    board.claim(b)
    board.post(b, 5)
    assert board.up(a) == {b: os.getpid()}
    assert board.reserve() is None  # all taken: that worker accepts as if alone
    changes = board.changes
    board.release(b)  # the master, once the worker exited
    assert board.changes > changes  # the workers sharing connections look again
    assert board.others(a) == []
    assert board.up(a) == {}
    assert board.reserve() == b


def test_workers_in_every_slot_reserved_so_far_are_seen() -> None:
    # Workers look only at the slots reserved so far, not at the whole board.
    board = Board(64)
    slots = [board.reserve() for _ in range(4)]
    assert slots == [0, 1, 2, 3]
    for slot, count in zip(slots, [1, 2, 3, 4], strict=True):
        assert slot is not None
        board.claim(slot)
        board.post(slot, count)
    board.release(1)
    assert board.others(0) == [3, 4]
    assert board.up(3) == {0: os.getpid(), 2: os.getpid()}
    assert board.reserve() == 1  # the lowest free one again: still in view
    assert board.others(0) == [0, 3, 4]


def test_a_starting_worker_counts_as_empty_only_for_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    board = Board(4, starting=2)  # the first workers, reserved before any fork
    first = board.reserve()
    assert first == 0
    board.claim(first)
    board.post(first, 3)
    assert board.others(first) == [0]  # the second is still starting: it gets the next
    monkeypatch.setattr(balance, "BOOTING", 0.0)
    assert board.others(first) == []  # too long starting: no longer waited for
    second = board.reserve()
    assert second == 1  # the slot kept for it
    board.claim(second)
    assert board.others(first) == [0]  # up now
