"""The report: the tables, the checks against their targets, the machine and
versions, and the JSON written to ``bench/results/latest.json``."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.contenders import ENDPOINTS
from bench.cpu import parallel_scaling
from bench.measure import (
    SLEEP_REQUESTS,
    ContenderResult,
    SleepResult,
    best_gunicorn,
    find,
    gunicorn_finalists,
)
from bench.stats import Check, Estimate
from bench.wrk import NOISE_THRESHOLD

# Targets.
TARGET_VS_GUNICORN = 0.95  # flask-serve / best hand-tuned gunicorn >= this

TARGET_VS_WAITRESS = 1.9  # flask-serve / waitress defaults >= this

TARGET_PREFIX_COST = 0.03  # 1 - prefix / no-prefix <= this

TARGET_SLEEP_WALL = 5.0  # 50 concurrent 1 s requests finish within this

TARGET_P99_SATURATED = 1.5  # flask-serve p99 / best gunicorn's at saturation <= this

TARGET_OPEN_LOOP = 1.2  # flask-serve p50 and p99 / gunicorn -w 2's at half its rate <= this


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
        "parallel_scaling": parallel_scaling(),
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
        # The same A B B A runs, their p99: the worst ratio over the finalists.
        tails = [
            (Estimate.of(o.paired_p99.get(p), None), n)
            for n in gunicorn_finalists(results, p)
            if (o := find(results, n)) is not None and o.paired_p99.get(p)
        ]
        if tails:
            tail, tail_name = max(tails, key=lambda k: k[0].value or 0.0)
            checks.append(
                tail.at_most(
                    f"p99 saturated / gunicorn    {p:<6} (vs {tail_name.removeprefix('gunicorn-')},"
                    f" {tail.how})",
                    TARGET_P99_SATURATED,
                )
            )
    reference = find(results, "gunicorn-w2")
    for p in paths:
        pairs = reference.open_loop.get(p) if reference else None
        for i, name in ((0, "p50"), (1, "p99")):
            est = Estimate.of([pair[i] for pair in pairs] if pairs else None, None)
            checks.append(
                est.at_most(
                    f"{name} open loop / gunicorn-w2 {p:<6} ({est.how}, half its rate)",
                    TARGET_OPEN_LOOP,
                )
            )
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


def as_json(
    machine: dict[str, Any],
    versions: dict[str, str],
    settings: dict[str, Any],
    results: Sequence[ContenderResult],
    sleep: SleepResult | None,
    checks: Sequence[Check],
    elapsed: float,
) -> dict[str, Any]:
    """Everything measured, for ``--json`` (``bench/results/latest.json``)."""
    return {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "versions": versions,
        "settings": settings,
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
