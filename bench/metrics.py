"""What --metrics-path costs: flask serve --prod with and without it, head to head.

Each round starts both servers afresh (a Python process's speed depends on its
hash seed and memory layout), warms each up, then measures them in turn,
A B B A (off, on, on, off: a steady drift cancels), with ``wrk -t1 -c32
--latency`` on ``/`` of bench/bench_app.py (the text path). A round gives one
on/off ratio of requests per second and one of p99 latency; the report is the
geometric mean of each over the rounds, with a 95 % interval (Student's t).

On a shared machine requests per second move with everyone else's load; the
server's own CPU time per request (every process of its group, from /proc)
moves much less, and when the server is CPU-bound its inverse ratio is the
throughput ratio. It is reported too.

    .venv/bin/python bench/metrics.py                 # 8 rounds of 3 s runs
    .venv/bin/python bench/metrics.py --rounds 12 --duration 5 --server waitress
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python bench/metrics.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cpu import group_ticks

ROOT = Path(__file__).resolve().parent.parent
# t(0.975, df) for df = 1..30; beyond that 1.96 is close enough.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]  # fmt: skip


def geometric_interval(ratios: list[float]) -> tuple[float, float, float]:
    """The geometric mean of ``ratios`` and its 95 % interval (the noise is multiplicative)."""
    logs = [math.log(r) for r in ratios]
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return math.exp(mean), math.nan, math.nan
    t = _T975[len(logs) - 2] if len(logs) - 1 <= len(_T975) else 1.96
    half = t * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Run:
    rps: float
    p99_ms: float
    cpu_us: float  # server CPU time per request


@contextlib.contextmanager
def server(args: list[str], log: Path) -> Iterator[tuple[int, int]]:
    """``flask --app bench.bench_app serve --prod ARGS`` on a free port, stopped by PID."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "PRODSERVE_"))}
    env.pop("WEB_CONCURRENCY", None)
    env.pop("PORT", None)
    cmd = [sys.executable, "-m", "flask", "--app", "bench.bench_app", "serve", "--prod"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), *args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server did not start:\n{log.read_text()}") from None
                time.sleep(0.1)
        yield port, proc.pid  # the group's ID: start_new_session
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_COUNT = re.compile(r"(\d+) requests in")
_P99 = re.compile(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def wrk(target: tuple[int, int], seconds: int) -> Run:
    """One ``wrk -t1 -c32`` run on ``/``: req/s, p99 latency and server CPU per request."""
    port, pgid = target
    cmd = ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}/"]
    ticks = group_ticks(pgid)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    ticks = group_ticks(pgid) - ticks
    rps, p99, count = _RPS.search(out), _P99.search(out), _COUNT.search(out)
    if rps is None or p99 is None or count is None or "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk failed or saw errors:\n{out}")
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    cpu = ticks / os.sysconf("SC_CLK_TCK") * 1e6 / int(count.group(1))
    return Run(float(rps.group(1)), float(p99.group(1)) * unit, cpu)


def one_round(args: argparse.Namespace, logs: Path) -> tuple[Run, Run]:
    """(off, on), each the mean of its two runs of A B B A."""
    base = ["--server", args.server]
    with (
        server(base, logs / "off.log") as off,
        server([*base, "--metrics-path", "/metrics"], logs / "on.log") as on,
    ):
        for target in (off, on):
            wrk(target, args.warmup)
        runs = {target: [wrk(target, args.duration)] for target in (off, on)}
        for target in (on, off):
            runs[target].append(wrk(target, args.duration))
        url = f"http://127.0.0.1:{on[0]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert b"http_server_request_duration_seconds_count" in response.read()
    return _mean(runs[off]), _mean(runs[on])


def _mean(runs: list[Run]) -> Run:
    fields = ("rps", "p99_ms", "cpu_us")
    return Run(*(statistics.fmean(getattr(r, f) for r in runs) for f in fields))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=int, default=3, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--server", default="gunicorn", choices=("gunicorn", "waitress"))
    args = parser.parse_args()
    logs = ROOT / "bench" / "results" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ratios: dict[str, list[float]] = {"req/s": [], "p99": [], "server CPU per request": []}
    for n in range(1, args.rounds + 1):
        off, on = one_round(args, logs)
        ratios["req/s"].append(on.rps / off.rps)
        ratios["p99"].append(on.p99_ms / off.p99_ms)
        ratios["server CPU per request"].append(on.cpu_us / off.cpu_us)
        print(
            f"round {n}: req/s off {off.rps:.0f} on {on.rps:.0f}; "
            f"p99 off {off.p99_ms:.2f} ms on {on.p99_ms:.2f} ms; "
            f"server CPU/request off {off.cpu_us:.0f} us on {on.cpu_us:.0f} us",
            flush=True,
        )
    for name, values in ratios.items():
        mid, lo, hi = geometric_interval(values)
        print(f"{name} on/off: {mid:.3f} [95 % interval {lo:.3f}-{hi:.3f}], {len(values)} rounds")
    lo_rps = geometric_interval(ratios["req/s"])[1]
    print("req/s: PASS, within 5 %" if lo_rps >= 0.95 else "req/s: not shown within 5 %")


if __name__ == "__main__":
    main()
