"""When a worker starts its next request (flask_prodserve/backends/rungate.py)."""

from __future__ import annotations

import pytest

from flask_prodserve.backends.rungate import next_start

NOW = 100.0


@pytest.mark.parametrize(
    ("started", "limit", "expected"),
    [
        ([], 1, NOW),  # nothing runs: at once
        # A request waiting beside nothing that runs starts at once: waiting
        # for the patience here once left every later request a turn behind.
        ([NOW - 0.5], 1, NOW),  # the one running is slow (waits): at once
        ([NOW - 0.0005], 1, NOW - 0.0005 + 0.002),  # a quick one runs: once it ran 2 ms
        ([NOW - 0.0005], 2, NOW),  # room for two
        ([NOW - 0.0015, NOW - 0.0005], 2, NOW - 0.0015 + 0.002),  # the older one first
        ([NOW - 0.0015, NOW - 0.0005], 1, NOW - 0.0005 + 0.002),  # both must be past it
        ([NOW - 0.0015, NOW - 0.0005, NOW - 3], 2, NOW - 0.0015 + 0.002),
    ],
)
def test_next_start(started: list[float], limit: int, expected: float) -> None:
    assert next_start(started, NOW, limit, patience=0.002) == pytest.approx(expected)
