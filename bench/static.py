"""Static files head to head: ``flask serve --prod`` on gunicorn with its static
layer (WhiteNoise, ``--static-files``) against Flask's own static route
(``--no-static-files``), for one 35 KB stylesheet, with the access log on and
every other setting at its default, as a user would type it (``--flags`` adds
flags to both, e.g. ``--flags='--workers 2'``).

Standalone (the standard library and ``wrk``; nothing from ``bench/run.py``).
From the repository root::

    .venv/bin/python bench/static.py                 # 3 rounds of A B B A, 5 s runs
    .venv/bin/python bench/static.py --rounds 5 --duration 10 --gzip
    .venv/bin/python bench/static.py --flags='--workers 2 --no-access-log'
    .venv/bin/python bench/static.py --off-root /tmp/before   # off: an older commit

Both servers run at once, each in its own process group on a free port of
127.0.0.1, from a throw-away project made in a temporary folder; they are
measured in turn, A B B A in each round, which cancels a steady drift of a
shared machine. Each run is ``wrk -t1 -c32 -dN --latency`` after a warm-up;
the report gives every run's req/s, p99 latency and the server's CPU time per
request (its process group's, from ``/proc``: other load on the machine
disturbs it much less than req/s), each side's median and range, and the
ratio per round, and exits 2 when the median ratio is below ``--target``
(2.0).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = """\
import os
from flask import Flask
app = Flask(__name__)
app.secret_key = os.environ["BENCH_KEY"]
app.config.update(MAX_CONTENT_LENGTH=1024 * 1024, SESSION_COOKIE_SAMESITE="Lax")

@app.route("/")
def index():
    return "index"
"""
PATH = "/static/site.css"


def stylesheet(size: int = 35 * 1024) -> bytes:
    """A plausible stylesheet of ``size`` bytes (it compresses as real CSS does)."""
    rules = []
    i = 0
    while sum(map(len, rules)) < size:
        rules.append(
            f".c{i} > .item-{i % 37} {{ color: #{(i * 7919) % 0xFFFFFF:06x}; "
            f"margin: {i % 13}px {i % 7}px; padding: 0 {i % 5}em; }}\n"
        )
        i += 1
    return "".join(rules).encode()[:size]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``flask serve --prod`` on gunicorn in ``project``, with ``flags``."""

    def __init__(self, name: str, project: Path, flags: list[str], root: Path = ROOT) -> None:
        self.name = name
        self.port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("FLASK_", "PRODSERVE_", "GUNICORN_"))
            and k not in ("WEB_CONCURRENCY", "PORT")
        }
        env.update(BENCH_KEY=os.urandom(32).hex(), PYTHONPATH=str(root))
        self.log = project / f"{name}.log"
        command = [sys.executable, "-m", "flask", "--app", "app", "serve", "--prod"]
        command += ["--server", "gunicorn"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), *flags]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=project,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.url = f"http://127.0.0.1:{self.port}{PATH}"

    def wait_ready(self, deadline: float = 30) -> dict[str, str]:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as resp:
                    return dict(resp.headers)
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"{self.name} not ready within {deadline} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def group_cpu(pgid: int) -> float:
    """CPU seconds (user and system) used so far by the processes of group ``pgid``
    (Linux ``/proc``; 0 elsewhere): a figure that other load on the machine
    disturbs much less than req/s."""
    ticks = 0
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_COUNT = re.compile(r"(\d+) requests in")
_P99 = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, seconds: int, headers: list[str]) -> tuple[float, float, int]:
    """``(req/s, p99 latency in ms, requests)`` of one ``wrk -t1 -c32`` run."""
    args = ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", url]
    for header in headers:
        args += ["-H", header]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30).stdout
    rps, p99, count = _RPS.search(out), _P99.search(out), _COUNT.search(out)
    if rps is None or p99 is None or count is None or "Non-2xx" in out or "Socket err" in out:
        raise SystemExit(f"wrk failed on {url}:\n{out}")
    return float(rps[1]), float(p99[1]) * _UNIT[p99[2]], int(count[1])


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):8.1f}  range {min(values):.1f}-{max(values):.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="A B B A rounds (3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up (2)")
    parser.add_argument("--gzip", action="store_true", help="send Accept-Encoding: gzip")
    parser.add_argument(
        "--flags", default="", help="more flask serve flags for both, e.g. '--no-access-log'"
    )
    parser.add_argument(
        "--off-root",
        type=Path,
        default=ROOT,
        help="serve the off side with the flask_prodserve in this folder (an older commit, "
        "made with git worktree or git archive), to compare with it",
    )
    parser.add_argument("--target", type=float, default=2.0, help="median ratio to pass (2.0)")
    args = parser.parse_args()
    headers = ["Accept-Encoding: gzip"] if args.gzip else []
    extra = shlex.split(args.flags)
    # An older flask-prodserve may have no static layer, and no flag to turn it off.
    off_flags = ["--no-static-files"] if args.off_root.resolve() == ROOT else []
    with tempfile.TemporaryDirectory(prefix="bench-static-") as tmp:
        project = Path(tmp)
        (project / "app.py").write_text(APP)
        (project / "static").mkdir()
        (project / "static" / "site.css").write_bytes(stylesheet())
        if args.gzip:
            subprocess.run(
                [sys.executable, "-m", "flask", "--app", "app", "serve", "--compress-static"],
                cwd=project,
                env={**os.environ, "BENCH_KEY": "x" * 64},
                check=True,
                capture_output=True,
            )
        servers = [
            Server("static-on", project, ["--static-files", *extra]),
            Server("static-off", project, [*off_flags, *extra], args.off_root.resolve()),
        ]
        try:
            return measure(servers, args, headers)
        finally:
            for server in servers:
                server.stop()


def measure(servers: list[Server], args: argparse.Namespace, headers: list[str]) -> int:
    on, off = servers
    for server in servers:
        got = server.wait_ready()
        workers = re.search(r"Workers: (.*)", server.log.read_text())
        print(
            f"{server.name:10}  {workers[1] if workers else '?'}; "
            f"Cache-Control: {got.get('Cache-Control')}"
        )
        wrk(server.url, args.warmup, headers)
    results: dict[str, list[tuple[float, float, float]]] = {s.name: [] for s in servers}
    ratios = []
    print(f"\n{'round':>5}  {'server':10}  {'req/s':>9}  {'p99 ms':>8}  {'server CPU us/req':>17}")
    for n in range(1, args.rounds + 1):
        for server in (on, off, off, on):
            cpu = group_cpu(server.proc.pid)
            rps, p99, count = wrk(server.url, args.duration, headers)
            cpu = (group_cpu(server.proc.pid) - cpu) / count * 1e6
            results[server.name].append((rps, p99, cpu))
            print(f"{n:5}  {server.name:10}  {rps:9.1f}  {p99:8.2f}  {cpu:17.0f}")
        this = [sum(r for r, _, _ in results[s.name][-2:]) for s in servers]
        ratios.append(this[0] / this[1])
        print(f"{n:5}  ratio on/off {ratios[-1]:.2f}")
    print()
    for name, runs in results.items():
        print(f"{name:10}  req/s  {spread([r for r, _, _ in runs])}")
        print(f"{'':10}  p99 ms {spread([p for _, p, _ in runs])}")
        print(f"{'':10}  CPU us {spread([c for _, _, c in runs])}")
    cpu_on, cpu_off = (statistics.median(c for _, _, c in results[s.name]) for s in servers)
    print(f"\nserver CPU per request, median on/off: {cpu_on / cpu_off:.2f}")
    ratio = statistics.median(ratios)
    verdict = "PASS" if ratio >= args.target else "FAIL"
    print(
        f"\nratio on/off per round: {', '.join(f'{r:.2f}' for r in ratios)}; "
        f"median {ratio:.2f} (target >= {args.target}): {verdict}"
    )
    return 0 if verdict == "PASS" else 2


if __name__ == "__main__":
    sys.exit(main())
