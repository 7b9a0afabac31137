"""The access log's handler head to head with the standard library's queue pair.

``flask serve --prod --server waitress --threads 32`` with the access log on,
once with its own :class:`~flask_prodserve.logbuffer.BatchingStreamHandler`
(``batch``) and once with :class:`logging.handlers.QueueHandler` feeding a
:class:`~logging.handlers.QueueListener` that writes with a plain
``StreamHandler`` (``queue``). Each round starts both servers afresh, warms
them up and measures ``GET /`` with ``wrk -t1 -c32`` in the order A B B A
(B A A B every other round); the figures quoted in ``logbuffer.py`` come from
this script::

    .venv/bin/python bench/loghandler.py --rounds 10 --duration 5
"""

from __future__ import annotations

import argparse
import atexit
import logging
import logging.handlers
import queue
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python bench/loghandler.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.contenders import APP_MODULE, Contender
from bench.servers import running
from bench.stats import interval
from bench.wrk import WrkSettings, parse_wrk

VARIANTS = ("batch", "queue")


def contender(variant: str) -> Contender:
    """``flask serve`` with the access log on ``variant``'s handler."""
    args = (str(Path(__file__).resolve()), "--serve", variant, "--app", APP_MODULE, "serve")
    tail = ("--prod", "--server", "waitress", "--threads", "32", "--host", "{host}")
    return Contender(f"access-log-{variant}", "flask-serve", (*args, *tail, "--port", "{port}"))


def serve_with_queue_pair() -> None:
    """Replace the CLI's access-log set-up with the standard library's queue pair."""
    from flask_prodserve import cli
    from flask_prodserve.middleware import access_logger

    def configure(path: str) -> None:
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        writer = logging.StreamHandler(sys.stdout)
        writer.setFormatter(logging.Formatter("%(message)s"))
        listener = logging.handlers.QueueListener(records, writer)
        listener.start()
        atexit.register(listener.stop)
        access_logger.addHandler(logging.handlers.QueueHandler(records))
        access_logger.propagate = False
        access_logger.setLevel(logging.INFO)

    cli._configure_access_log = configure


def shown(values: Sequence[float], unit: str) -> str:
    mid, low, high = interval(values)
    if low is None or high is None:
        return f"{mid:.3g} {unit}"
    return f"{mid:.4g} {unit} [{low:.4g}, {high:.4g}]"


def measure_round(wrk: WrkSettings, order: Sequence[str]) -> dict[str, list[tuple[float, float]]]:
    """Both servers started afresh, warmed up, then measured A B B A:
    ``(requests/s, p99 ms)`` of each run, by variant."""
    got: dict[str, list[tuple[float, float]]] = {v: [] for v in order}
    first, second = (contender(v) for v in order)
    with running(first, sys.executable) as a, running(second, sys.executable) as b:
        servers = dict(zip(order, (a, b), strict=True))
        for variant in order:
            wrk.warm_up(f"http://127.0.0.1:{servers[variant].port}/")
        for variant in (*order, *order[::-1]):
            url = f"http://127.0.0.1:{servers[variant].port}/"
            result = parse_wrk(wrk.run(url, wrk.duration))
            got[variant].append((result.requests_per_sec, result.latency_p99_ms or 0.0))
    return got


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured run")
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.serve:  # the server side: run flask with the chosen handler
        if args.serve == "queue":
            serve_with_queue_pair()
        from flask.cli import main as flask_main

        sys.argv = ["flask", *rest]
        flask_main()
        return 0
    wrk_path = shutil.which("wrk")
    if wrk_path is None:
        print("wrk not found on PATH: install it with `apt-get install wrk`")
        return 1
    wrk = WrkSettings(wrk_path, 1, 32, args.duration, 2)
    rps: dict[str, list[float]] = {v: [] for v in VARIANTS}
    p99: dict[str, list[float]] = {v: [] for v in VARIANTS}
    rps_ratios: list[float] = []
    p99_ratios: list[float] = []
    for n in range(args.rounds):
        got = measure_round(wrk, VARIANTS if n % 2 == 0 else VARIANTS[::-1])
        for variant, runs in got.items():
            rps[variant] += [r for r, _ in runs]
            p99[variant] += [t for _, t in runs]
        rps_ratios.append(sum(r for r, _ in got["queue"]) / sum(r for r, _ in got["batch"]))
        p99_ratios.append(sum(t for _, t in got["queue"]) / sum(t for _, t in got["batch"]))
        print(f"round {n + 1}: {got}", flush=True)
    for variant in VARIANTS:
        print(f"{variant:<6} {shown(rps[variant], 'req/s')}  p99 {shown(p99[variant], 'ms')}")
    print(f"queue / batch: req/s {shown(rps_ratios, 'x')}, p99 {shown(p99_ratios, 'x')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
