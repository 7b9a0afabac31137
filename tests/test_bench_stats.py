"""The benchmark's verdicts (the interval of paired ratios, PASS/FAIL/UNCLEAR) and
bench/causes.py's count of how evenly the workers shared requests.

The benchmark itself is run by hand (it takes half an hour and a quiet
machine); what decides its verdicts is pure arithmetic and is tested here.
"""

from __future__ import annotations

import math

import pytest

from bench.causes import arrivals, busiest_shares, describe, sharing
from bench.stats import Estimate, interval


def test_interval_is_the_geometric_mean_with_a_t_interval() -> None:
    ratios = [0.9, 1.0, 1.1, 1.2]
    mid, lo, hi = interval(ratios)
    logs = [math.log(r) for r in ratios]
    mean = sum(logs) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 3)
    half = 3.182 * sd / 2  # t(0.975, 3 df) * sd / sqrt(4)
    assert mid == pytest.approx(math.exp(mean))
    assert lo == pytest.approx(math.exp(mean - half))
    assert hi == pytest.approx(math.exp(mean + half))


def test_interval_of_a_ratio_and_its_inverse_mirror_each_other() -> None:
    """flask-serve / gunicorn is computed from gunicorn / flask-serve ratios."""
    ratios = [0.93, 1.05, 0.99, 1.12, 0.97]
    mid, lo, hi = interval(ratios)
    imid, ilo, ihi = interval([1 / r for r in ratios])
    assert (imid, ilo, ihi) == pytest.approx((1 / mid, 1 / hi, 1 / lo))


def test_interval_narrows_with_more_turns_and_has_none_for_one() -> None:
    few = interval([0.95, 1.05] * 2)
    many = interval([0.95, 1.05] * 20)
    assert many[2] - many[1] < few[2] - few[1]
    assert many[0] == pytest.approx(few[0])
    mid, lo, hi = interval([1.04])
    assert (lo, hi) == (None, None)
    assert mid == pytest.approx(1.04)


def test_interval_beyond_the_t_table_uses_the_large_sample_value() -> None:
    ratios = [0.9, 1.1] * 30  # 59 degrees of freedom
    _, lo, _ = interval(ratios)
    sd = math.log(1.1 / 0.9) / 2 * math.sqrt(60 / 59)
    assert lo == pytest.approx(
        math.exp(math.log(0.99) / 2 - (1.96 + 2.4 / 59) * sd / math.sqrt(60))
    )


@pytest.mark.parametrize(
    ("value", "low", "high", "verdict"),
    [
        pytest.param(1.00, 0.96, 1.04, "PASS", id="whole-interval-above"),
        pytest.param(0.95, 0.95, 1.00, "PASS", id="low-end-on-target"),
        pytest.param(0.90, 0.85, 0.94, "FAIL", id="whole-interval-below"),
        pytest.param(1.00, 0.90, 1.10, "UNCLEAR", id="straddles-point-above"),
        pytest.param(0.93, 0.88, 0.99, "UNCLEAR", id="straddles-point-below"),
        pytest.param(0.96, None, None, "PASS", id="lone-ratio-above"),
        pytest.param(0.94, None, None, "FAIL", id="lone-ratio-below"),
        pytest.param(None, None, None, "SKIP", id="not-measured"),
    ],
)
def test_verdict(value: float | None, low: float | None, high: float | None, verdict: str) -> None:
    assert Estimate(value, low, high, "8 x A B B A", None).verdict(0.95) == verdict


def test_check_shows_a_ratio_its_interval_and_the_table() -> None:
    check = Estimate(1.021, 0.98, 1.064, "8 x A B B A", 0.912).check("vs gunicorn", 0.95)
    assert check.shown == "1.021 [0.980, 1.064] (table 0.912)"
    assert (check.target, check.verdict) == (">= 0.95", "PASS")


def test_prefix_check_shows_the_cost_and_its_interval() -> None:
    """A ratio of 0.99 [0.975, 1.005] is a cost of +1 % [-0.5 %, +2.5 %]."""
    check = Estimate(0.99, 0.975, 1.005, "60 x A B B A", None).check("prefix", 0.97, as_cost=True)
    assert check.shown == "cost +1.0% [-0.5%, +2.5%]"
    assert (check.target, check.verdict) == ("cost <= 3%", "PASS")
    worse = Estimate(0.98, 0.96, 1.0, "60 x A B B A", None).check("prefix", 0.97, as_cost=True)
    assert worse.verdict == "UNCLEAR"


def test_busiest_shares_counts_each_window_apart() -> None:
    # Worker 0 takes all of the first window, they split the second evenly,
    # and worker 1 takes three of the four in the third.
    started = [[0.01, 0.02, 0.11, 0.21], [0.15, 0.22, 0.23, 0.24]]
    assert busiest_shares(started, 0.1) == [1.0, 0.5, 0.75]


def test_sharing_shows_what_an_even_total_hides() -> None:
    # 50/50 over the run, but one worker at a time takes every request.
    turns = [[w * 0.1 + 0.05 + i * 0.001 for w in range(0, 10, 2) for i in range(10)]]
    turns.append([t + 0.1 for t in turns[0]])
    line = sharing(turns)
    assert "2 workers took 50/50 requests" in line
    assert "the busiest took p50 100%, p90 100%" in line
    assert "even split in 0% of the windows" in line
    assert "even split in 100% of the windows" in sharing([[0.01, 0.11], [0.02, 0.12]])


def test_arrivals_counts_requests_sent_while_their_worker_was_busy() -> None:
    # Worker 0 answers 1 over [0, 1) s; 2 is sent to it at 0.5 s, while worker
    # 1 idles, and read at 1.0 s; 3 goes to worker 1, idle, at 2.0 s; 4 is
    # sent to worker 1 at 2.2 s while it answers 3 and worker 0 answers 5.
    early = {1: (0.0, 1.0), 2: (0.5, 9.0), 3: (2.0, 2.0), 4: (2.2, 3.0), 5: (2.1, 1.0)}
    sent = {n: (written, written, ms) for n, (written, ms) in early.items()}
    answered = [
        [(1, 0.0, 0.0, 1.0), (2, 1.0, 1.0, 1.5), (5, 2.1, 2.1, 2.5)],
        [(3, 2.0, 2.0, 2.4), (4, 2.4, 2.4, 2.9), (-1, 0.1, 0.1, 0.2)],  # -1: not numbered
    ]
    found = arrivals(sent, answered)
    assert (found.requests, found.collided, found.other_idle) == (5, 2, 1)
    assert (found.slow, found.slow_collided) == (1, 1)  # 2, at 9 ms
    assert found.idle_p99_ms == 2.0  # of 1, 3 and 5
    assert found.collided_p99_ms == 9.0  # of 2 and 4
    # 2 was sent 0.5 s before 1 was done, 4 0.2 s before 3 was (of two
    # values, the percentiles take the upper one).
    assert (round(found.left_p50_ms), round(found.left_p90_ms)) == (500, 500)
    assert "p50 500.00, p90 500.00 ms to go; their p99 9.00 ms" in describe(found)
    assert found.idle_slow_wait_ms == found.idle_slow_late_ms == 0.0  # none slow and idle
    assert "40.0% of requests" in describe(found)


def test_arrivals_times_the_slow_requests_that_found_their_worker_idle() -> None:
    # 100 requests, each answered alone by worker 0; request 99 was sent
    # 2 ms late and read 3 ms after that: the slowest.
    sent = {n: (n * 1.0, n * 1.0, 1.0) for n in range(99)}
    sent[99] = (99.0, 99.002, 6.0)
    answered = [[(n, n + 0.0001, n + 0.0001, n + 0.0005) for n in range(99)]]
    answered[0].append((99, 99.005, 99.005, 99.0055))
    found = arrivals(sent, answered)
    assert (found.collided, found.slow, found.idle_p99_ms) == (0, 1, 6.0)
    assert round(found.idle_slow_late_ms, 6) == 2.0
    assert round(found.idle_slow_wait_ms, 6) == 3.0
