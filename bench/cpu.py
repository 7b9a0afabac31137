"""CPU accounting from ``/proc`` (Linux): how busy the machine is, and how a
run's CPU time splits between the server, wrk and other processes."""

from __future__ import annotations

import contextlib
import os
import resource
import time
from pathlib import Path

BUSY_WARNING = 0.15  # "quiet" machine: less busy than this before a contender

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def group_pids(pgid: int) -> list[int]:
    """Live processes of a process group (Linux /proc)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid):
            pids.append(int(stat.parent.name))
    return sorted(pids)


def established_inodes(port: int) -> set[str]:
    """Socket inodes of established IPv4 TCP connections to local ``port``."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # 01: ESTABLISHED
                inodes.add(fields[9])
    return inodes


def group_ticks(pgid: int) -> int:
    """CPU clock ticks used so far by the live processes of a process group."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process is gone
        # After "pid (comm)": state ppid pgrp ... utime(12th) stime(13th).
        if len(fields) > 12 and fields[2] == str(pgid):
            total += int(fields[11]) + int(fields[12])
    return total


def group_switches(pgid: int) -> int:
    """Context switches so far of every thread of a process group's live
    processes (voluntary: waits, the GIL's among them; involuntary: preempted)."""
    total = 0
    for pid in group_pids(pgid):
        for status in Path(f"/proc/{pid}/task").glob("*/status"):
            with contextlib.suppress(OSError, ValueError):
                for line in status.read_text().splitlines():
                    if "ctxt_switches:" in line:
                        total += int(line.split()[1])
    return total


def _spin(seconds: float) -> int:
    """Pure-Python work for ``seconds``: how many loops it did."""
    end = time.perf_counter() + seconds
    loops = 0
    while time.perf_counter() < end:
        for _ in range(1000):
            pass
        loops += 1
    return loops


def parallel_scaling(seconds: float = 0.5) -> float | None:
    """How much faster two processes compute than one, on this machine now.

    2.0 means two independent CPUs; two vCPUs that are SMT siblings on the host
    (or a host that is busy) give much less, and the lead of flask serve's
    several processes over waitress's one shrinks with it (docs/servers.rst).
    """
    import multiprocessing
    import signal

    one = _spin(seconds)
    # The pool ends its processes with SIGTERM: without the default action
    # they would run bench/run.py's handler and print a KeyboardInterrupt.
    default = (signal.SIGTERM, signal.SIG_DFL)
    with multiprocessing.get_context("fork").Pool(2, signal.signal, default) as pool:
        two = sum(pool.map(_spin, [seconds, seconds]))
    return round(two / one, 2) if one else None


def cpu_busy(seconds: float = 1.0) -> float | None:
    """Share of the machine's CPU that was busy over the next ``seconds``."""
    before = machine_ticks()
    time.sleep(seconds)
    after = machine_ticks()
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def wait_quiet(max_wait: float) -> float | None:
    """Wait (at most ``max_wait`` s) until other work leaves the machine quiet."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = cpu_busy()
        if busy is None or busy < BUSY_WARNING or time.monotonic() >= deadline:
            return busy


class CpuMeter:
    """Split the machine's CPU during a wrk run into server, wrk and others."""

    def __init__(self, pgid: int | None) -> None:
        self.pgid = pgid

    def __enter__(self) -> CpuMeter:
        self.machine0 = machine_ticks()
        self.group0 = group_ticks(self.pgid) if self.pgid else 0
        self.switches0 = group_switches(self.pgid) if self.pgid else 0
        self.children0 = _children_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        machine1 = machine_ticks()
        self.server = self.wrk = self.other = None
        self.switches: int | None = None
        if self.machine0 is None or machine1 is None or self.pgid is None:
            return
        self.switches = group_switches(self.pgid) - self.switches0
        busy = machine1[0] - self.machine0[0]
        total = machine1[1] - self.machine0[1]
        if total <= 0:
            return
        server = group_ticks(self.pgid) - self.group0
        wrk = (_children_cpu() - self.children0) * CLK_TCK
        self.server = round(server / total, 4)
        self.wrk = round(wrk / total, 4)
        self.other = round(max(0.0, busy - server - wrk) / total, 4)


def _children_cpu() -> float:
    """CPU seconds of waited-for children (wrk: the servers are still running)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
