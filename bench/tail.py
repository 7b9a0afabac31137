"""Latency at a moderate fixed rate: flask serve and gunicorn -w 2, open loop.

At saturation (``wrk -c32``) every server is as slow as its queue is long;
what users of a site that is not overloaded feel is the latency at a rate
the server keeps up with. Here the rate is half of what ``gunicorn -w 2``
served in the table, per path, sent by :mod:`bench.openloop` (which times each
request from when it was due, so a stall shows in full), to flask-serve and
gunicorn-w2 in turn, A B B A, both started afresh for each A B B A.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.contenders import ENDPOINTS, HOST, BenchError
from bench.cpu import wait_quiet
from bench.measure import ContenderResult, Plan, find
from bench.openloop import OpenLoopResult
from bench.openloop import run as open_loop_run
from bench.servers import running

#: The rate, as a share of gunicorn -w 2's requests/s in the table.
SHARE = 0.5

REFERENCE = "gunicorn-w2"


def measure(results: Sequence[ContenderResult], plan: Plan, rounds: int, seconds: float) -> None:
    """``rounds`` A B B A's per path; the ratios go to the reference's
    ``open_loop`` (flask-serve's p50 and p99 over gunicorn-w2's)."""
    serve, reference = find(results, "flask-serve"), find(results, REFERENCE)
    if serve is None or reference is None or serve.error or reference.error:
        print(f"-- open loop: skipped (needs flask-serve and {REFERENCE} in the table)")
        return
    rates = {p: SHARE * (reference.rps(p) or 0.0) for p, _ in ENDPOINTS}
    shown = ", ".join(f"{p} {r:.0f}/s" for p, r in rates.items())
    print(f"-- open loop at half of {REFERENCE}'s requests/s ({shown}), {rounds} x A B B A")
    for block in range(rounds):
        wait_quiet(plan.settle)
        try:
            with (
                running(serve.contender, plan.python) as a,
                running(reference.contender, plan.python) as b,
            ):
                # Each server answers as soon as one worker is up: the
                # others still booting (importing the app) would slow the
                # first run, flask-serve's, by the CPU they take.
                wait_quiet(plan.settle)
                for logical, sub in ENDPOINTS:
                    if not rates[logical]:
                        continue
                    runs: list[OpenLoopResult] = []
                    for srv, res in ((a, serve), (b, reference), (b, reference), (a, serve)):
                        url = res.contender.url_path(sub)
                        r = open_loop_run(HOST, srv.port, url, rates[logical], seconds)
                        runs.append(r)
                        print(
                            f"   [{block + 1}/{rounds}] {res.contender.name:<12} {logical:<6}"
                            f" p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:7.2f} ms"
                            f"  max {r.max_ms:7.1f} ms  failed {r.errors}"
                            f"  (generator {r.late_ms:.1f} ms late at worst)",
                            flush=True,
                        )
                    if any(r.errors for r in runs):
                        continue
                    p50 = (runs[0].p50_ms + runs[3].p50_ms) / (runs[1].p50_ms + runs[2].p50_ms)
                    p99 = (runs[0].p99_ms + runs[3].p99_ms) / (runs[1].p99_ms + runs[2].p99_ms)
                    reference.open_loop.setdefault(logical, []).append((p50, p99))
        except BenchError as exc:
            print(f"   FAILED: {exc}", flush=True)
