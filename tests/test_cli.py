"""``flask serve`` parsing and reporting, through click's runner with a fake backend."""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.cli import FlaskGroup

import flask_prodserve
from flask_prodserve import ProdServe, backends, sockets
from flask_prodserve.config import OPTIONS, ServeConfig
from flask_prodserve.middleware import access_logger


class FakeBackend:
    def __init__(self) -> None:
        self.calls: list[ServeConfig] = []
        self.status = 0

    def check_options(self, config: ServeConfig) -> None:
        pass

    def run(
        self, wsgi_app: Any, sock: socket.socket, config: ServeConfig, lifecycle: Any, events: Any
    ) -> int:
        events.started()
        self.calls.append(config)
        return self.status


@pytest.fixture
def fake_backend(monkeypatch: pytest.MonkeyPatch) -> FakeBackend:
    fake = FakeBackend()
    monkeypatch.setattr(backends, "load", lambda name: fake)
    return fake


@pytest.fixture(autouse=True)
def _restore_access_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    # The command attaches a handler to the runner's (short-lived) stdout.
    monkeypatch.setattr(access_logger, "handlers", [])
    monkeypatch.setattr(access_logger, "propagate", True)
    monkeypatch.setattr(access_logger, "level", logging.NOTSET)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # FlaskGroup sets FLASK_RUN_FROM_CLI in os.environ; monkeypatch removes it afterwards.
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "false")
    for name in ("FLASK_DEBUG", "PORT", "WEB_CONCURRENCY", "FLASK_APP"):
        monkeypatch.delenv(name, raising=False)


NO_SOURCE = str(Path(__file__).parent / "live_apps" / "static")  # no .py file, no template


def make_app(**config: Any) -> Flask:
    app = Flask("demo", root_path=NO_SOURCE, instance_path=NO_SOURCE)
    app.config.update(config)
    return app


def invoke(app: Flask, *args: str, env: dict[str, str] | None = None) -> Result:
    group = FlaskGroup(create_app=lambda: app)
    return CliRunner().invoke(group, list(args), env=env, catch_exceptions=False)


def test_registered_through_the_entry_point() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="flask.commands")}
    assert names["serve"] == "flask_prodserve.cli:serve_command"


def test_help_lists_every_option_with_its_env_and_config_names() -> None:
    result = invoke(make_app(), "serve", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # undo click's wrapping
    for option in OPTIONS:
        assert option.flag in text
        assert f"{option.env}, {option.config_key}" in text
    assert "Examples:" in text


def test_print_config_shows_values_and_sources(fake_backend: FakeBackend) -> None:
    app = make_app(PRODSERVE_THREADS=7)
    result = invoke(
        app, "serve", "--port", "9001", "--print-config", env={"FLASK_SERVE_URL_PREFIX": "shop"}
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Settings for Flask app 'demo':"
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in lines[1:]}
    assert rows["port"] == ["9001", "--port"]
    assert rows["url_prefix"] == ["/shop", "FLASK_SERVE_URL_PREFIX"]
    assert rows["threads"] == ["7", "app.config['PRODSERVE_THREADS']"]
    assert rows["mode"] == ["prod", "auto: debug is off"]
    assert not fake_backend.calls


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        pytest.param(
            ["--port", "eighty"],
            {},
            re.escape(
                "Invalid value for '--port' / '-p': expected a whole "
                "number from 0 to 65535, like 8000 (got 'eighty')."
            ),
            id="bad-port",
        ),
        pytest.param(
            ["--server", "uwsgi"],
            {},
            re.escape("'uwsgi' is not one of 'auto', 'gunicorn', 'waitress'."),
            id="unknown-server",
        ),
        pytest.param(
            ["--url-prefix", "a b"], {}, "expected a URL path such as /app", id="bad-prefix"
        ),
        pytest.param(
            ["--dev", "--prod"],
            {},
            re.escape("Use only one of --dev, --prod and --mode."),
            id="dev-and-prod",
        ),
        pytest.param(["--prod", "--mode", "dev"], {}, "Use only one of", id="prod-and-mode"),
        pytest.param(
            ["--prot", "1"],
            {},
            # click's own words, which changed in 8.2; both name the option and suggest --port.
            r"No such option:? '?--prot'?\.? \((Did you mean one of|Possible options): '?--port",
            id="typo-in-option",
        ),
    ],
)
def test_bad_command_line_exits_2(args: list[str], env: dict[str, str], message: str) -> None:
    result = invoke(make_app(), "serve", *args, env=env)
    assert result.exit_code == 2
    assert re.search(message, " ".join(result.output.split()))
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("app_config", "args", "env", "line"),
    [
        pytest.param(
            {},
            [],
            {"FLASK_SERVE_PORT": "eighty"},
            "Error: FLASK_SERVE_PORT: expected a whole number from 0 to 65535, like "
            "8000 (got 'eighty').",
            id="bad-env",
        ),
        pytest.param(
            {"PRODSERVE_PORT": "eighty"},
            [],
            {},
            "Error: app.config['PRODSERVE_PORT']: expected a whole number from 0 to "
            "65535, like 8000 (got 'eighty').",
            id="bad-config",
        ),
        pytest.param(
            {},
            ["--prod"],
            {"FLASK_DEBUG": "1"},
            "Error: --prod: the app's debug flag is on, and production must never run "
            "the debugger; turn debug off (drop --debug / FLASK_DEBUG / DEBUG=True) or "
            "serve with --dev.",
            id="debug-with-prod",
        ),
        pytest.param(
            {"PRODSERVE_MODE": "prod"},
            [],
            {"FLASK_DEBUG": "1"},
            "Error: app.config['PRODSERVE_MODE']: the app's debug flag is on, and production "
            "must never run the debugger; turn debug off (drop --debug / FLASK_DEBUG / "
            "DEBUG=True) or serve with --dev (got 'prod').",
            id="config-mode-prod-with-debug",
        ),
        pytest.param(
            {},
            [],
            {"FLASK_DEBUG": "1", "FLASK_SERVE_MODE": "prod"},
            "Error: FLASK_SERVE_MODE: the app's debug flag is on, and production "
            "must never run the debugger; turn debug off (drop --debug / FLASK_DEBUG / "
            "DEBUG=True) or serve with --dev (got 'prod').",
            id="env-mode-prod-with-debug",
        ),
    ],
)
def test_bad_settings_exit_1_with_one_line(
    app_config: dict[str, Any],
    args: list[str],
    env: dict[str, str],
    line: str,
    fake_backend: FakeBackend,  # never serve for real, even when a case regresses
) -> None:
    result = invoke(make_app(**app_config), "serve", *args, env=env)
    assert result.exit_code == 1
    assert result.output.splitlines() == [line]


def test_gunicorn_on_windows_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    result = invoke(make_app(), "serve", "--server", "gunicorn")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Error: --server: gunicorn does not run on Windows; use waitress (or auto)."
    ]
    auto = invoke(make_app(), "serve", "--print-config")
    assert re.search(r"waitress +auto: gunicorn does not run on\s+Windows", auto.output)


def test_no_app_is_one_line(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(FlaskGroup(), ["serve"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Error: Could not locate a Flask application. Use the 'flask --app' option, "
        "'FLASK_APP' environment variable, or a 'wsgi.py' or 'app.py' file in the current "
        "directory."
    ]


def test_serve_prints_a_banner_and_hands_off(fake_backend: FakeBackend) -> None:
    app = make_app()
    ProdServe(app, url_prefix="/shop", server="waitress")
    result = invoke(app, "serve", "--port", "0")
    assert result.exit_code == 0, result.output
    (config,) = fake_backend.calls
    assert (config.mode, config.server, config.url_prefix) == ("prod", "waitress", "/shop")
    lines = result.output.splitlines()
    assert lines[0] == " * Serving Flask app 'demo' in production mode (auto: debug is off)"
    assert lines[1].startswith(" * Server: waitress 3.")
    assert lines[1].endswith("(set by ProdServe(server=...))")
    assert lines[2] == " * Workers: 1 process x 32 threads"
    assert lines[3] == (
        f" * Generation 1: kill -HUP {os.getpid()} loads new code, one worker at a time"
    )
    assert lines[4].startswith(" * Running on http://127.0.0.1:")
    assert lines[4].endswith("/shop/")
    assert lines[-2:] == [" * Press CTRL+C to stop", " * Stopped."]


def test_debug_flag_selects_dev_mode(fake_backend: FakeBackend) -> None:
    result = invoke(make_app(), "--debug", "serve", "--port", "0", "--no-reload")
    assert result.exit_code == 0, result.output
    (config,) = fake_backend.calls
    assert (config.mode, config.server, config.debugger, config.reload) == (
        "dev",
        "werkzeug",
        True,
        False,
    )
    assert "development mode (auto: debug is on)" in result.output
    assert "reloader off, debugger on" in result.output


def test_debugger_on_a_public_address_warns(fake_backend: FakeBackend) -> None:
    result = invoke(
        make_app(), "--debug", "serve", "--host", "0.0.0.0", "--port", "0", "--no-reload"
    )
    assert "WARNING: the debugger is on" in result.output


def test_python_entry_point_serves_like_the_cli(fake_backend: FakeBackend) -> None:
    app = make_app()
    assert flask_prodserve.serve(app, port=0, url_prefix="x") == 0
    (config,) = fake_backend.calls
    assert (config.mode, config.url_prefix) == ("prod", "/x")
    assert config.origins["port"].label == "serve(port=...)"


def test_python_entry_point_returns_the_backend_status(fake_backend: FakeBackend) -> None:
    fake_backend.status = 3
    assert flask_prodserve.serve(make_app(), port=0) == 3


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param(
            {"debug": True},
            ("dev", "werkzeug", 5000, True, True),
            id="debug-true-is-the-dev-server",
        ),
        pytest.param(
            {"debug": True, "use_reloader": False, "use_debugger": False},
            ("dev", "werkzeug", 5000, False, False),
            id="app-run-names",
        ),
        pytest.param(
            {"debug": False, "host": "0.0.0.0", "port": 8080},
            ("prod", "waitress", 8080, False, False),
            id="app-run-host-and-port",
        ),
    ],
)
def test_python_entry_point_takes_app_run_names(
    fake_backend: FakeBackend,
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, Any],
    expected: tuple[Any, ...],
) -> None:
    monkeypatch.setattr(sockets, "bind", lambda *a, **k: socket.socket())
    monkeypatch.setenv("FLASK_SERVE_SERVER", "waitress")
    assert flask_prodserve.serve(make_app(), **options) == 0
    (config,) = fake_backend.calls
    assert (config.mode, config.server, config.port, config.reload, config.debugger) == expected
    if "use_reloader" in options:
        assert config.origins["reload"].label == "serve(use_reloader=...)"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"port": "x"},
            "serve(port=...): expected a whole number from 0 to 65535, like 8000 (got 'x').",
            id="bad-value",
        ),
        pytest.param(
            {"prot": 8080},
            "serve(prot=...): unknown option; did you mean port? (got 8080).",
            id="typo",
        ),
        pytest.param(
            {"debug": True, "mode": "prod"},
            "serve(mode=...): the app's debug flag is on, and production must never run the "
            "debugger; turn debug off (drop --debug / FLASK_DEBUG / DEBUG=True) or serve with "
            "--dev.",
            id="debug-with-prod",
        ),
    ],
)
def test_python_entry_point_raises_for_a_bad_option(
    fake_backend: FakeBackend, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(flask_prodserve.ConfigError) as info:
        flask_prodserve.serve(make_app(), **options)
    assert str(info.value) == message
    assert fake_backend.calls == []


def test_python_entry_point_refuses_debug_config_in_production(fake_backend: FakeBackend) -> None:
    # From Python, DEBUG=True in the config is the debug flag (the flask
    # command would replace it with FLASK_DEBUG).
    with pytest.raises(
        flask_prodserve.ConfigError, match=r"^serve\(mode=\.\.\.\): the app's debug"
    ):
        flask_prodserve.serve(make_app(DEBUG=True), mode="prod")
    assert fake_backend.calls == []


def test_short_options_as_in_flask_run(fake_backend: FakeBackend) -> None:
    result = invoke(make_app(), "serve", "-h", "0.0.0.0", "-p", "8081", "--print-config")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1] for line in result.output.splitlines()[1:]}
    assert (rows["host"], rows["port"]) == ("0.0.0.0", "8081")
    assert invoke(make_app(), "serve", "--help").output.count("-h, --host ADDRESS") == 1


@pytest.mark.parametrize(
    ("workers", "threads", "line"),
    [
        pytest.param("1", "1", " * Workers: 1 process x 1 thread", id="one"),
        pytest.param("3", "8", " * Workers: 3 processes x 8 threads", id="several"),
    ],
)
def test_banner_counts_in_words(
    fake_backend: FakeBackend, workers: str, threads: str, line: str
) -> None:
    args = ["--server", "gunicorn", "--workers", workers, "--threads", threads, "--port", "0"]
    result = invoke(make_app(SECRET_KEY=None), "serve", *args)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[2] == line


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="defaults"),
        pytest.param({"PORT": "10000", "WEB_CONCURRENCY": "3"}, id="paas"),
    ],
)
def test_print_config_fits_80_columns(env: dict[str, str]) -> None:
    result = invoke(make_app(), "serve", "--server", "gunicorn", "--print-config", env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert len(lines) > len(OPTIONS)  # a long reason continues on the next line


def test_print_config_in_dev_mode_lists_what_the_dev_server_uses() -> None:
    result = invoke(make_app(), "--debug", "serve", "--print-config")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0] for line in result.output.splitlines()[1:] if line[2] != " "}
    assert {"host", "port", "url_prefix", "reload", "debugger"} <= rows
    assert not rows & {"workers", "threads", "timeout", "access_log", "Not"} - {"Not"}
    note = " ".join(result.output.split("Not used by the dev server (see --prod):")[1].split())
    assert note.startswith("workers, threads, timeout, keepalive,")
    assert "access_log," in note
