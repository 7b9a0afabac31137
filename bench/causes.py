"""Where a request's latency goes inside ``flask serve --prod`` (gunicorn).

    .venv/bin/python -m bench.causes [--path /json] [--seconds 5] [--rate N] [-- FLAGS...]

Serves ``bench/bench_app.py`` with the tracing worker (:mod:`bench.traceworker`),
loads it with ``wrk -t1 -c32`` (or, with ``--rate``, the open-loop generator
of :mod:`bench.openloop` at that many requests per second) and prints, next
to the client's own p50/p99 (everything), how long requests spent in each
stage the worker sees: in its queue (head complete, waiting for its turn),
handed to a thread but not started (the thread waiting for the GIL), and in
the thread (parse, app, response: its own GIL waits included), as
percentiles and a histogram, plus the server's context switches per
request. What the client sees beyond the worker's total is the kernel, and
the time before the event loop reads the request: its thread answering
another one, or waiting for the GIL.

With two workers or more it also prints how evenly they shared the requests,
window by window (:data:`WINDOW` seconds): a total split evenly over a run
can hide one worker taking nearly every request for a while, queueing them
behind each other while the other idles, as a client that reuses its most
recently used kept-alive connection first (nginx's upstream keepalive,
urllib3's pool, ``bench/openloop.c``) makes it do.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.contenders import APP_MODULE, HOST, BenchError, Contender
from bench.cpu import group_switches
from bench.openloop import run as open_loop_run
from bench.servers import running
from bench.wrk import WrkSettings, parse_wrk

BUCKETS_MS = (1, 2, 5, 10, 20, 50)
#: The window (seconds) over which the workers' shares of requests are counted.
WINDOW = 0.1


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else 0.0


def histogram(values: Sequence[float]) -> str:
    edges = (0, *BUCKETS_MS)
    cells = []
    for low, high in zip(edges, (*BUCKETS_MS, None), strict=True):
        n = sum(1 for v in values if v >= low and (high is None or v < high))
        label = f"<{high}" if low == 0 else f">={low}" if high is None else f"{low}-{high}"
        cells.append(f"{label}:{n / max(len(values), 1):6.1%}")
    return "  ".join(cells)


def busiest_shares(started: Sequence[Sequence[float]], width: float) -> list[float]:
    """For each ``width``-long window in which requests started, the share of
    them that the busiest worker took; ``started`` holds each worker's start
    times."""
    counts: dict[int, list[int]] = {}
    for worker, times in enumerate(started):
        for t in times:
            counts.setdefault(int(t // width), [0] * len(started))[worker] += 1
    return [max(c) / sum(c) for _, c in sorted(counts.items())]


def sharing(started: Sequence[Sequence[float]]) -> str:
    """How evenly the workers took requests, window by window (see the module)."""
    shares = busiest_shares(started, WINDOW)
    even = 1.0 / len(started)
    near = sum(1 for s in shares if s <= even + (1 - even) / 2) / max(len(shares), 1)
    totals = "/".join(str(len(times)) for times in sorted(started, key=len, reverse=True))
    return (
        f"  {len(started)} workers took {totals} requests; in each {WINDOW * 1000:.0f} ms window"
        f" the busiest took p50 {percentile(shares, 50):.0%}, p90 {percentile(shares, 90):.0%}"
        f" of them; within half-way of an even split in {near:.0%} of the windows"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", default="/json")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--rate", type=float, help="requests/s, open loop (bench/openloop.py), instead of wrk"
    )
    parser.add_argument("flags", nargs="*", help="more flask serve flags (after --)")
    args = parser.parse_args(argv)
    wrk_path = shutil.which("wrk")
    if wrk_path is None:
        print("wrk not found on PATH: install it with `apt-get install wrk`")
        return 1
    # Doubled braces: contender arguments are format strings ({host}, {port}).
    options = '{{"worker_class": "bench.traceworker.TracingWorker"}}'
    contender = Contender(
        "flask-serve-traced",
        "flask-serve",
        ("-m", "flask", "--app", APP_MODULE, "serve", "--prod", "--host", "{host}",
         "--port", "{port}", "--server-options", options, *args.flags),
    )  # fmt: skip
    wrk = WrkSettings(wrk_path, 1, args.connections, args.seconds, 2)
    with tempfile.TemporaryDirectory() as folder:
        os.environ["BENCH_TRACE_DIR"] = folder
        try:
            with running(contender, sys.executable) as server:
                url = f"http://{HOST}:{server.port}{args.path}"
                wrk.warm_up(url)
                switches = group_switches(server.pgid or 0)
                start = time.perf_counter()
                if args.rate:
                    loop = open_loop_run(HOST, server.port, args.path, args.rate, args.seconds)
                    client = (loop.sent, loop.sent / args.seconds, loop.p50_ms, loop.p99_ms)
                    load = f"open loop at {args.rate:.0f}/s"
                else:
                    total = parse_wrk(wrk.run(url, args.seconds))
                    client = (
                        total.requests,
                        total.requests_per_sec,
                        total.latency_p50_ms or 0.0,
                        total.latency_p99_ms or 0.0,
                    )
                    load = f"wrk -c{args.connections}"
                end = time.perf_counter()
                switches = group_switches(server.pgid or 0) - switches
        except BenchError as exc:
            print(f"failed: {exc}")
            return 1
        rows = []
        by_worker = []
        for trace in Path(folder).glob("*.txt"):
            mine = []
            for line in trace.read_text().splitlines():
                read, dispatched, started, done = (float(x) for x in line.split())
                if start <= read <= end:
                    mine.append((read, dispatched, started, done))
            rows += mine
            by_worker.append([started for _, _, started, _ in mine])
    requests, per_second, p50, p99 = client
    stages = {
        "in the worker's queue": [(d - r) * 1000 for r, d, s, e in rows],
        "handed over, not started": [(s - d) * 1000 for r, d, s, e in rows],
        "in the thread": [(e - s) * 1000 for r, d, s, e in rows],
        "worker total": [(e - r) * 1000 for r, d, s, e in rows],
    }
    print(f"flask serve --prod {' '.join(args.flags)}: GET {args.path}, {load}")
    print(
        f"client side: {per_second:.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms;"
        f" server context switches per request: {switches / max(requests, 1):.1f}"
    )
    for name, values in stages.items():
        print(
            f"  {name:<26} p50 {percentile(values, 50):6.2f}  p90 {percentile(values, 90):6.2f}"
            f"  p99 {percentile(values, 99):6.2f}  max {max(values, default=0):7.1f} ms"
        )
        print(f"  {'':<26} {histogram(values)}")
    if len(by_worker) > 1:
        print(sharing(by_worker))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
