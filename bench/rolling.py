"""Steady-stream figures: one instance killed, a rolling restart, and reloads.

Two ``flask serve --prod`` instances run behind the nginx file that
``flask serve --emit nginx`` prints (nginx as an ordinary process on loopback,
see ``bench/nginx_harness.py``). A client sends a GET through nginx every
10 ms, each on a new connection, while:

- **kill**: one instance is killed with SIGKILL, requests in flight included;
- **rolling restart**: each instance in turn gets SIGTERM, is started again on
  the same port, and is used by nginx again before the next one is stopped.

- **reload** (no nginx: one instance): new code is written to disk and the
  server gets SIGHUP, twice, under the stream of ``bench/reloadload.py`` (a
  new connection every 10 ms, a kept-alive client, 0.5 s requests in
  flight). The window is the switch, from SIGHUP until every new worker is
  ready and the old code has stopped answering; "new code after" is the
  time from SIGHUP to the first answer from the new code.

Run from the repository with the project's virtualenv (nginx must be installed
for kill and restart)::

    .venv/bin/python bench/rolling.py                     # both servers, 3 s around each event
    .venv/bin/python bench/rolling.py --backend gunicorn --seconds 5
    .venv/bin/python bench/rolling.py --scenario reload
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.liveserver import LiveServer  # noqa: E402
from bench.nginx_harness import (  # noqa: E402
    Nginx,
    Stats,
    emit_nginx,
    instance_args,
    rolling_restart,
    streaming,
    upstream_flags,
    wait_routed,
)
from bench.reloadload import load, write_app  # noqa: E402


class Cluster:
    """Instances and nginx in one temporary directory, all stopped by PID at the end."""

    def __init__(self, tmp: Path, backend: str) -> None:
        self.tmp = tmp
        self.backend = backend
        self.servers: list[LiveServer] = []
        self.nginx: Nginx | None = None

    def start_server(self, args: list[str]) -> LiveServer:
        server = LiveServer(args, self.tmp / f"server-{len(self.servers)}.log")
        self.servers.append(server)
        return server.start()

    def start(self) -> tuple[list[LiveServer], Nginx]:
        pair = [self.start_server(instance_args(self.backend, 0)) for _ in range(2)]
        site = emit_nginx(*upstream_flags(pair), "--proxy", "1,127.0.0.1")
        self.nginx = Nginx(site, self.tmp / "nginx").start()
        for server in pair:
            wait_routed(self.nginx, "/", server.port)
        return pair, self.nginx

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        for server in self.servers:
            server.kill()


@contextmanager
def cluster(backend: str) -> Iterator[Cluster]:
    with tempfile.TemporaryDirectory(prefix="prodserve-rolling-") as tmp:
        group = Cluster(Path(tmp), backend)
        try:
            yield group
        finally:
            group.stop()


def kill_one(backend: str, seconds: float) -> tuple[Stats, Stats]:
    """(whole run, the ``seconds`` after the kill)."""
    with cluster(backend) as group:
        servers, nginx = group.start()
        with streaming(nginx, "/") as stream:
            time.sleep(seconds)
            killed_at = time.monotonic()
            servers[0].kill()
            time.sleep(seconds)
        return stream.stats(), stream.stats(since=killed_at)


def restart_all(backend: str, seconds: float) -> tuple[Stats, Stats, float]:
    """(whole run, during the restart, the restart's duration in seconds)."""
    with cluster(backend) as group:
        servers, nginx = group.start()
        with streaming(nginx, "/") as stream:
            time.sleep(seconds)
            began = time.monotonic()
            rolling_restart(group.start_server, servers, backend, nginx, "/")
            ended = time.monotonic()
            time.sleep(seconds)
        return stream.stats(), stream.stats(began, ended), ended - began


#: The servers that reload new code on SIGHUP.
RELOADING = ("gunicorn", "waitress")
_READY = re.compile(r"Reloaded: generation (\d+) ready")


def reload_twice(backend: str, seconds: float) -> tuple[Stats, list[tuple[Stats, float, float]]]:
    """(whole run, per reload: (the switch, seconds to the new code, the switch's length))."""
    with tempfile.TemporaryDirectory(prefix="prodserve-reload-") as tmp:
        site = Path(tmp)
        write_app(site, "v1")
        args = ["--app", "app", "serve", "--prod", "--server", backend, "--port", "0"]
        args += ["--health-path", "/healthz", "--workers", "2", "--threads", "4"]
        server = LiveServer(args, site / "server.log")
        results = []
        try:
            server.start_in(site)
            assert server.proc is not None
            workers = 2
            with load(server.host, server.port) as stream:
                time.sleep(seconds)
                for generation, version in ((2, "v2"), (3, "v3")):
                    old = f"v{generation - 1}"
                    write_app(site, version)
                    began = time.monotonic()
                    server.proc.send_signal(signal.SIGHUP)
                    took = stream.wait_served(version, began, 60)
                    end = time.monotonic() + 60
                    while _READY.findall(server.log).count(str(generation)) < workers:
                        assert time.monotonic() < end, server.log
                        time.sleep(0.05)
                    time.sleep(seconds)
                    ended = max(time.monotonic() - seconds, stream.last_served(old))
                    results.append((stream.stats(began, ended), took, ended - began))
        finally:
            server.kill()
        return stream.stats(), results


def row(backend: str, scenario: str, window: str, stats: Stats) -> str:
    return (
        f"{backend:<9} {scenario:<16} {window:<16} {stats.sent:>6} {stats.failed:>6} "
        f"{stats.p50_ms:>7.1f} {stats.p99_ms:>7.1f} {stats.max_ms:>7.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["gunicorn", "waitress", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=3.0, help="steady stream around events")
    parser.add_argument("--scenario", choices=["all", "kill", "restart", "reload"], default="all")
    args = parser.parse_args(argv)
    backends = ["gunicorn", "waitress"] if args.backend == "both" else [args.backend]
    print(
        f"{'server':<9} {'scenario':<16} {'window':<16} {'sent':>6} {'failed':>6} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
    )
    failed = 0
    for backend in backends:
        if args.scenario in ("all", "reload") and backend in RELOADING:
            whole, reloads = reload_twice(backend, args.seconds)
            print(row(backend, "reload x2", "whole run", whole))
            failed += whole.failed
            for n, (during, took, length) in enumerate(reloads, 1):
                window = f"switch ({length:.1f} s)"
                print(f"{row(backend, f'reload {n}', window, during)}  new code after {took:.2f} s")
                failed += during.failed
                for failure in during.failures[:5]:
                    print(f"  failed: {failure}")
        whole_runs = []
        if args.scenario in ("all", "kill"):
            killed, after = kill_one(backend, args.seconds)
            print(row(backend, "kill one", "whole run", killed))
            print(row(backend, "kill one", f"{args.seconds:g} s after kill", after))
            whole_runs.append(killed)
        if args.scenario in ("all", "restart"):
            restarted, during, took = restart_all(backend, args.seconds)
            print(row(backend, "rolling restart", "whole run", restarted))
            print(row(backend, "rolling restart", f"restart ({took:.1f} s)", during))
            whole_runs.append(restarted)
        for stats in whole_runs:
            failed += stats.failed
            for failure in stats.failures[:5]:
                print(f"  failed: {failure}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
