"""wrk: running it, reading its output, and the CPU split of each run."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from bench.contenders import BenchError
from bench.cpu import CpuMeter
from bench.servers import Server

NOISE_THRESHOLD = 0.10  # a run is disturbed if others used this much CPU


@dataclass
class WrkResult:
    requests_per_sec: float
    requests: int
    latency_avg_ms: float
    latency_stdev_ms: float
    latency_max_ms: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    socket_errors: dict[str, int]
    non_2xx_3xx: int
    # Shares of the whole machine's CPU during the measured run (None: unknown).
    cpu_server: float | None = None
    cpu_wrk: float | None = None
    cpu_other: float | None = None
    # Open connections held by each server process a third into the run:
    # shows how the load spread over the workers (keep-alive connections stay put).
    conns_per_process: list[int] | None = None
    # The server's context switches (all its threads) per request served.
    switches_per_request: float | None = None

    @property
    def disturbed(self) -> bool:
        return self.cpu_other is not None and self.cpu_other > NOISE_THRESHOLD

    @property
    def errors(self) -> int:
        return self.non_2xx_3xx + sum(self.socket_errors.values())


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}

_DURATION = r"([\d.]+)(us|ms|s|m|h)"

_SOCKET_ERRORS = ("connect", "read", "write", "timeout")


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    lat = re.search(rf"^\s*Latency\s+{_DURATION}\s+{_DURATION}\s+{_DURATION}", output, re.M)
    total = re.search(r"^\s*(\d+) requests in", output, re.M)
    if not (rps and lat and total):
        raise BenchError("could not parse wrk output:\n" + output.strip())
    g = lat.groups()
    pcts = {
        m.group(1): _ms(m.group(2), m.group(3))
        for m in re.finditer(rf"^\s+(50|99)%\s+{_DURATION}", output, re.M)
    }
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    socket_errors = dict(zip(_SOCKET_ERRORS, map(int, sock.groups()), strict=True)) if sock else {}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests_per_sec=float(rps.group(1)),
        requests=int(total.group(1)),
        latency_avg_ms=_ms(g[0], g[1]),
        latency_stdev_ms=_ms(g[2], g[3]),
        latency_max_ms=_ms(g[4], g[5]),
        latency_p50_ms=pcts.get("50"),
        latency_p99_ms=pcts.get("99"),
        socket_errors=socket_errors,
        non_2xx_3xx=int(non2xx.group(1)) if non2xx else 0,
    )


@dataclass(frozen=True)
class WrkSettings:
    wrk: str
    threads: int
    connections: int
    duration: int
    warmup: int

    def run(self, url: str, seconds: int, probe: Callable[[], None] | None = None) -> str:
        """Run wrk; call ``probe`` once, a third of the way into the run."""
        argv = [
            self.wrk,
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{seconds}s",
            "--latency",
            url,
        ]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            if probe is not None:
                try:
                    proc.wait(timeout=seconds / 3)
                except subprocess.TimeoutExpired:
                    probe()
            out, err = proc.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"wrk did not finish: {' '.join(argv)}") from exc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            msg = (err or out).strip()
            raise BenchError(f"wrk failed ({proc.returncode}): {msg}")
        return out

    def warm_up(self, url: str) -> None:
        if self.warmup > 0:
            self.run(url, self.warmup)

    def measure(self, url: str, server: Server | None = None) -> WrkResult:
        self.warm_up(url)
        spread: list[int] | None = None

        def probe() -> None:
            nonlocal spread
            if server is not None:
                spread = server.connections_per_process()

        with CpuMeter(server.pgid if server else None) as meter:
            output = self.run(url, self.duration, probe)
        result = parse_wrk(output)
        result.cpu_server, result.cpu_wrk = meter.server, meter.wrk
        result.cpu_other = meter.other
        result.conns_per_process = spread
        if meter.switches is not None and result.requests:
            result.switches_per_request = round(meter.switches / result.requests, 2)
        return result
