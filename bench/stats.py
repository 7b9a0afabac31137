"""The benchmark's verdicts: the geometric mean of paired ratios with its
Student-t interval, and PASS, FAIL or UNCLEAR against a target. Pure
arithmetic, tested in ``tests/test_bench_stats.py``.

Kept here rather than taken from pyperf: pyperf runs and calibrates its own
benchmarks (worker processes, loops); what is needed here is the interval
of a few ratios measured by wrk, a dozen lines.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# Student's t for the two-sided 95 % interval a head-to-head check is judged
# by, for 1..30 degrees of freedom (beyond: 1.96 + 2.4 / df, within 0.003).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


@dataclass
class Check:
    label: str
    value: float | None
    shown: str
    target: str
    # PASS / FAIL; UNCLEAR: the 95 % interval straddles the target; SKIP: not measured
    verdict: str


@dataclass(frozen=True)
class Estimate:
    """A ratio of requests/s with its 95 % interval (``None``: not known)."""

    value: float | None
    low: float | None
    high: float | None
    how: str  # "table" or "N x A B B A"
    table: float | None  # the table's ratio, shown beside a head-to-head one

    @classmethod
    def of(cls, ratios: Sequence[float] | None, table: float | None) -> Estimate:
        """From the ratios measured in turn (see :func:`head_to_head`), else
        the table's ratio (no interval)."""
        if not ratios:
            return cls(table, None, None, "table", table)
        return cls(*interval(ratios), f"{len(ratios)} x A B B A", table)

    def verdict(self, target: float) -> str:
        """PASS or FAIL when the whole interval is on one side of ``target``
        (a lone ratio is judged as it stands), UNCLEAR when it straddles it."""
        if self.value is None:
            return "SKIP"
        if self.low is None or self.high is None:
            return "PASS" if self.value >= target else "FAIL"
        if self.low >= target:
            return "PASS"
        return "FAIL" if self.high < target else "UNCLEAR"

    def at_most(self, label: str, target: float) -> Check:
        """A check that this ratio is <= ``target`` (latency: lower is better)."""
        if self.value is None:
            return Check(label, None, "n/a", f"<= {target}", "SKIP")
        shown = f"{self.value:.3f}"
        if self.low is None or self.high is None:
            verdict = "PASS" if self.value <= target else "FAIL"
        else:
            shown += f" [{self.low:.3f}, {self.high:.3f}]"
            verdict = "PASS" if self.high <= target else "FAIL" if self.low > target else "UNCLEAR"
        return Check(label, self.value, shown, f"<= {target}", verdict)

    def check(self, label: str, target: float, *, as_cost: bool = False) -> Check:
        """A check that this ratio is >= ``target``; ``as_cost`` shows it as
        1 - ratio (the prefix's cost) instead."""
        if self.value is None:
            shown = "n/a"
        elif as_cost:
            shown = f"cost {1 - self.value:+.1%}"
            if self.low is not None and self.high is not None:
                shown += f" [{1 - self.high:+.1%}, {1 - self.low:+.1%}]"
        else:
            shown = f"{self.value:.3f}"
            if self.low is not None and self.high is not None:
                shown += f" [{self.low:.3f}, {self.high:.3f}]"
            if self.how != "table" and self.table is not None:
                shown += f" (table {self.table:.3f})"
        goal = f"cost <= {1 - target:.0%}" if as_cost else f">= {target}"
        return Check(label, self.value, shown, goal, self.verdict(target))


def interval(ratios: Sequence[float]) -> tuple[float, float | None, float | None]:
    """Geometric mean of ``ratios`` and its 95 % confidence interval
    (Student's t over the logarithms; no interval from one ratio).

    Ratios of two throughputs are skewed (a run 10 % slow and one 10 % fast
    are not symmetric around 1) and the noise here is multiplicative, so
    their logarithms are averaged; the interval is what lets a check say
    "not shown" instead of passing or failing on the luck of a few runs.
    """
    logs = [math.log(r) for r in ratios]
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return math.exp(mean), None, None
    df = len(logs) - 1
    t = _T95[df - 1] if df <= len(_T95) else 1.96 + 2.4 / df
    half = t * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)
