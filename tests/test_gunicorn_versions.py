"""The gunicorn versions our worker was tested with, and what happens outside them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from flask_prodserve.backends import gunicorn_names
from flask_prodserve.backends.gunicorn_names import is_tested, worker_fallback

from .helpers import ECHO, ROOT, run_flask, serve_args


@pytest.mark.parametrize(
    ("release", "tested"),
    [
        pytest.param("22.0.0", False, id="older"),
        pytest.param("23.0.0", True, id="floor"),
        pytest.param("25.1.0", True, id="between"),
        pytest.param("27.0.1", True, id="newest"),
        pytest.param("28.0.0", False, id="newer"),
        pytest.param("27.1.0b1", False, id="next-minor"),
        pytest.param("main", False, id="no-version"),
    ],
)
def test_tested_releases(release: str, tested: bool) -> None:
    assert is_tested(release) is tested


def test_tested_range_reads_as_a_requirement() -> None:
    assert gunicorn_names.tested_range() == "gunicorn>=23.0,<28"


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        pytest.param({}, None, id="ours"),
        pytest.param({"certfile": "c.pem"}, "TLS (certfile)", id="tls"),
        pytest.param({"http2_cleartext": "prior_knowledge"}, "cleartext HTTP/2", id="h2c"),
        pytest.param({"http2_cleartext": "upgrade"}, None, id="h2c-upgrade"),
        pytest.param({"proxy_protocol": "v2"}, "PROXY protocol v2", id="proxy-v2"),
        pytest.param({"proxy_protocol": "v1"}, None, id="proxy-v1"),
    ],
)
def test_options_our_worker_cannot_serve(options: dict[str, Any], reason: str | None) -> None:
    why = worker_fallback(options)
    assert why is None if reason is None else why is not None and why.startswith(reason)


def fake_release(tmp_path: Path, release: str) -> str:
    """A PYTHONPATH on which gunicorn's metadata says ``release`` (the code stays the real one)."""
    site = tmp_path / "site"
    dist = site / f"gunicorn-{release}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: gunicorn\nVersion: {release}\n")
    return f"{site}{os.pathsep}{ROOT}"


def test_an_untested_gunicorn_serves_with_its_own_worker_and_says_so(
    flask_serve: Any, tmp_path: Path
) -> None:
    path = fake_release(tmp_path, "99.0")
    server = flask_serve(serve_args("gunicorn", "--workers", "1"), env={"PYTHONPATH": path})
    assert server.get_json("/echo/x")["SERVER_SOFTWARE"].startswith("gunicorn/")
    lines = [line for line in server.log.splitlines() if "PS701" in line]
    assert len(lines) == 1, server.log
    assert lines[0].startswith(
        " * Warning PS701: gunicorn 99.0 is outside the versions flask-prodserve was tested "
        "with (gunicorn>=23.0,<28), so gunicorn's own gthread worker serves"
    )
    assert "Fix: put nginx in front" in lines[0]
    report = run_flask(
        ROOT, *ECHO, "serve", "--prod", "--server", "gunicorn", "--check", env={"PYTHONPATH": path}
    )
    assert "PS701 warning: gunicorn 99.0 is outside the versions" in report.stdout, report


@pytest.mark.parametrize(
    ("release", "supported"),
    [("23.0.0", True), ("27.0.1", True), ("22.0.0", False), ("28.0.0", False)],
)
def test_reloads_only_on_tested_releases(
    monkeypatch: pytest.MonkeyPatch, release: str, supported: bool
) -> None:
    monkeypatch.setattr(gunicorn_names, "installed", lambda: release)
    why = gunicorn_names.reload_unsupported()
    assert (why is None) == supported
    if why is not None:
        assert f"gunicorn {release} is outside that range: restart the server instead" in why


def test_the_date_header_is_made_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    from gunicorn import util

    made = util.http_date
    monkeypatch.setattr(util, "http_date", made)  # put back after the test
    gunicorn_names.cache_date_header()
    cached = util.http_date
    gunicorn_names.cache_date_header()  # a second worker start in this process: no second layer
    assert util.http_date is cached is not made
    for _ in range(3):  # the second may turn between the calls
        before, text, after = made(), cached(), made()
        if before == after:
            break
    assert text == before
    assert cached(0) == made(0) == "Thu, 01 Jan 1970 00:00:00 GMT"


def test_the_date_header_is_left_alone_without_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from gunicorn import util

    monkeypatch.delattr(util, "http_date")
    gunicorn_names.cache_date_header()
    assert not hasattr(util, "http_date")
