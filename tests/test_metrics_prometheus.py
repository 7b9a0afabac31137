"""A real Prometheus server scrapes ``flask serve``'s metrics (gunicorn, four
workers) and its query API gives the request rate the test produced."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import serve_args
from .test_metrics import _hammer

pytest.importorskip("prometheus_client")

SERIES = (
    'http_server_request_duration_seconds_count{http_route="/echo/<path:rest>",'
    'http_request_method="GET",http_response_status_code="200"}'
)


def prometheus_binary() -> str:
    """Prometheus's path; its absence is an error (``scripts/test.sh`` installs it)."""
    found = shutil.which("prometheus") or next(
        (p for p in ("/usr/bin/prometheus", "/usr/sbin/prometheus") if os.access(p, os.X_OK)),
        None,
    )
    if found is None:
        raise AssertionError(
            "prometheus is not installed: run 'bash scripts/test.sh', which installs it"
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Prometheus:
    """A Prometheus server on loopback scraping ``target`` every second."""

    def __init__(self, tmp_path: Path, target: str) -> None:
        self.port = free_port()
        self.log_path = tmp_path / "prometheus.log"
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: flask\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        command = [
            prometheus_binary(),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def get(self, path: str, timeout: float = 5) -> bytes:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: bytes = response.read()
            return body

    def wait_ready(self, deadline: float = 60) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            assert self.proc.poll() is None, f"prometheus exited:\n{self.log}"
            try:
                self.get("/-/ready", timeout=2)
                return
            except OSError:  # not listening yet, or 503 while it starts
                time.sleep(0.2)
        raise AssertionError(f"prometheus not ready within {deadline}s:\n{self.log}")

    def query(self, promql: str, at: float | None = None) -> list[Any]:
        params = {"query": promql, **({"time": f"{at:.3f}"} if at is not None else {})}
        data = json.loads(self.get("/api/v1/query?" + urllib.parse.urlencode(params)))
        assert data["status"] == "success", data
        result: list[Any] = data["data"]["result"]
        return result

    def samples(self, deadline: float, wanted: float, n: int = 2) -> list[tuple[float, float]]:
        """The series' raw samples of the last minute, once ``n`` of them are ``wanted``."""
        end = time.monotonic() + deadline
        while True:
            result = self.query(f"{SERIES}[1m]")
            found = [(float(t), float(v)) for t, v in result[0]["values"]] if result else []
            if sum(v == wanted for _, v in found) >= n:
                return found
            assert time.monotonic() < end, f"no {n} samples of {wanted}: {found}\n{self.log}"
            time.sleep(0.2)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    started: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        started.append(Prometheus(tmp_path, target))
        started[-1].wait_ready()
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.mark.timeout(180)
def test_prometheus_scrapes_and_answers_the_rate(flask_serve: Any, prometheus: Any) -> None:
    server = flask_serve(
        serve_args("gunicorn", "--metrics-path", "/metrics", "--workers", "4", "--threads", "4")
    )
    prom = prometheus(f"127.0.0.1:{server.port}")
    assert server.request("GET", "/echo/first")[0] == 200  # the series starts at 1
    before = prom.samples(deadline=30, wanted=1)
    _hammer(server, [("GET", f"/echo/{n}") for n in range(500)])
    after = prom.samples(deadline=30, wanted=501)
    assert prom.query('up{job="flask"}')[0]["value"][1] == "1"
    # The window runs from the last sample before the burst to the last after
    # it: no extrapolation, so the rate is exactly 500 over the time between.
    start = max(t for t, v in before if v == 1)
    end = max(t for t, v in after)
    window_ms = round((end - start) * 1000)
    rate = prom.query(f"sum(rate({SERIES}[{window_ms}ms]))", at=end)
    assert float(rate[0]["value"][1]) == pytest.approx(500 / (end - start), rel=1e-3)
    total = prom.query(f"sum({SERIES})", at=end)
    assert float(total[0]["value"][1]) == 501
