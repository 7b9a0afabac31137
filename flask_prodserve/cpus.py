"""How many CPUs this process may actually use.

``os.cpu_count()`` reports the machine's CPUs, not the ones a container or a
CPU affinity mask lets the process run on; sizing workers from it
oversubscribes containers badly. This module takes the smallest of the
affinity mask and the cgroup (v2 or v1) CPU quota.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: Path = _CGROUP_ROOT) -> int | None:
    """The CPU quota of the cgroup under ``root``, rounded up, or ``None``."""
    v2 = _read(root / "cpu.max")  # "max 100000" or "150000 100000"
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        if quota != "max" and quota.isdigit() and period.isdigit() and int(period):
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    quota_v1 = _read(root / "cpu" / "cpu.cfs_quota_us")
    period_v1 = _read(root / "cpu" / "cpu.cfs_period_us")
    # v1 reports "no limit" as -1, which isdigit() rejects.
    if quota_v1 and period_v1 and quota_v1.isdigit() and period_v1.isdigit() and int(period_v1):
        return max(1, math.ceil(int(quota_v1) / int(period_v1)))
    return None


def available_cpus(root: Path = _CGROUP_ROOT) -> int:
    """CPUs usable by this process: affinity mask and cgroup quota, at least 1."""
    if hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
    else:  # macOS and Windows have no affinity API in ``os``.
        count = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    return max(1, min(count, limit) if limit else count)
