"""EverySecond: a text made once a second."""

from __future__ import annotations

import time

from flask_prodserve.clock import EverySecond


def test_made_once_a_second() -> None:
    made: list[int] = []

    def make(second: int) -> str:
        made.append(second)
        return f"t{second}"

    clock = EverySecond(make)
    assert [clock(10), clock(10), clock(11), clock(11), clock(10)] == [
        "t10",
        "t10",
        "t11",
        "t11",
        "t10",  # a clock set back: made again, not the newer one kept
    ]
    assert made == [10, 11, 10]


def test_defaults_to_now() -> None:
    clock = EverySecond(str)
    before = int(time.time())
    assert before <= int(clock()) <= int(time.time())
