"""Text made from the current time, made once a second rather than per request."""

from __future__ import annotations

import time
from collections.abc import Callable


class EverySecond:
    """``make(second)`` for the current second, made when the second changes.

    For a log time or a ``Date`` header: both have one-second resolution, and
    formatting them costs a few microseconds that every request would pay.
    """

    def __init__(self, make: Callable[[int], str]) -> None:
        self.make = make
        self.last = (-1, "")

    def __call__(self, second: int | None = None) -> str:
        """The text for ``second`` (default: now)."""
        if second is None:
            second = int(time.time())
        last = self.last
        if last[0] != second:
            # Threads racing here make the same text: one of them is kept.
            last = self.last = (second, self.make(second))
        return last[1]
