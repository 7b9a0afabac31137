"""CPU detection honours cgroup quotas (v1 and v2) and the affinity mask."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flask_prodserve.cpus import available_cpus, cgroup_cpu_limit


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param({"cpu.max": "max 100000"}, None, id="v2-unlimited"),
        pytest.param({"cpu.max": "150000 100000"}, 2, id="v2-1.5-rounds-up"),
        pytest.param({"cpu.max": "50000 100000"}, 1, id="v2-half-is-one"),
        pytest.param(
            {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"},
            None,
            id="v1-unlimited",
        ),
        pytest.param(
            {"cpu/cpu.cfs_quota_us": "300000", "cpu/cpu.cfs_period_us": "100000"}, 3, id="v1-three"
        ),
        pytest.param({}, None, id="no-cgroup"),
    ],
)
def test_cgroup_cpu_limit(tmp_path: Path, files: dict[str, str], expected: int | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    assert cgroup_cpu_limit(tmp_path) == expected


def test_available_cpus_takes_the_smaller_of_affinity_and_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert available_cpus(tmp_path) == expected
