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
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import tail
from bench.contenders import (
    CONCURRENCY_CHECK,
    CONTENDERS,
    BenchError,
    select,
)
from bench.measure import (
    SLEEP_REQUESTS,
    ContenderResult,
    Plan,
    concurrency_check,
    head_to_head,
    measure_table,
)
from bench.report import (
    as_json,
    compute_checks,
    machine_info,
    package_versions,
    print_checks,
    print_table,
)
from bench.servers import RESULTS_DIR
from bench.wrk import WrkSettings


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
    parser.add_argument(
        "--open-loop",
        type=int,
        default=None,
        metavar="N",
        help="then measure p50/p99 at half of gunicorn-w2's rate, open loop (bench/tail.py), "
        "N x A B B A (default 4, --quick 2, 0: off)",
    )
    parser.add_argument(
        "--open-loop-seconds", type=float, default=5, help="seconds per open-loop run"
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
    if args.open_loop is None:
        args.open_loop = 2 if args.quick else 4
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
    print_setup(machine, versions, args, wrk, len(contenders), do_sleep)

    started = time.time()
    results = [ContenderResult(c) for c in contenders]
    measure_table(results, plan, args.rounds)
    if args.head_to_head:
        head_to_head(results, plan, args.head_to_head)
    if args.open_loop:
        tail.measure(results, plan, args.open_loop, args.open_loop_seconds)
    sleep = concurrency_check(plan) if do_sleep else None

    print_table(results)
    checks = compute_checks(results, sleep)
    print_checks(checks)

    elapsed = time.time() - started
    print(f"\n(total {elapsed:.0f} s)")
    settings = {
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
    }
    payload = as_json(machine, versions, settings, results, sleep, checks, elapsed)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2, allow_nan=False, default=str))
    print(f"results written to {display_path(args.json)}")
    if args.check and any(c.verdict in ("FAIL", "UNCLEAR") for c in checks):
        return 2
    return 0


def print_setup(
    machine: dict[str, Any],
    versions: dict[str, str],
    args: argparse.Namespace,
    wrk: WrkSettings,
    contenders: int,
    do_sleep: bool,
) -> None:
    print(
        f"machine: nproc={machine['nproc']}  cpu: {machine['cpu_model']}  "
        f"load: {' '.join(f'{x:.2f}' for x in machine['loadavg'])}  "
        f"2 processes compute {machine['parallel_scaling']}x one"
    )
    print(
        "versions: " + "  ".join(f"{k} {v}" for k, v in versions.items()) + f"  | {machine['wrk']}"
    )
    print(
        f"wrk -t{wrk.threads} -c{wrk.connections} -d{wrk.duration}s "
        f"(warm-up {wrk.warmup} s), rounds={args.rounds}, "
        f"head-to-head={args.head_to_head} x {args.turn} s, "
        f"{contenders} contender(s)" + (f" + {CONCURRENCY_CHECK}" if do_sleep else "")
    )
    print()


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
