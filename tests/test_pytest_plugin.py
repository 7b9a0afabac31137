"""The pytest plugin, as a user project meets it: a factory, an ``app`` fixture
and tests that use ``prod_server``, run by pytest in a subprocess (pytester)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from flask import Flask

from flask_prodserve.testing import ProdServer, resolve

from .helpers import http_request

pytest_plugins = ["pytester"]

# The project: an app factory with the extension, limits and a prefix in its config.
SHOP = """
import os

from flask import Flask, jsonify, request

from flask_prodserve import ProdServe

prodserve = ProdServe(threads=4)


def create_app(test_config=None):
    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY=os.environ["SHOP_SECRET_KEY"],
        SESSION_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=1024,
        PRODSERVE_URL_PREFIX="/shop",
    )
    app.config.from_mapping(test_config or {})

    @app.get("/echo")
    def echo():
        with open(os.environ["SHOP_PIDS"], "a") as pids:
            pids.write(f"{os.getpid()}\\n")  # every process that served a request
        return jsonify(
            software=request.environ.get("SERVER_SOFTWARE", ""),
            script_name=request.script_root,
            path=request.path,
        )

    @app.post("/upload")
    def upload():
        return {"size": len(request.get_data())}

    prodserve.init_app(app)
    return app
"""

CONFTEST = """
import os

import pytest


@pytest.fixture
def app():
    from shop import create_app  # imported here: a broken app fails its tests, not collection

    return create_app({"TESTING": True})


@pytest.fixture(autouse=True)
def record_server(request):
    yield
    server = request.node.funcargs.get("prod_server")
    if server is not None:
        with open(os.environ["SHOP_PIDS"], "a") as pids:
            pids.write(f"{server.pid}\\n")
        with open(os.environ["SHOP_PIDS"] + ".workers", "a") as workers:
            workers.write(os.environ.get("PYTEST_XDIST_WORKER", "-") + "\\n")
"""

TESTS = """
import json
import urllib.error
import urllib.request

import pytest

SOFTWARE = {"gunicorn": "gunicorn/", "waitress": "waitress", "werkzeug": "Werkzeug/"}


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def status_of(request):
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        with error:
            return error.code


def test_served_by_the_chosen_server_under_the_prefix(prod_server):
    environ = get(prod_server.url + "/echo")
    assert environ["software"].startswith(SOFTWARE[prod_server.config.server])
    assert prod_server.url.endswith(":%d/shop" % prod_server.port)
    assert (environ["script_name"], environ["path"]) == ("/shop", "/echo")


def test_outside_the_prefix_is_a_404(prod_server):
    assert status_of(prod_server.url.removesuffix("/shop") + "/echo") == 404


def test_body_over_the_limit_is_a_413(prod_server):
    request = urllib.request.Request(prod_server.url + "/upload", data=b"x" * 2048)
    assert status_of(request) == 413
    request = urllib.request.Request(prod_server.url + "/upload", data=b"x" * 1024)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response) == {"size": 1024}


def test_next_to_pytest_flask_client(prod_server, client):
    assert client.get("/echo").json["script_name"] == ""  # the test client: no prefix
    assert get(prod_server.url + "/echo")["script_name"] == "/shop"


@pytest.mark.prod_server("gunicorn", "waitress")
def test_access_log(prod_server):
    get(prod_server.url + "/echo?q=1")
    prod_server.wait_for_log('"GET /shop/echo?q=1 HTTP/1.1" 200')
"""

ALL_TESTS = [
    "test_served_by_the_chosen_server_under_the_prefix",
    "test_outside_the_prefix_is_a_404",
    "test_body_over_the_limit_is_a_413",
    "test_next_to_pytest_flask_client",
]


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user project; each process that serves or runs a server writes its
    PID to ``pids`` for :func:`assert_all_gone`."""
    for name in list(os.environ):
        if name.startswith(("FLASK_", "PRODSERVE", "PYTEST_ADDOPTS")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SHOP_SECRET_KEY", os.urandom(16).hex())
    monkeypatch.setenv("SHOP_PIDS", str(pytester.path / "pids"))
    pytester.makepyfile(shop=SHOP, conftest=CONFTEST, test_shop=TESTS)
    pytester.makeini("[pytest]\nfilterwarnings = error\ntimeout = 60\n")
    return pytester.path


def recorded_pids(project: Path) -> set[int]:
    path = project / "pids"
    return {int(line) for line in path.read_text().split()} if path.exists() else set()


def live_processes() -> dict[int, int]:
    """PID -> process group of every process that has not exited (zombies,
    which an init that does not reap may keep, have exited)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] not in "ZX":
            found[int(stat.parent.name)] = int(fields[2])
    return found


def assert_all_gone(pids: set[int], deadline: float = 0) -> None:
    """No process of ``pids``, nor of a process group they lead, is left."""
    end = time.monotonic() + deadline
    while left := {p: g for p, g in live_processes().items() if p in pids or g in pids}:
        assert time.monotonic() < end, f"still running (pid: group): {left}"
        time.sleep(0.05)


@pytest.mark.parametrize("backend", ["gunicorn", "waitress", "dev"])
def test_user_project_passes_on_each_backend(
    pytester: pytest.Pytester, project: Path, backend: str
) -> None:
    result = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider", "--prod-server", backend)
    lines = [f"*::{name}[[]{backend}[]] PASSED*" for name in ALL_TESTS]
    result.stdout.fnmatch_lines(lines, consecutive=False)
    # ... and the access-log test, on the two servers its marker names.
    result.assert_outcomes(passed=len(ALL_TESTS) + 2)
    pids = recorded_pids(project)
    assert len(pids) >= 2  # the servers and the processes that served them
    assert_all_gone(pids)


def test_every_backend_in_one_session_with_xdist(pytester: pytest.Pytester, project: Path) -> None:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--prod-server=all")
    result.assert_outcomes(passed=3 * len(ALL_TESTS) + 2)
    # Both workers ran servers (each on a port the system picked for it).
    assert set((project / "pids.workers").read_text().split()) == {"gw0", "gw1"}
    assert_all_gone(recorded_pids(project))


def test_marker_options_and_a_failing_test_show_the_server_log(
    pytester: pytest.Pytester, project: Path
) -> None:
    pytester.makepyfile(
        test_fails="""
        import pytest

        @pytest.mark.prod_server("waitress", url_prefix="/other", threads=2)
        def test_fails(prod_server):
            assert prod_server.url.endswith("/other")
            assert prod_server.config.threads == 2
            assert False, "the view was wrong"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_fails.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_fails[[]waitress[]]*",
            "*AssertionError: the view was wrong*",
            "*prod_server log: waitress*",
            " [*] Workers: 1 process x 2 threads",
            " [*] Running on http://127.0.0.1:*/other/",
        ]
    )
    assert_all_gone(recorded_pids(project))


def test_a_server_that_cannot_start_fails_with_its_own_output(
    pytester: pytest.Pytester, project: Path
) -> None:
    pytester.makepyfile(
        test_refused="""
        import pytest

        @pytest.mark.prod_server("gunicorn", "waitress")
        @pytest.mark.options(secret_key="secret")
        def test_refused(prod_server):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_refused.py")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*prod_server: the gunicorn server (pid *) exited with status 1 before serving;*",
            "Error: PS202: SECRET_KEY contains 'secret'*",
        ]
    )
    assert "Timeout" not in result.stdout.str()


def test_a_broken_app_fails_with_its_import_error(pytester: pytest.Pytester, project: Path) -> None:
    shop = project / "shop.py"
    shop.write_text("import no_such_dependency_xyz\n" + shop.read_text())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--prod-server", "waitress")
    result.assert_outcomes(errors=len(ALL_TESTS) + 2)
    result.stdout.fnmatch_lines(["*ModuleNotFoundError: No module named 'no_such_dependency_xyz'"])


def test_bad_option_and_server_names(pytester: pytest.Pytester, project: Path) -> None:
    result = pytester.runpytest_subprocess("--prod-server", "gunicorn,uwsgi")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--prod-server: there is no server 'uwsgi'; use auto, gunicorn, waitress, dev or all."]
    )
    pytester.makepyfile(
        test_typo="""
        import pytest

        @pytest.mark.prod_server(url_prefx="/x")
        def test_typo(prod_server):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_typo.py")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*prod_server: url_prefx: unknown setting; did you mean url_prefix?*"]
    )


def test_a_killed_test_run_leaves_no_server(pytester: pytest.Pytester, project: Path) -> None:
    """pytest-timeout's thread method ends the test process with os._exit: no
    fixture teardown runs, and the server stops when its lifeline closes."""
    pytester.makepyfile(
        test_hangs="""
        import time

        import pytest

        @pytest.mark.timeout(2, method="thread")
        @pytest.mark.prod_server("gunicorn")
        def test_hangs(prod_server, request):
            with open(__import__("os").environ["SHOP_PIDS"], "a") as pids:
                pids.write(f"{prod_server.pid}\\n")
            time.sleep(60)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_hangs.py", timeout=60)
    assert result.ret != 0
    pids = recorded_pids(project)
    assert pids
    assert_all_gone(pids, deadline=30)


def test_plugin_is_registered_and_skips_without_fork(
    pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*--prod-server=NAME*"])
    pytester.makeconftest(
        CONFTEST + "\nimport os\ndel os.fork  # as on Windows\n",
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", "--prod-server", "dev")
    result.assert_outcomes(skipped=len(ALL_TESTS) + 2)
    result.stdout.fnmatch_lines(["*prod_server forks the test process, which Windows cannot do*"])


def tiny_app() -> Flask:
    app = Flask("tiny")
    app.secret_key = os.urandom(16).hex()
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    return app


@pytest.mark.parametrize("backend", ["gunicorn", "waitress", "dev"])
def test_sigterm_is_what_stops_the_server(tmp_path: Path, backend: str) -> None:
    """Without the pytester layer: the stop is graceful, by PID, and logged."""
    app = tiny_app()
    server = ProdServer(resolve(app, backend, {}), tmp_path / "log").start(app)
    try:
        assert server.running
        assert os.getpgid(server.pid) == server.pid  # its own group
        assert http_request(server.host, server.port, "GET", "/")[0] == 404  # serving
    finally:
        status = server.stop()
    assert status == 0
    assert not server.running
    log = server.read_log()
    assert log.rstrip().endswith(" * Stopped."), log
    assert backend == "dev" or "Stopping (SIGTERM)" in log
    assert server.stop() == 0  # twice is fine
    assert_all_gone({server.pid})


@pytest.mark.parametrize("backend", ["gunicorn", "waitress", "dev"])
def test_a_stop_right_after_the_start_is_clean(tmp_path: Path, backend: str) -> None:
    """The fixture may stop a server before its backend has set its own signal
    handlers: that is a stop while starting, not a death by SIGTERM."""
    app = tiny_app()
    server = ProdServer(resolve(app, backend, {}), tmp_path / "log").start(app)
    assert server.stop() == 0, server.read_log()
    assert server.read_log().rstrip().endswith(" * Stopped.")
    assert_all_gone({server.pid})


def test_a_project_fixture_of_the_same_name_is_left_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_own="""
        import pytest

        @pytest.fixture
        def prod_server():
            return "the project's own"

        def test_own(prod_server):
            assert prod_server == "the project's own"
        """
    )
    result = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider", "--prod-server=all")
    result.stdout.fnmatch_lines(["*::test_own PASSED*"])
    result.assert_outcomes(passed=1)


def test_a_test_process_that_ignores_sigchld(tmp_path: Path) -> None:
    """The kernel reaps the server itself then: the stop still works."""
    app = tiny_app()
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        server = ProdServer(resolve(app, "waitress", {}), tmp_path / "log").start(app)
        assert server.running
        assert server.stop() == 0
        assert not server.running
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert_all_gone({server.pid})
