"""Benchmark ``flask serve --prod`` against hand-tuned gunicorn and plain waitress.

Run from anywhere with the project's virtualenv::

    .venv/bin/python bench/run.py                 # full run, 10 s per measurement
    .venv/bin/python bench/run.py --quick         # 3 s, fewer gunicorn candidates
    .venv/bin/python bench/run.py --only 'gunicorn-*' --only waitress

Every server runs as a subprocess on 127.0.0.1 (an ephemeral port) and is loaded
with ``wrk``. Only the standard library is used here; ``wrk`` must be installed.
See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import http.client
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LOG_DIR = RESULTS_DIR / "logs"
APP_MODULE = "bench.bench_app"
HOST = "127.0.0.1"

READY_DEADLINE = 30.0  # seconds for a server to answer GET <prefix>/ with 200
STOP_TIMEOUT = 15.0  # seconds between SIGTERM and SIGKILL

# Logical endpoints, in table order: (column label, path below the mount point).
ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("/", "/"),
    ("/json", "/json"),
    ("/page", "/page"),
)

# Environment variables that would silently tune a server. They are removed so
# every contender runs with its real defaults, exactly as typed.
SCRUB_ENV_PREFIXES = ("FLASK_SERVE_", "PRODSERVE_", "FLASK_RUN_", "GUNICORN_")
SCRUB_ENV_NAMES = ("FLASK_APP", "FLASK_DEBUG", "WEB_CONCURRENCY", "PORT")

# Targets.
TARGET_VS_GUNICORN = 0.95  # flask-serve / best hand-tuned gunicorn >= this
TARGET_VS_WAITRESS = 1.9  # flask-serve / waitress defaults >= this
TARGET_PREFIX_COST = 0.03  # 1 - prefix / no-prefix <= this
# Student's t for the two-sided 95 % interval a head-to-head check is judged
# by, for 1..30 degrees of freedom (beyond: 1.96 + 2.4 / df, within 0.003).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip
TARGET_SLEEP_WALL = 5.0  # 50 concurrent 1 s requests finish within this
SLEEP_REQUESTS = 50
SLEEP_TIMEOUT = 30.0
BUSY_WARNING = 0.15  # "quiet" machine: less busy than this before a contender
NOISE_THRESHOLD = 0.10  # a run is disturbed if others used this much CPU

CONCURRENCY_CHECK = "sleep-50x1s"
FINALISTS = 2  # gunicorn candidates per endpoint measured again head to head


class BenchError(Exception):
    """A problem that is reported as one line, never as a traceback."""


# --------------------------------------------------------------------------- #
# Contenders
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Contender:
    name: str
    group: str  # "flask-serve", "flask-serve-prefix", "gunicorn" or "waitress"
    args: tuple[str, ...]  # arguments after the Python executable; {port}
    prefix: str = ""  # URL prefix the app is mounted below
    quick: bool = True  # part of --quick

    def argv(self, python: str, port: int | str) -> list[str]:
        return [python, *(a.format(port=port, host=HOST) for a in self.args)]

    def url_path(self, path: str) -> str:
        return self.prefix + path if self.prefix else path


def _gunicorn(workers: int, threads: int = 0, *, quick: bool = False) -> Contender:
    """A plain gunicorn command line (no access log: gunicorn's default)."""
    name = f"gunicorn-w{workers}" + (f"-gthread{threads}" if threads else "")
    tuning = ["-w", str(workers)]
    if threads:
        tuning += ["-k", "gthread", "--threads", str(threads)]
    args = ("-m", "gunicorn", "-b", "{host}:{port}", *tuning, f"{APP_MODULE}:app")
    return Contender(name, "gunicorn", args, quick=quick)


_FLASK_SERVE = ("-m", "flask", "--app", APP_MODULE, "serve", "--prod")
_HOST_PORT = ("--host", "{host}", "--port", "{port}")

CONTENDERS: tuple[Contender, ...] = (
    Contender("flask-serve", "flask-serve", (*_FLASK_SERVE, *_HOST_PORT)),
    Contender(
        "flask-serve-prefix",
        "flask-serve-prefix",
        (*_FLASK_SERVE, "--url-prefix", "/app", *_HOST_PORT),
        prefix="/app",
    ),
    _gunicorn(1),  # gunicorn's defaults
    _gunicorn(2, quick=True),
    _gunicorn(3),
    _gunicorn(4, quick=True),
    _gunicorn(5),
    _gunicorn(2, 4, quick=True),
    _gunicorn(2, 8),
    _gunicorn(4, 2),
    Contender(
        "waitress",
        "waitress",
        ("-m", "waitress", "--listen={host}:{port}", f"{APP_MODULE}:app"),
    ),
)
SLEEP_CONTENDER = CONTENDERS[0]  # the concurrency check uses untuned flask serve


# --------------------------------------------------------------------------- #
# Results
# --------------------------------------------------------------------------- #


@dataclass
class WrkResult:
    requests_per_sec: float
    requests: int
    latency_avg_ms: float
    latency_stdev_ms: float
    latency_max_ms: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    socket_errors: dict[str, int]
    non_2xx_3xx: int
    # Shares of the whole machine's CPU during the measured run (None: unknown).
    cpu_server: float | None = None
    cpu_wrk: float | None = None
    cpu_other: float | None = None
    # Open connections held by each server process a third into the run:
    # shows how the load spread over the workers (keep-alive connections stay put).
    conns_per_process: list[int] | None = None

    @property
    def disturbed(self) -> bool:
        return self.cpu_other is not None and self.cpu_other > NOISE_THRESHOLD

    @property
    def errors(self) -> int:
        return self.non_2xx_3xx + sum(self.socket_errors.values())


@dataclass
class PathResult:
    path: str  # logical path ("/", "/json", "/page")
    url: str
    rounds: list[WrkResult] = field(default_factory=list)
    error: str | None = None

    @property
    def best(self) -> WrkResult | None:
        ok = [r for r in self.rounds if r.non_2xx_3xx == 0]
        return max(ok, key=lambda r: r.requests_per_sec) if ok else None

    @property
    def rps(self) -> float | None:
        best = self.best
        return best.requests_per_sec if best else None


@dataclass
class ContenderResult:
    contender: Contender
    argv: list[str] = field(default_factory=list)
    paths: dict[str, PathResult] = field(default_factory=dict)
    error: str | None = None
    log: str = ""
    cpu_busy_before: list[float | None] = field(default_factory=list)
    #: per path, this contender's requests/s over flask-serve's, measured in
    #: turn (see :func:`measure_in_turn`): flask-serve-prefix, waitress and
    #: the best gunicorn candidates (see :func:`head_to_head`)
    paired: dict[str, list[float]] = field(default_factory=dict)

    def rps(self, path: str) -> float | None:
        result = self.paths.get(path)
        return result.rps if result else None


@dataclass
class SleepResult:
    requests: int
    ok: int
    wall_s: float | None
    slowest_s: float
    errors: list[str]
    argv: list[str]


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


# --------------------------------------------------------------------------- #
# Helpers: ports, processes, HTTP
# --------------------------------------------------------------------------- #


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def server_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SCRUB_ENV_NAMES and not k.startswith(SCRUB_ENV_PREFIXES)
    }
    env["PYTHONUNBUFFERED"] = "1"  # so a crash log is complete
    return env


def http_get(port: int, path: str, timeout: float) -> tuple[int, bytes, str]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, body, resp.getheader("Content-Type", "")
    finally:
        conn.close()


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
        self.children0 = _children_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        machine1 = machine_ticks()
        self.server = self.wrk = self.other = None
        if self.machine0 is None or machine1 is None or self.pgid is None:
            return
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


def tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


class Server:
    """One server subprocess in its own session (process group)."""

    def __init__(self, contender: Contender, python: str, log_name: str) -> None:
        self.contender = contender
        self.port = free_port()
        self.argv = contender.argv(python, self.port)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{log_name}.log"
        self._log: TextIO | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.paired = False  # measured in turn with another: lines name the contender

    @property
    def pgid(self) -> int | None:
        # start_new_session: the group id is the leader's pid.
        return self.proc.pid if self.proc is not None else None

    def connections_per_process(self) -> list[int] | None:
        """Established client connections held by each worker, largest first."""
        if self.pgid is None:
            return None
        inodes = established_inodes(self.port)
        pids = group_pids(self.pgid)
        if len(pids) > 1:  # a master and its workers: count the workers
            pids = [p for p in pids if p != self.pgid]
        counts = []
        for pid in pids:
            n = 0
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        link = os.readlink(fd)
                        if link.startswith("socket:[") and link[8:-1] in inodes:
                            n += 1
            counts.append(n)
        return sorted(counts, reverse=True) or None

    def start(self) -> None:
        self._log = self.log_path.open("w")
        self._log.write("$ " + " ".join(self.argv) + "\n")
        self._log.flush()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=REPO_ROOT,
            env=server_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, path: str, deadline_s: float = READY_DEADLINE) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + deadline_s
        last = "no answer"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise BenchError(
                    f"exited with code {code} before it was ready; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            try:
                with socket.create_connection((HOST, self.port), timeout=1.0):
                    pass
                status, _, _ = http_get(self.port, path, timeout=5.0)
                if status == 200:
                    return
                last = f"GET {path} -> {status}"
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
        raise BenchError(f"not ready after {deadline_s:.0f} s ({last}); log {self.log_path}")

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the group id is the leader's pid
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)
        # Whatever is left in the group (orphaned workers) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            print(f"  warning: processes of group {pgid} still alive", flush=True)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def running(contender: Contender, python: str, log_name: str | None = None) -> Iterator[Server]:
    server = Server(contender, python, log_name or contender.name)
    try:
        server.start()
        server.wait_ready(contender.url_path("/"))
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- #
# wrk
# --------------------------------------------------------------------------- #

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION = r"([\d.]+)(us|ms|s|m|h)"
_SOCKET_ERRORS = ("connect", "read", "write", "timeout")


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    lat = re.search(rf"^\s*Latency\s+{_DURATION}\s+{_DURATION}\s+{_DURATION}", output, re.M)
    total = re.search(r"^\s*(\d+) requests in", output, re.M)
    if not (rps and lat and total):
        raise BenchError("could not parse wrk output:\n" + output.strip())
    g = lat.groups()
    pcts = {
        m.group(1): _ms(m.group(2), m.group(3))
        for m in re.finditer(rf"^\s+(50|99)%\s+{_DURATION}", output, re.M)
    }
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    socket_errors = dict(zip(_SOCKET_ERRORS, map(int, sock.groups()), strict=True)) if sock else {}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests_per_sec=float(rps.group(1)),
        requests=int(total.group(1)),
        latency_avg_ms=_ms(g[0], g[1]),
        latency_stdev_ms=_ms(g[2], g[3]),
        latency_max_ms=_ms(g[4], g[5]),
        latency_p50_ms=pcts.get("50"),
        latency_p99_ms=pcts.get("99"),
        socket_errors=socket_errors,
        non_2xx_3xx=int(non2xx.group(1)) if non2xx else 0,
    )


@dataclass(frozen=True)
class WrkSettings:
    wrk: str
    threads: int
    connections: int
    duration: int
    warmup: int

    def run(self, url: str, seconds: int, probe: Callable[[], None] | None = None) -> str:
        """Run wrk; call ``probe`` once, a third of the way into the run."""
        argv = [
            self.wrk,
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{seconds}s",
            "--latency",
            url,
        ]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            if probe is not None:
                try:
                    proc.wait(timeout=seconds / 3)
                except subprocess.TimeoutExpired:
                    probe()
            out, err = proc.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"wrk did not finish: {' '.join(argv)}") from exc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            msg = (err or out).strip()
            raise BenchError(f"wrk failed ({proc.returncode}): {msg}")
        return out

    def warm_up(self, url: str) -> None:
        if self.warmup > 0:
            self.run(url, self.warmup)

    def measure(self, url: str, server: Server | None = None) -> WrkResult:
        self.warm_up(url)
        spread: list[int] | None = None

        def probe() -> None:
            nonlocal spread
            if server is not None:
                spread = server.connections_per_process()

        with CpuMeter(server.pgid if server else None) as meter:
            output = self.run(url, self.duration, probe)
        result = parse_wrk(output)
        result.cpu_server, result.cpu_wrk = meter.server, meter.wrk
        result.cpu_other = meter.other
        result.conns_per_process = spread
        return result


# --------------------------------------------------------------------------- #
# Measurements
# --------------------------------------------------------------------------- #


def sanity_check(port: int, logical: str, url_path: str) -> None:
    """Make sure the path really serves the bench app before measuring it."""
    status, body, ctype = http_get(port, url_path, timeout=10.0)
    if status != 200:
        raise BenchError(f"GET {url_path} -> {status}")
    expected: dict[str, Callable[[], bool]] = {
        "/": lambda: body == b"Hello, World!",
        "/json": lambda: ctype.startswith("application/json") and b"Hello" in body,
        "/page": lambda: b"item 19" in body,
    }
    if not expected[logical]():
        raise BenchError(f"GET {url_path}: unexpected response {body[:80]!r}")


@dataclass(frozen=True)
class Plan:
    python: str
    wrk: WrkSettings
    settle: float  # max seconds to wait for a quiet machine
    retries: int  # extra attempts for a run disturbed by other load
    turn: int  # seconds per run head to head

    def for_turns(self) -> Plan:
        """Head-to-head runs: ``turn`` seconds, warmed up once beforehand."""
        return replace(self, wrk=replace(self.wrk, duration=self.turn, warmup=0))


def describe(m: WrkResult) -> str:
    text = (
        f"{m.requests_per_sec:>9.1f} req/s  avg {m.latency_avg_ms:7.2f} ms"
        f"  p99 {fmt_ms(m.latency_p99_ms)}"
    )
    if m.cpu_server is not None and m.cpu_wrk is not None and m.cpu_other is not None:
        text += f"  cpu: server {m.cpu_server:4.0%} wrk {m.cpu_wrk:4.0%} other {m.cpu_other:4.0%}"
    if m.conns_per_process:
        text += "  conns " + "/".join(map(str, m.conns_per_process))
    if m.errors:
        text += f"  (non-2xx {m.non_2xx_3xx}, socket errors {m.socket_errors})"
    return text


def announce(result: ContenderResult, plan: Plan) -> None:
    busy = wait_quiet(plan.settle)
    result.cpu_busy_before.append(busy)
    note = ""
    if busy is not None and busy > BUSY_WARNING:
        note = f"  (warning: machine still {busy:.0%} busy, numbers are noisy)"
    print(f"== {result.contender.name}{note}", flush=True)


def started(result: ContenderResult, server: Server) -> None:
    result.argv = server.argv
    result.log = str(server.log_path.relative_to(REPO_ROOT))
    print(f"   $ {' '.join(server.argv)}", flush=True)


def bench_path(
    server: Server, logical: str, sub: str, plan: Plan, result: ContenderResult, keep: bool = True
) -> WrkResult | None:
    """Measure one endpoint (again if other load disturbed the run); the result
    goes into the table if ``keep``."""
    url_path = result.contender.url_path(sub)
    url = f"http://{HOST}:{server.port}{url_path}"
    pres = result.paths.setdefault(logical, PathResult(logical, url_path))
    name = f"{result.contender.name} {url_path}" if server.paired else url_path
    for attempt in range(plan.retries + 1):
        try:
            sanity_check(server.port, logical, url_path)
            measured = plan.wrk.measure(url, server)
        except (BenchError, OSError) as exc:
            pres.error = str(exc)
            print(f"   {name:<10} ERROR {exc}", flush=True)
            return None
        if keep:
            pres.rounds.append(measured)
        print(f"   {name:<10} {describe(measured)}", flush=True)
        if not measured.disturbed or attempt == plan.retries:
            return measured
        print("   disturbed by other load; waiting, then again", flush=True)
        wait_quiet(plan.settle)
    return None


def bench_contender(contender: Contender, plan: Plan, result: ContenderResult) -> None:
    announce(result, plan)
    try:
        with running(contender, plan.python) as server:
            started(result, server)
            for logical, sub in ENDPOINTS:
                bench_path(server, logical, sub, plan, result)
    except BenchError as exc:
        result.error = str(exc)
        print(f"   FAILED: {exc}", flush=True)


def measure_in_turn(
    a: ContenderResult,
    b: ContenderResult,
    endpoints: Sequence[tuple[str, str]],
    plan: Plan,
    *,
    to_table: bool = False,
) -> None:
    """Start ``a`` and ``b`` side by side and measure each endpoint in the
    order A B B A: the machine drifts more between two servers measured one
    after the other (the same server measured 10 % apart) than the
    differences this has to show, and A B B A cancels a steady drift. Each
    A B B A gives one ratio, b over a, in ``b.paired``.

    With ``to_table`` the runs are the table's (``plan.wrk``) and the first A
    and B go into it, so each contender's best there comes from as many runs
    as every other contender's. Otherwise (head to head) each server is warmed
    up once per endpoint and the four runs are ``plan.turn`` seconds long.
    """
    runs_plan = plan if to_table else plan.for_turns()
    if to_table:
        announce(a, plan)
        print(f"   (measured in turn with {b.contender.name}: A B B A)", flush=True)
    else:
        wait_quiet(plan.settle)
    try:
        with running(a.contender, plan.python) as sa, running(b.contender, plan.python) as sb:
            sa.paired = sb.paired = True
            if to_table:
                started(a, sa)
                started(b, sb)
            for logical, sub in endpoints:
                if not to_table:
                    for srv, res in ((sa, a), (sb, b)):
                        plan.wrk.warm_up(f"http://{HOST}:{srv.port}{res.contender.url_path(sub)}")
                runs = [
                    bench_path(srv, logical, sub, runs_plan, res, keep)
                    for srv, res, keep in (
                        (sa, a, to_table),
                        (sb, b, to_table),
                        (sb, b, False),
                        (sa, a, False),
                    )
                ]
                rps = [r.requests_per_sec if r else 0.0 for r in runs]
                if all(rps):
                    ratio = (rps[1] + rps[2]) / (rps[0] + rps[3])
                    b.paired.setdefault(logical, []).append(ratio)
    except BenchError as exc:
        if to_table:
            a.error = b.error = str(exc)
        print(f"   FAILED: {exc}", flush=True)


def head_to_head(results: Sequence[ContenderResult], plan: Plan, rounds: int) -> None:
    """Measure flask-serve in turn with each contender a check compares it
    with, ``rounds`` more times: for each endpoint its two best gunicorn
    candidates of the table, waitress, and flask-serve-prefix.

    The table's best gunicorn is the highest of many noisy runs (every
    candidate's, each keeping its best): its figure sits at the top of the
    noise, flask-serve's only at the top of its own (measured: gunicorn-w2 at
    4051 and 2925 req/s in two rounds of one run), and the candidate that
    came out best may not be the best command line (one run picked
    w2-gthread8 for ``/`` at 4120 req/s; head to head it did 16 % less than
    flask-serve, where gunicorn-w2 has been within 3 %). Measuring the two
    best again, in turn with flask-serve, compares servers rather than luck.

    Both servers are started afresh for every A B B A: a process's speed
    depends on its own hash seed and memory layout, so the A B B A's of one
    pair of processes would share that pair's bias, and the interval of
    :func:`interval` assumes independent ratios.
    """
    serve = find(results, "flask-serve")
    if serve is None or serve.error:
        return
    chosen: dict[str, list[tuple[str, str]]] = {}
    for logical, sub in ENDPOINTS:
        for name in gunicorn_finalists(results, logical):
            chosen.setdefault(name, []).append((logical, sub))
    for name in ("waitress", "flask-serve-prefix"):
        chosen[name] = list(ENDPOINTS)
    for name, endpoints in chosen.items():
        other = find(results, name)
        if other is None or other.error:
            continue
        print(
            f"-- head to head: flask-serve and {name}, {rounds} x A B B A "
            f"({plan.turn} s runs, both servers started afresh each time)",
            flush=True,
        )
        for block in range(rounds):
            print(f"   [{block + 1}/{rounds}]", flush=True)
            measure_in_turn(serve, other, endpoints, plan)


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


def sleep_check(plan: Plan) -> SleepResult:
    contender = SLEEP_CONTENDER
    wait_quiet(plan.settle)
    print(
        f"== {CONCURRENCY_CHECK}: {SLEEP_REQUESTS} concurrent GET /sleep against {contender.name}",
        flush=True,
    )
    with running(contender, plan.python, CONCURRENCY_CHECK) as server:
        n = SLEEP_REQUESTS
        barrier = threading.Barrier(n + 1)
        outcomes: list[tuple[bool, float, str]] = [(False, 0.0, "not run")] * n

        def one(i: int) -> None:
            barrier.wait()
            t0 = time.perf_counter()
            try:
                status, body, _ = http_get(server.port, "/sleep", SLEEP_TIMEOUT)
                ok = status == 200 and body == b"ok"
                msg = "" if ok else f"status {status} body {body[:40]!r}"
            except OSError as exc:
                ok, msg = False, f"{type(exc).__name__}: {exc}"
            outcomes[i] = (ok, time.perf_counter() - t0, msg)

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join(SLEEP_TIMEOUT + 10)
        wall = time.perf_counter() - t0
        errors = sorted({msg for ok, _, msg in outcomes if not ok})
        result = SleepResult(
            requests=n,
            ok=sum(ok for ok, _, _ in outcomes),
            wall_s=wall,
            slowest_s=max(d for _, d, _ in outcomes),
            errors=errors,
            argv=server.argv,
        )
    print(f"   {result.ok}/{n} ok, wall time {result.wall_s:.2f} s", flush=True)
    for err in errors[:3]:
        print(f"   error: {err}", flush=True)
    return result


# --------------------------------------------------------------------------- #
# Reporting
# --------------------------------------------------------------------------- #


def fmt_ms(value: float | None) -> str:
    return f"{value:7.2f} ms" if value is not None else "      n/a"


def machine_info(wrk: str) -> dict[str, Any]:
    cpu_model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        nproc = os.cpu_count() or 0
    try:
        wrk_version = subprocess.run(
            [wrk, "--version"], capture_output=True, text=True, check=False, timeout=10
        ).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        wrk_version = "unknown"
    return {
        "nproc": nproc,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "loadavg": list(os.getloadavg()),
        "wrk": wrk_version.split(" Copyright")[0].strip(),
    }


def package_versions(python: str) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {'python': sys.version.split()[0]}\n"
        "for n in ('flask', 'werkzeug', 'gunicorn', 'waitress', 'flask-prodserve'):\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: out[n] = 'not installed'\n"
        "print(json.dumps(out))\n"
    )
    try:
        done = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, check=True, timeout=30
        )
        versions: dict[str, str] = json.loads(done.stdout)
        return versions
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}


def best_gunicorn(results: Sequence[ContenderResult], path: str) -> tuple[str, float] | None:
    best: tuple[str, float] | None = None
    for r in results:
        rps = r.rps(path)
        if r.contender.group != "gunicorn" or rps is None:
            continue
        if best is None or rps > best[1]:
            best = (r.contender.name, rps)
    return best


def gunicorn_finalists(results: Sequence[ContenderResult], path: str) -> list[str]:
    """The :data:`FINALISTS` gunicorn candidates with the most requests/s on ``path``."""
    ranked = sorted(
        (r for r in results if r.contender.group == "gunicorn" and r.rps(path) is not None),
        key=lambda r: r.rps(path) or 0.0,
        reverse=True,
    )
    return [r.contender.name for r in ranked[:FINALISTS]]


def find(results: Sequence[ContenderResult], name: str) -> ContenderResult | None:
    return next((r for r in results if r.contender.name == name), None)


def print_table(results: Sequence[ContenderResult]) -> None:
    paths = [p for p, _ in ENDPOINTS]
    width = max([len(r.contender.name) for r in results] + [len("best gunicorn")]) + 2
    print()
    print("Throughput (requests/sec, higher is better)")
    header = f"{'contender':<{width}}" + "".join(f"{p:>12}" for p in paths)
    print(header)
    print("-" * len(header))
    for r in results:
        cells = []
        for p in paths:
            pres = r.paths.get(p)
            rps = r.rps(p)
            best = pres.best if pres else None
            if rps is not None and best is not None:
                flag = "*" if best.errors else "~" if best.disturbed else " "
                cells.append(f"{rps:>11.1f}{flag}")
            else:
                cells.append(f"{'error' if r.error or pres else 'n/a':>12}")
        print(f"{r.contender.name:<{width}}" + "".join(cells))
    gun = [best_gunicorn(results, p) for p in paths]
    if any(gun):
        print("-" * len(header))
        row = "".join(f"{g[1]:>11.1f} " if g else f"{'n/a':>12}" for g in gun)
        print(f"{'best gunicorn':<{width}}{row}")
        names = "".join(f"{g[0].removeprefix('gunicorn-'):>12}" if g else f"{'':>12}" for g in gun)
        print(f"{'  (candidate)':<{width}}{names}")
    prefixed = [r for r in results if r.contender.prefix]
    for r in prefixed:
        print(f"({r.contender.name} is hit at {r.contender.prefix}/, ...)")
    bests = [p.best for r in results for p in r.paths.values() if p.best]
    if any(b.errors for b in bests):
        print("* wrk reported socket errors for this cell (see the log above)")
    if any(b.disturbed and not b.errors for b in bests):
        print(
            f"~ other processes used > {NOISE_THRESHOLD:.0%} of the CPU during "
            "this cell's run: treat it as noisy"
        )

    print()
    print("Latency (avg / p99 ms, wrk -c connections)")
    print(f"{'contender':<{width}}" + "".join(f"{p:>18}" for p in paths))
    for r in results:
        cells = []
        for p in paths:
            pres = r.paths.get(p)
            best = pres.best if pres else None
            if best is None:
                cells.append(f"{'n/a':>18}")
            else:
                p99 = f"{best.latency_p99_ms:.2f}" if best.latency_p99_ms else "?"
                cells.append(f"{best.latency_avg_ms:>9.2f} / {p99:>6}")
        print(f"{r.contender.name:<{width}}" + "".join(cells))


def compute_checks(results: Sequence[ContenderResult], sleep: SleepResult | None) -> list[Check]:
    checks: list[Check] = []
    paths = [p for p, _ in ENDPOINTS]
    serve = find(results, "flask-serve")
    prefix = find(results, "flask-serve-prefix")
    waitress = find(results, "waitress")

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    def versus(other: ContenderResult | None, p: str, table: float | None) -> Estimate:
        """flask-serve's requests/s over ``other``'s on ``p`` (``paired``
        holds ``other``'s over flask-serve's)."""
        pairs = other.paired.get(p) if other else None
        return Estimate.of([1 / x for x in pairs] if pairs else None, table)

    for p in paths:
        g = best_gunicorn(results, p)
        table = ratio(serve.rps(p) if serve else None, g[1] if g else None)
        # Against the strongest finalist, as measured in turn.
        finalists = [
            (versus(find(results, n), p, table), n) for n in gunicorn_finalists(results, p)
        ]
        known = [(e, n) for e, n in finalists if e.value is not None]
        est, name = (
            min(known, key=lambda k: k[0].value or 0.0) if known else (Estimate.of(None, None), "")
        )
        label = f" (vs {name.removeprefix('gunicorn-')}, {est.how})" if name else ""
        checks.append(est.check(f"flask-serve / best gunicorn  {p:<6}{label}", TARGET_VS_GUNICORN))
    for p in paths:
        table = ratio(serve.rps(p) if serve else None, waitress.rps(p) if waitress else None)
        est = versus(waitress, p, table)
        checks.append(
            est.check(f"flask-serve / waitress       {p:<6} ({est.how})", TARGET_VS_WAITRESS)
        )
    for p in paths:
        table = ratio(prefix.rps(p) if prefix else None, serve.rps(p) if serve else None)
        est = Estimate.of(prefix.paired.get(p) if prefix else None, table)
        checks.append(
            est.check(
                f"prefix / no-prefix           {p:<6} ({est.how})",
                1 - TARGET_PREFIX_COST,
                as_cost=True,
            )
        )
    if sleep is not None:
        ok = sleep.ok == sleep.requests
        shown = f"{sleep.wall_s:.2f} s" if sleep.wall_s is not None else "error"
        if not ok:
            shown += f" ({sleep.requests - sleep.ok} failed)"
        checks.append(
            Check(
                f"{SLEEP_REQUESTS} x /sleep (1 s) wall time",
                sleep.wall_s,
                shown,
                f"<= {TARGET_SLEEP_WALL:.0f} s",
                "PASS"
                if ok and sleep.wall_s is not None and sleep.wall_s <= TARGET_SLEEP_WALL
                else "FAIL",
            )
        )
    else:
        checks.append(
            Check(
                f"{SLEEP_REQUESTS} x /sleep (1 s) wall time",
                None,
                "n/a",
                f"<= {TARGET_SLEEP_WALL:.0f} s",
                "SKIP",
            )
        )
    return checks


def print_checks(checks: Sequence[Check]) -> None:
    print()
    print("Ratios and targets")
    width = max(len(c.label) for c in checks) + 2
    for c in checks:
        print(f"{c.label:<{width}} {c.shown:<40} target {c.target:<12} {c.verdict}")
    if any(c.verdict == "UNCLEAR" for c in checks):
        print(
            "UNCLEAR: the 95 % interval [in brackets] holds values on both sides of the "
            "target; more --head-to-head turns narrow it"
        )


# --------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------- #


def select(patterns: Sequence[str] | None, quick: bool) -> tuple[list[Contender], bool]:
    """Return the contenders to run and whether to run the concurrency check."""
    pool = [c for c in CONTENDERS if c.quick or not quick]
    if not patterns:
        return pool, True
    pats = [p.strip() for item in patterns for p in item.split(",") if p.strip()]
    names = [c.name for c in CONTENDERS] + [CONCURRENCY_CHECK]
    for pat in pats:
        if not any(fnmatch.fnmatchcase(n, pat) for n in names):
            raise BenchError(f"--only {pat!r} matches nothing; choose from: {', '.join(names)}")
    chosen = [c for c in CONTENDERS if any(fnmatch.fnmatchcase(c.name, p) for p in pats)]
    return chosen, any(fnmatch.fnmatchcase(CONCURRENCY_CHECK, p) for p in pats)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark flask serve --prod against gunicorn and waitress."
    )
    parser.add_argument(
        "--duration", type=int, default=None, help="seconds per wrk run (default 10)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds before each run")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the whole set N times and keep each cell's best (default 1)",
    )
    parser.add_argument(
        "--head-to-head",
        type=int,
        default=None,
        metavar="N",
        help=(
            "then measure flask-serve in turn with what the checks compare it with "
            "(two best gunicorn per endpoint, waitress, the prefix), N x A B B A; "
            "the checks use the geometric mean ratio and its 95 %% interval "
            "(default 8, --quick 2, 0: off)"
        ),
    )
    parser.add_argument(
        "--turn",
        type=int,
        default=2,
        metavar="S",
        help="seconds per wrk run head to head (default 2)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=60.0,
        help="max seconds to wait for other load to stop before each server (default 60)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help="re-run a measurement disturbed by other CPU load up to N times (default 2)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 s runs and only the gunicorn candidates w2, w4, w2-gthread4",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=(
            "run only these contenders (glob patterns, repeatable or comma "
            f"separated; '{CONCURRENCY_CHECK}' is the concurrency check)"
        ),
    )
    parser.add_argument("--list", action="store_true", help="list names and exit")
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter that runs the servers (default: this one)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS_DIR / "latest.json",
        help="where to write the results (default bench/results/latest.json)",
    )
    parser.add_argument("--check", action="store_true", help="exit with status 2 if a target FAILs")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 3 if args.quick else 10
    if args.head_to_head is None:
        args.head_to_head = 2 if args.quick else 8
    for name in ("duration", "turn", "connections", "threads", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0 or args.retries < 0 or args.settle < 0 or args.head_to_head < 0:
        parser.error("--warmup, --retries, --settle and --head-to-head must be >= 0")
    return args


def run(args: argparse.Namespace) -> int:
    if args.list:
        for c in CONTENDERS:
            print(f"{c.name:<22} {' '.join(c.argv('python', 'PORT'))}")
        print(f"{CONCURRENCY_CHECK:<22} {SLEEP_REQUESTS} concurrent GET /sleep")
        return 0

    wrk_path = shutil.which("wrk")
    if wrk_path is None:
        print("wrk not found on PATH: install it with `apt-get install wrk`")
        return 1

    contenders, do_sleep = select(args.only, args.quick)
    wrk = WrkSettings(wrk_path, args.threads, args.connections, args.duration, args.warmup)
    plan = Plan(args.python, wrk, args.settle, args.retries, args.turn)
    machine = machine_info(wrk_path)
    versions = package_versions(args.python)
    print(
        f"machine: nproc={machine['nproc']}  cpu: {machine['cpu_model']}  "
        f"load: {' '.join(f'{x:.2f}' for x in machine['loadavg'])}"
    )
    print(
        "versions: " + "  ".join(f"{k} {v}" for k, v in versions.items()) + f"  | {machine['wrk']}"
    )
    print(
        f"wrk -t{wrk.threads} -c{wrk.connections} -d{wrk.duration}s "
        f"(warm-up {wrk.warmup} s), rounds={args.rounds}, "
        f"head-to-head={args.head_to_head} x {args.turn} s, "
        f"{len(contenders)} contender(s)" + (f" + {CONCURRENCY_CHECK}" if do_sleep else "")
    )
    print()

    started = time.time()
    results = [ContenderResult(c) for c in contenders]
    for rnd in range(args.rounds):
        if args.rounds > 1:
            print(f"-- round {rnd + 1}/{args.rounds}", flush=True)
        plain, mounted = find(results, "flask-serve"), find(results, "flask-serve-prefix")
        for res in results:
            if plain and mounted and res in (plain, mounted):
                if res is plain:
                    measure_in_turn(plain, mounted, ENDPOINTS, plan, to_table=True)
                continue
            bench_contender(res.contender, plan, res)
    if args.head_to_head:
        head_to_head(results, plan, args.head_to_head)
    sleep: SleepResult | None = None
    if do_sleep:
        try:
            sleep = sleep_check(plan)
        except BenchError as exc:
            print(f"   FAILED: {exc}", flush=True)
            sleep = SleepResult(SLEEP_REQUESTS, 0, None, 0.0, [str(exc)], [])

    print_table(results)
    checks = compute_checks(results, sleep)
    print_checks(checks)

    elapsed = time.time() - started
    print(f"\n(total {elapsed:.0f} s)")
    payload: dict[str, Any] = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "versions": versions,
        "settings": {
            "wrk": f"wrk -t{wrk.threads} -c{wrk.connections} -d{wrk.duration}s",
            "duration_s": wrk.duration,
            "warmup_s": wrk.warmup,
            "rounds": args.rounds,
            "head_to_head": args.head_to_head,
            "turn_s": args.turn,
            "retries": args.retries,
            "settle_s": args.settle,
            "quick": args.quick,
            "only": args.only,
        },
        "contenders": {
            r.contender.name: {
                "group": r.contender.group,
                "argv": r.argv,
                "log": r.log,
                "error": r.error,
                "cpu_busy_before": r.cpu_busy_before,
                "paired_ratios": r.paired,
                "paths": {
                    p: {
                        "url_path": pr.path,
                        "rps": pr.rps,
                        "error": pr.error,
                        "rounds": [asdict(x) for x in pr.rounds],
                    }
                    for p, pr in r.paths.items()
                },
            }
            for r in results
        },
        "best_gunicorn": {
            p: {"name": g[0], "rps": g[1]} for p, _ in ENDPOINTS if (g := best_gunicorn(results, p))
        },
        "concurrency": asdict(sleep) if sleep else None,
        "checks": [asdict(c) for c in checks],
        "elapsed_s": elapsed,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2, allow_nan=False, default=str))
    print(f"results written to {display_path(args.json)}")
    if args.check and any(c.verdict in ("FAIL", "UNCLEAR") for c in checks):
        return 2
    return 0


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into head: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
