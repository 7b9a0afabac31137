"""An open-loop load generator: requests at a fixed rate, whatever the server does.

wrk is closed-loop: each of its connections sends the next request only when
the last one is answered, so a server that stalls is simply sent less, and
the requests it would have kept waiting are never timed (coordinated
omission). ``bench/openloop.c`` sends request *i* at ``start + i / rate`` on an
idle connection (a new one if none is idle) and times it from then, so
queueing in the server shows in full. Debian has no wrk2, so this module
compiles that small C program with the system's ``cc`` (once, into
``bench/results/``) and runs it: a Python generator spent most of a CPU
opening the connections gunicorn's sync workers close after every response,
which on 2 CPUs starved the server it measured.

    python -m bench.openloop --port 8000 --path /json --rate 2000 --seconds 10
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.contenders import BENCH_DIR, BenchError

SOURCE = BENCH_DIR / "openloop.c"
BINARY = BENCH_DIR / "results" / "openloop"


@dataclass(frozen=True)
class OpenLoopResult:
    rate: float  # requests per second asked for
    sent: int
    ok: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    late_ms: float  # how far behind schedule the generator itself fell, at worst
    cpu_seconds: float  # the generator's own CPU time


def binary() -> Path:
    """The compiled generator, built from :data:`SOURCE` when missing or older."""
    if BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BINARY
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise BenchError("the open-loop generator needs a C compiler: apt-get install gcc")
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    built = subprocess.run(
        [cc, "-O2", "-o", str(BINARY), str(SOURCE)], capture_output=True, text=True
    )
    if built.returncode != 0:
        raise BenchError(f"could not compile {SOURCE.name}: {built.stderr.strip()}")
    return BINARY


def run(
    host: str, port: int, path: str, rate: float, seconds: float, dump: Path | None = None
) -> OpenLoopResult:
    """Send ``rate`` requests per second to ``path`` for ``seconds``; with
    ``dump``, request *i* asks for ``path?n=i`` and ``dump`` gets a line per
    answered request: *i*, when it was due and when written (seconds, on
    ``time.perf_counter``'s clock), and its latency (ms)."""
    argv = [str(binary()), host, str(port), path, str(rate), str(seconds)]
    if dump is not None:
        argv.append(str(dump))
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    fields = out.stdout.split()
    if out.returncode != 0 or len(fields) != 10:
        raise BenchError(f"openloop failed: {out.stderr.strip() or out.stdout.strip()}")
    sent, ok, errors = (int(f) for f in fields[:3])
    figures = [float(f) for f in fields[3:]]
    return OpenLoopResult(rate, sent, ok, errors, *figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    r = run(args.host, args.port, args.path, args.rate, args.seconds)
    print(
        f"{r.sent} sent at {r.rate:.0f}/s, {r.errors} failed: p50 {r.p50_ms:.2f} ms,"
        f" p99 {r.p99_ms:.2f} ms, max {r.max_ms:.1f} ms; generator CPU {r.cpu_seconds:.2f} s,"
        f" at worst {r.late_ms:.1f} ms late"
    )


if __name__ == "__main__":
    main()
