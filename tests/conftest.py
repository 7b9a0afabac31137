"""Shared fixtures: a live ``flask serve`` process per backend."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import LiveServer


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    """Undo what a test's Flask CLI wrote to os.environ (``--debug`` sets
    FLASK_DEBUG), so no test sees another's; monkeypatch cannot undo a
    variable that it deleted before it existed."""
    saved = os.environ.copy()
    yield
    os.environ.clear()
    os.environ.update(saved)


StartServer = Callable[..., LiveServer]


@pytest.fixture
def flask_serve(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StartServer]:
    """A factory: ``flask_serve(["--app", "x", "serve", ...])`` -> a started
    :class:`LiveServer`, killed at the end of the test, its log printed if the
    test failed. (Not pytest-flask's ``live_server``, which runs ``app.run()``.)"""
    servers: list[LiveServer] = []

    def start(
        args: list[str],
        env: dict[str, str] | None = None,
        wait: bool = True,
        cwd: Path | None = None,
        **launch: Any,
    ) -> LiveServer:
        # launch: LiveServer's launcher and pass_fds
        server = LiveServer(args, tmp_path / f"server-{len(servers)}.log", env, **launch)
        servers.append(server)
        server.cwd = cwd or server.cwd  # a project folder other than the repository
        return server.start(wait=wait)

    yield start
    for server in servers:
        server.kill()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for server in servers:
            print(f"--- {server.args}\n{server.log}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, "rep_" + report.when, report)
    return report
