"""Metrics: the option, the middleware through the test client, and a live
server per backend whose counts must be exact across its worker processes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, request

from flask_prodserve import metrics
from flask_prodserve.checks import run_checks
from flask_prodserve.config import Facts, resolve
from flask_prodserve.errors import ConfigError
from flask_prodserve.extension import lifecycle_for
from flask_prodserve.middleware import build_wsgi_app
from flask_prodserve.serving import config_for
from flask_prodserve.tally import PUBLISH_EVERY, Tally

from .helpers import needs_gunicorn, serve_args

parser = pytest.importorskip("prometheus_client.parser")

FACTS = Facts(debug=False, platform="linux", cpus=2, gunicorn_importable=True)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of a text exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in parser.text_string_to_metric_families(text)
        for s in family.samples
    }


def count(found: dict[Any, float], **labels: str) -> float:
    """The requests counted with ``labels`` (summed over the other labels)."""
    return sum(
        value
        for (name, have), value in found.items()
        if name == "http_server_request_duration_seconds_count"
        and all((k, v) in have for k, v in labels.items())
    )


def _resolve(**values: Any) -> Any:
    return resolve(cli=values, env={}, config={}, extension={}, facts=FACTS)


# -- the option ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        pytest.param(
            {"metrics_path": "/healthz", "health_path": "/healthz"},
            "health check already answers",
            id="same-as-health",
        ),
        pytest.param(
            {"metrics_path": "/h/ready", "health_path": "/h"},
            "health check already answers",
            id="same-as-ready",
        ),
        pytest.param(
            {"metrics_path": "/app", "url_prefix": "/app"}, "url_prefix", id="same-as-prefix"
        ),
        pytest.param({"metrics_allow": "10.0.0.300"}, "is neither", id="bad-address"),
    ],
)
def test_metrics_settings_are_checked(values: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        _resolve(**values)


def test_metrics_allow_takes_addresses_and_networks() -> None:
    config = _resolve(metrics_path="metrics", metrics_allow="127.0.0.1, 10.0.0.0/8")
    assert config.metrics_path == "/metrics"
    assert tuple(config.metrics_allow) == ("127.0.0.1", "10.0.0.0/8")
    assert str(_resolve().metrics_allow) == "(any address)"


def test_missing_prometheus_client_names_the_install_command() -> None:
    facts = Facts(debug=False, platform="linux", cpus=2, gunicorn_importable=True)
    facts = Facts(**{**facts.__dict__, "metrics_importable": False})
    with pytest.raises(ConfigError, match=r"pip install 'flask-prodserve\[metrics\]'"):
        resolve(cli={"metrics_path": "/m"}, env={}, config={}, extension={}, facts=facts)
    resolve(cli={}, env={}, config={}, extension={}, facts=facts)  # off: not needed


@pytest.mark.parametrize(
    ("host", "allow", "warned"),
    [
        pytest.param("0.0.0.0", "", True, id="public-anyone"),
        pytest.param("0.0.0.0", "10.0.0.7", False, id="public-restricted"),
        pytest.param("127.0.0.1", "", False, id="loopback"),
    ],
)
def test_ps304_warns_of_metrics_anyone_can_read(host: str, allow: str, warned: bool) -> None:
    app = Flask(__name__)
    app.config["TRUSTED_HOSTS"] = ["example.com"]
    config = config_for(
        app, {"mode": "prod", "host": host, "metrics_path": "/metrics", "metrics_allow": allow}
    )
    assert any(p.id == "PS304" for p in run_checks(app, config)) is warned


# -- the middleware, in-process -----------------------------------------------------


def _app() -> Flask:
    app = Flask(__name__)

    @app.route("/item/<int:n>")
    def item(n: int) -> str:
        return "x" * n

    @app.before_request
    def refuse_zero() -> Any:  # registered before the metrics' own
        if request.view_args == {"n": 0}:
            return "refused", 403
        return None

    return app


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[tuple[Flask, Any]]:
    """The app behind the whole chain, metrics on, through Werkzeug's test client."""
    from werkzeug.test import Client

    class BufferedClient(Client):
        """Reads and closes each response, as a server does (the request is recorded then)."""

        def open(self, *args: Any, **kwargs: Any) -> Any:
            return super().open(*args, buffered=True, **kwargs)

    app = _app()
    options = {"mode": "prod", "metrics_path": "/metrics", "health_path": "/healthz"}
    options.update(getattr(request, "param", {}))
    config = config_for(app, options, env={})
    recorder = metrics.start(config)
    try:
        yield app, BufferedClient(build_wsgi_app(app, config, lifecycle_for(app), recorder))
    finally:
        metrics.stop()


def test_route_rule_is_the_label_and_scrapes_are_not_counted(
    served: tuple[Flask, Any], caplog: pytest.LogCaptureFixture
) -> None:
    _, client = served
    caplog.set_level(logging.INFO, "flask_prodserve.access")
    for n in (1, 2, 3):
        assert client.get(f"/item/{n}").status_code == 200
    assert client.get("/nothing/here").status_code == 404
    assert client.get("/healthz").status_code == 200
    assert client.post("/item/1", data=b"12345").status_code == 405
    client.get("/metrics")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    found = samples(response.get_data(as_text=True))
    assert count(found, http_route="/item/<int:n>") == 3
    assert count(found, http_response_status_code="404", http_route="") == 1
    assert count(found, http_request_method="POST", http_response_status_code="405") == 1
    assert count(found) == 5  # not the health check, not the scrapes
    assert found[("http_server_response_body_size_bytes_total", ())] >= 6
    assert found[("http_server_request_body_size_bytes_total", ())] == 5
    assert found[("http_server_active_requests", ())] == 0
    logged = [r.getMessage() for r in caplog.records]
    assert any("/item/3" in line for line in logged)
    assert not any("/metrics" in line or "/healthz" in line for line in logged)


def test_unknown_methods_are_counted_as_other(served: tuple[Flask, Any]) -> None:
    _, client = served
    client.open("/item/1", method="BREW")
    client.open("/item/1", method="FETCH")
    found = samples(client.get("/metrics").get_data(as_text=True))
    assert count(found, http_request_method="_OTHER") == 2


def test_the_route_is_known_when_a_before_request_function_answers(
    served: tuple[Flask, Any],
) -> None:
    _, client = served
    assert client.get("/item/0").status_code == 403
    found = samples(client.get("/metrics").get_data(as_text=True))
    assert count(found, http_route="/item/<int:n>", http_response_status_code="403") == 1


def test_a_gunicorn_worker_publishes_its_last_requests_as_it_exits() -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    recorder = metrics.start(config_for(_app(), {"mode": "prod", "metrics_path": "/m"}, env={}))
    assert recorder is not None
    try:
        recorder.tally.record(("GET", "200", "/item/<int:n>", 0.02, 0, 10))  # no thread

        def in_files() -> dict[Any, float]:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, recorder.directory)  # type: ignore[no-untyped-call]
            return samples(generate_latest(registry).decode())

        assert count(in_files()) == 0
        metrics.worker_exiting()  # gunicorn's worker_exit hook
        assert count(in_files(), http_route="/item/<int:n>") == 1
    finally:
        metrics.stop()


class _Value:
    """Stands for a prometheus_client value: what Tally adds to."""

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float) -> None:
        self.value += amount


class _Child:
    def __init__(self, buckets: int) -> None:
        self._buckets = [_Value() for _ in range(buckets)]
        self._sum = _Value()


def test_tally_counts_every_request_from_many_threads_once() -> None:
    child = _Child(3)
    sizes = _Value(), _Value()
    children = {("GET", "200", "/"): child, ("GET", "404", ""): _Child(3)}
    tally = Tally((0.1, 1.0), children.__getitem__, *sizes)

    def work() -> None:
        for n in range(2000):
            tally.record(("GET", "200", "/", 0.05 if n % 2 else 5.0, 1, 2))
            if n % 500 == 0:
                tally.publish()  # as the publishing thread does, meanwhile

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    tally.publish()
    tally.publish()  # nothing new: nothing added twice
    assert [v.value for v in child._buckets] == [8000, 0, 8000]
    assert child._sum.value == pytest.approx(8000 * 5.05)
    assert (sizes[0].value, sizes[1].value) == (16000, 32000)
    tally.record(("GET", "200", "/", 0.5, 0, 0))
    tally.record(("GET", "404", "", 0.5, 0, 0))
    tally.publish()
    assert [v.value for v in child._buckets] == [8000, 1, 8000]
    assert [v.value for v in children["GET", "404", ""]._buckets] == [0, 1, 0]


def test_a_request_whose_app_raises_is_counted_as_a_500(served: tuple[Flask, Any]) -> None:
    app, client = served
    app.config["PROPAGATE_EXCEPTIONS"] = True

    @app.route("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        client.get("/boom")
    found = samples(client.get("/metrics").get_data(as_text=True))
    assert count(found, http_response_status_code="500", http_route="/boom") == 1
    assert found[("http_server_active_requests", ())] == 0


@pytest.mark.parametrize("served", [{"metrics_allow": "10.0.0.0/8"}], indirect=True)
def test_metrics_allow_hides_the_path_from_other_clients(served: tuple[Flask, Any]) -> None:
    _, client = served
    assert client.get("/metrics").status_code == 404  # the test client is 127.0.0.1
    allowed = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert allowed.status_code == 200
    assert b"http_server_active_requests" in allowed.data


def test_metrics_files_are_removed_at_stop_and_stale_ones_at_start() -> None:
    import os
    import subprocess
    import sys

    from flask_prodserve.prometheus import _fresh_directory

    # A directory left by a process killed before it could remove it.
    child = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path[:0] = {sys.path!r}; "
         "from flask_prodserve.prometheus import _fresh_directory; print(_fresh_directory())"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    stale = child.stdout.strip()
    assert os.path.isdir(stale)
    mine = _fresh_directory()
    assert not os.path.exists(stale)
    os.rmdir(mine)
    app = _app()
    recorder = metrics.start(config_for(app, {"mode": "prod", "metrics_path": "/m"}, env={}))
    assert recorder is not None
    directory = recorder.directory
    recorder.duration.labels("GET", "200", "/").observe(0.1)
    assert os.listdir(directory)
    metrics.stop()
    assert not os.path.exists(directory)
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


# -- live servers -------------------------------------------------------------------


def _hammer(server: Any, requests: list[tuple[str, str]], threads: int = 16) -> None:
    """Send every ``(method, path)``, from ``threads`` threads at once; each must answer."""
    failures: list[Any] = []
    lock = threading.Lock()
    todo = list(requests)

    def work() -> None:
        while True:
            with lock:
                if not todo:
                    return
                method, path = todo.pop()
            try:
                status = server.request(method, path, timeout=30)[0]
                if status not in (200, 404):
                    failures.append((path, status))
            except OSError as exc:
                failures.append((path, exc))

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(120)
    assert not failures, failures[:5]
    assert not any(t.is_alive() for t in workers)


def _scrape(server: Any, path: str = "/metrics") -> dict[Any, float]:
    status, headers, body = server.request("GET", path)
    assert status == 200, (status, body)
    assert headers["content-type"].startswith("text/plain")
    return samples(body.decode())


def _settled(server: Any, workers: int, deadline: float = 30) -> dict[Any, float]:
    """The metrics once they stop changing: every request recorded (a request
    is recorded when the server closes its response, just after the client has
    read it, and other workers publish theirs within PUBLISH_EVERY) and every
    worker up (gunicorn replaces a recycled one in a moment; the scrapes
    themselves count towards --max-requests, hence no faster polling)."""
    end = time.monotonic() + deadline
    last: tuple[float, float] | None = None
    since = time.monotonic()
    while True:
        found = _scrape(server)
        settled = found.get(("http_server_active_requests", ()), 0) == 0
        settled = settled and found.get(("flask_prodserve_workers", ()), 0) == workers
        now = (count(found), found.get(("http_server_response_body_size_bytes_total", ())) or 0)
        if now != last or not settled:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > 5 * PUBLISH_EVERY:
            return found
        assert time.monotonic() < end, f"the metrics did not settle: {now}\n{server.log}"
        time.sleep(PUBLISH_EVERY)


@pytest.mark.parametrize(
    ("backend", "workers"),
    [
        pytest.param("gunicorn", 4, marks=needs_gunicorn),
        ("waitress", 1),
        ("waitress", 2),
        ("werkzeug", 1),
    ],
)
def test_counts_are_exact_on_every_backend(flask_serve: Any, backend: str, workers: int) -> None:
    extra = ["--metrics-path", "/metrics", "--health-path", "/healthz", "--url-prefix", "/app"]
    if workers > 1:
        # Several workers, each recycled after 60 requests: counts survive the recycling.
        extra += ["--workers", str(workers), "--threads", "4", "--max-requests", "60"]
    server = flask_serve(serve_args(backend, *extra))
    paths = [("GET", f"/app/echo/{n}") for n in range(450)]
    paths += [("DELETE", f"/app/nope/{n}") for n in range(50)]  # GETs: the fixture's probes
    paths += [("GET", "/healthz"), ("GET", "/metrics")] * 20
    _hammer(server, paths)
    assert server.request("DELETE", "/app/metrics")[0] == 404  # the app's, not ours
    found = _settled(server, workers)
    ok = count(found, http_route="/echo/<path:rest>", http_response_status_code="200")
    assert ok == 450
    assert count(found, http_request_method="DELETE", http_response_status_code="404") == 51
    probes = count(found, http_request_method="GET", http_response_status_code="404")
    assert count(found) == 501 + probes  # the fixture's readiness probes: GET 404s
    time.sleep(3 * PUBLISH_EVERY)
    again = _scrape(server)  # and it stays so
    assert count(again, http_route="/echo/<path:rest>") == 450
    assert count(again, http_request_method="DELETE") == 51
    # The health checks and scrapes (200s that match no rule) are not counted.
    assert count(found, http_route="", http_response_status_code="200") == 0
    assert found[("http_server_active_requests", ())] == 0
    assert found[("flask_prodserve_workers", ())] == workers
    if workers > 1:
        assert found[("flask_prodserve_worker_restarts_total", ())] >= workers
        assert "SERVER_SOFTWARE" not in server.log  # nothing odd logged
    assert found[("flask_prodserve_uptime_seconds", ())] > 0
    if backend == "waitress" and workers == 1:
        assert found[("flask_prodserve_threads_busy", ())] >= 1  # this scrape's thread
    if backend != "werkzeug":  # the dev server logs every request itself, as flask run
        assert "GET /metrics " not in server.log and "GET /healthz " not in server.log
    assert "Metrics: /metrics (Prometheus; readable from any address)" in server.log
    assert _metrics_directories(server.proc.pid)  # while it runs
    assert server.terminate() == 0
    assert not _metrics_directories(server.proc.pid)  # removed at exit


def _metrics_directories(pid: int) -> list[str]:
    import glob
    import tempfile

    return [
        found
        for parent in ("/dev/shm", tempfile.gettempdir())
        for found in glob.glob(f"{parent}/flask-prodserve-metrics-{pid}-*")
    ]
