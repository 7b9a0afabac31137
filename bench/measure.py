"""The measurements: each contender's table runs, the A B B A runs in turn
with flask-serve (head to head), and the concurrency check."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from bench.contenders import (
    CONCURRENCY_CHECK,
    ENDPOINTS,
    HOST,
    REPO_ROOT,
    SLEEP_CONTENDER,
    BenchError,
    Contender,
)
from bench.cpu import BUSY_WARNING, wait_quiet
from bench.servers import Server, http_get, running
from bench.wrk import WrkResult, WrkSettings

SLEEP_REQUESTS = 50

SLEEP_TIMEOUT = 30.0

FINALISTS = 2  # gunicorn candidates per endpoint measured again head to head


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
    #: per path, flask-serve's p99 latency over this contender's, from the
    #: same A B B A runs (both at saturation, ``wrk -c`` connections)
    paired_p99: dict[str, list[float]] = field(default_factory=dict)
    #: per path, open-loop runs at a fixed rate (see :mod:`bench.tail`):
    #: flask-serve's p50 and p99 over this contender's, one pair per A B B A
    open_loop: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

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


def fmt_ms(value: float | None) -> str:
    return f"{value:7.2f} ms" if value is not None else "      n/a"


def describe(m: WrkResult) -> str:
    text = (
        f"{m.requests_per_sec:>9.1f} req/s  avg {m.latency_avg_ms:7.2f} ms"
        f"  p99 {fmt_ms(m.latency_p99_ms)}"
    )
    if m.cpu_server is not None and m.cpu_wrk is not None and m.cpu_other is not None:
        text += f"  cpu: server {m.cpu_server:4.0%} wrk {m.cpu_wrk:4.0%} other {m.cpu_other:4.0%}"
    if m.switches_per_request is not None:
        text += f"  switches/req {m.switches_per_request:.1f}"
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
                p99 = [r.latency_p99_ms if r else None for r in runs]
                if all(p99):
                    # a is flask-serve in head-to-head runs: its p99 over b's.
                    p99_ratio = (p99[0] + p99[3]) / (p99[1] + p99[2])  # type: ignore[operator]
                    b.paired_p99.setdefault(logical, []).append(p99_ratio)
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


def measure_table(results: Sequence[ContenderResult], plan: Plan, rounds: int) -> None:
    """The table's runs, ``rounds`` times: flask-serve and flask-serve-prefix in
    turn (see :func:`measure_in_turn`), every other contender on its own."""
    for rnd in range(rounds):
        if rounds > 1:
            print(f"-- round {rnd + 1}/{rounds}", flush=True)
        plain, mounted = find(results, "flask-serve"), find(results, "flask-serve-prefix")
        for res in results:
            if plain and mounted and res in (plain, mounted):
                if res is plain:
                    measure_in_turn(plain, mounted, ENDPOINTS, plan, to_table=True)
                continue
            bench_contender(res.contender, plan, res)


def concurrency_check(plan: Plan) -> SleepResult:
    """:func:`sleep_check`, or a failed result when the server did not run."""
    try:
        return sleep_check(plan)
    except BenchError as exc:
        print(f"   FAILED: {exc}", flush=True)
        return SleepResult(SLEEP_REQUESTS, 0, None, 0.0, [str(exc)], [])
