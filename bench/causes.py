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
urllib3's pool, ``bench/openloop.c``) makes it do. With ``--rate`` it then
matches each request the generator sent to the worker that answered it
(the generator numbers them) and counts those sent while that worker was
answering another (a collision: they wait for it), how often another worker
idled meanwhile, how many of the slowest 1 % collided, and the p99 of the
requests that found their worker idle.
"""

from __future__ import annotations

import argparse
import bisect
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Arrivals:
    """What the requests of an open-loop run found when they were sent."""

    requests: int  # matched to the worker that answered them
    collided: int  # sent while that worker was answering another
    other_idle: int  # of those, sent while another worker answered none
    slow: int  # in the slowest 1 % (latency at or above the p99)
    slow_collided: int
    collided_p99_ms: float  # p99 latency of those sent while their worker was busy
    left_p50_ms: float  # how much of that other answer was left when they were sent
    left_p90_ms: float
    idle_p99_ms: float  # p99 latency of the requests sent to an idle worker
    idle_slow_late_ms: float  # median of the slow ones among those: due to sent (the generator)
    idle_slow_wait_ms: float  # and sent to read


def arrivals(
    sent: Mapping[int, tuple[float, float, float]],
    answered: Sequence[Sequence[tuple[int, float, float, float]]],
) -> Arrivals:
    """``sent``: request number -> (when due, when written, latency in ms),
    as the generator saw it; ``answered``: each worker's (request number, head
    read, answer started, answer done), on the same clock."""
    spans = [sorted((started, done) for _, _, started, done in worker) for worker in answered]
    starts = [[started for started, _ in worker] for worker in spans]

    def left(worker: int, t: float) -> float:
        """How much longer ``worker`` was answering a request it had started
        before ``t`` (0: it was answering none)."""
        i = bisect.bisect_left(starts[worker], t) - 1
        return max(spans[worker][i][1] - t, 0.0) if i >= 0 else 0.0

    latencies = sorted(latency for _, _, latency in sent.values())
    p99 = percentile(latencies, 99)
    matched = collided = other_idle = slow = slow_collided = 0
    idle: list[float] = []
    busy: list[float] = []
    lefts: list[float] = []
    idle_slow_waits: list[float] = []
    idle_slow_lates: list[float] = []
    for worker, records in enumerate(answered):
        others = [w for w in range(len(answered)) if w != worker]
        for number, read, _, _ in records:
            if number not in sent:
                continue
            due, written, latency = sent[number]
            matched += 1
            rest = left(worker, written)
            hit = rest > 0
            collided += hit
            other_idle += hit and any(not left(w, written) for w in others)
            slow += latency >= p99
            slow_collided += hit and latency >= p99
            if hit:
                busy.append(latency)
                lefts.append(rest * 1000)
            else:
                idle.append(latency)
                if latency >= p99:
                    idle_slow_lates.append((written - due) * 1000)
                    idle_slow_waits.append((read - written) * 1000)
    return Arrivals(
        matched,
        collided,
        other_idle,
        slow,
        slow_collided,
        percentile(busy, 99),
        percentile(lefts, 50),
        percentile(lefts, 90),
        percentile(idle, 99),
        statistics.median(idle_slow_lates) if idle_slow_lates else 0.0,
        statistics.median(idle_slow_waits) if idle_slow_waits else 0.0,
    )


def describe(found: Arrivals) -> str:
    """Two lines for the report."""
    share = found.collided / max(found.requests, 1)
    return (
        f"  sent while their worker answered another: {share:.1%} of requests (another"
        f" worker idle meanwhile for {found.other_idle / max(found.collided, 1):.0%} of them);"
        f" {found.slow_collided} of the {found.slow} slowest 1 %; the other answer had"
        f" p50 {found.left_p50_ms:.2f}, p90 {found.left_p90_ms:.2f} ms to go; their p99"
        f" {found.collided_p99_ms:.2f} ms\n"
        f"  sent to an idle worker: p99 {found.idle_p99_ms:.2f} ms; the slowest 1 % of those"
        f" were sent p50 {found.idle_slow_late_ms:.2f} ms late (the generator) and read"
        f" p50 {found.idle_slow_wait_ms:.2f} ms after"
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
                dump = Path(folder) / "client.dump"
                if args.rate:
                    loop = open_loop_run(
                        HOST, server.port, args.path, args.rate, args.seconds, dump
                    )
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
        numbered = []
        for trace in Path(folder).glob("*.txt"):
            mine = []
            for line in trace.read_text().splitlines():
                *stamps, number = line.split()
                read, dispatched, started, done = (float(x) for x in stamps)
                if start <= read <= end:
                    mine.append((read, dispatched, started, done, int(number)))
            rows += [row[:4] for row in mine]
            by_worker.append([started for _, _, started, _, _ in mine])
            numbered.append([(n, read, started, done) for read, _, started, done, n in mine])
        sent = {}
        if dump.exists():
            for line in dump.read_text().splitlines():
                number, due, written, latency = line.split()
                sent[int(number)] = (float(due), float(written), float(latency))
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
    if sent:
        print(describe(arrivals(sent, numbered)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
