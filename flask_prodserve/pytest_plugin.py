"""The pytest plugin: test the app under the server it will run on.

Registered through the ``pytest11`` entry point, so installing
flask-prodserve is all it takes. It adds:

- the ``prod_server`` fixture: the project's ``app`` fixture (pytest-flask's
  convention) served as ``flask serve --prod`` would serve it, on an
  ephemeral loopback port (:class:`~flask_prodserve.testing.ProdServer`);
- the ``--prod-server NAME`` option: ``auto`` (the default: the server
  ``flask serve --prod`` picks), ``gunicorn``, ``waitress``, ``dev``
  (Werkzeug's dev server, for comparison) or ``all``; several names, repeated
  or separated by commas, run each test once per server, and the test IDs
  show which (``test_home[waitress]``);
- the ``prod_server`` marker: ``@pytest.mark.prod_server("waitress")`` picks
  the servers for one test, and keyword arguments are options, as for
  ``flask_prodserve.serve(app, ...)`` (``url_prefix="/app"``).

It is loaded in every pytest run of an environment that has the package,
so it imports no server, and the forking code (:mod:`.testing`) only when a
test asks for the fixture.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from flask import Flask

    from .testing import ProdServer

#: The names ``--prod-server`` and the marker take; ``all`` means the last three.
NAMES = ("auto", "gunicorn", "waitress", "dev")
_ALL = ("gunicorn", "waitress", "dev")
_SELECTED = pytest.StashKey[list[str]]()
_SERVERS = pytest.StashKey[list["ProdServer"]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("prodserve", "flask-prodserve")
    group.addoption(
        "--prod-server",
        action="append",
        default=[],
        metavar="NAME",
        help="Server for the prod_server fixture: auto (what 'flask serve --prod' picks; "
        "the default), gunicorn, waitress, dev (Werkzeug's dev server) or all. Repeat "
        "it, or separate names with commas, to run each such test on every one named.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "prod_server(*names, **options): serve this test's app with these servers "
        "(auto, gunicorn, waitress, dev, all) and flask serve options "
        "(url_prefix='/app'); see the prod_server fixture.",
    )
    config.stash[_SELECTED] = _parse(config.getoption("prod_server"), "--prod-server")


def _parse(values: Iterable[Any], where: str) -> list[str]:
    """``["gunicorn,waitress"]`` -> ``["gunicorn", "waitress"]``; none -> ``["auto"]``."""
    words = [w.strip().lower() for v in values for w in str(v).split(",") if w.strip()]
    names: list[str] = []
    for word in words or ["auto"]:
        if word not in (*NAMES, "all"):
            raise pytest.UsageError(
                f"{where}: there is no server {word!r}; use auto, gunicorn, waitress, dev or all."
            )
        names.extend(_ALL if word == "all" else [word])
    return list(dict.fromkeys(names))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that uses ``prod_server`` once per selected server."""
    if "prod_server" not in metafunc.fixturenames:
        return
    # A project's own fixture of that name (the last definition wins) is left alone.
    definitions = getattr(metafunc, "_arg2fixturedefs", {}).get("prod_server")
    if definitions and getattr(definitions[-1].func, "__module__", __name__) != __name__:
        return
    marker = metafunc.definition.get_closest_marker("prod_server")
    if marker is not None and marker.args:
        names = _parse(marker.args, "@pytest.mark.prod_server")
    else:
        names = metafunc.config.stash[_SELECTED]
    metafunc.parametrize("prod_server", names, indirect=True, ids=names)


@pytest.fixture
def prod_server(request: pytest.FixtureRequest, app: Flask, tmp_path: Path) -> Iterator[ProdServer]:
    """The ``app`` fixture's app, served by a production server in a forked
    process, as ``flask serve --prod`` serves it (the app's ``PRODSERVE_*``
    config, ``ProdServe(...)`` defaults and ``FLASK_SERVE_*`` variables
    apply), on 127.0.0.1 and a free port.

    ``prod_server.url`` is the base URL with the prefix, ``prod_server.log``
    the file its output goes to (attached to a failing test's report), and
    ``prod_server.config`` the resolved settings. The server is stopped
    (SIGTERM, then SIGKILL to its process group) when the test ends.
    """
    if not hasattr(os, "fork"):
        pytest.skip("prod_server forks the test process, which Windows cannot do")
    from .errors import ProdServeError
    from .testing import ProdServer, ServerDidNotStart, resolve

    name: str = getattr(request, "param", "auto")
    marker = request.node.get_closest_marker("prod_server")
    problem = ""
    try:
        config = resolve(app, name, marker.kwargs if marker else {})
        server = ProdServer(config, tmp_path / f"prod-server-{name}.log").start(app)
    except (ProdServeError, ServerDidNotStart) as exc:
        problem = str(exc)  # failed outside the except block: no "during handling" chain
    if problem:
        pytest.fail(f"prod_server: {problem}", pytrace=False)
    request.node.stash.setdefault(_SERVERS, []).append(server)
    try:
        yield server
    finally:
        server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach each server's log to a failed test's report."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.failed:
        for server in item.stash.get(_SERVERS, []):
            state = "" if server.running else ", it has exited"
            title = f"prod_server log: {server.config.server}{state}, {server.log}"
            report.sections.append((title, server.read_log()))
