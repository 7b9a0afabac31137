"""What the benchmark runs, as data: each contender's command line, the endpoints
measured, and the choice of contenders from ``--only`` and ``--quick``."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent

REPO_ROOT = BENCH_DIR.parent

APP_MODULE = "bench.bench_app"

HOST = "127.0.0.1"

# Logical endpoints, in table order: (column label, path below the mount point).
ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("/", "/"),
    ("/json", "/json"),
    ("/page", "/page"),
)

CONCURRENCY_CHECK = "sleep-50x1s"


class BenchError(Exception):
    """A problem that is reported as one line, never as a traceback."""


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
