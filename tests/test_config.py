"""The option table and the precedence resolver, as tables."""

from __future__ import annotations

from typing import Any

import pytest

from flask_prodserve.config import (
    OPTIONS,
    Facts,
    Layer,
    ServeConfig,
    field_names,
    resolve,
)
from flask_prodserve.errors import ConfigError

LINUX = Facts(debug=False, platform="linux", cpus=4, gunicorn_importable=True)


def run(
    cli: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    config: dict[str, Any] | None = None,
    ext: dict[str, Any] | None = None,
    facts: Facts = LINUX,
) -> ServeConfig:
    return resolve(
        cli=cli or {}, env=env or {}, config=config or {}, extension=ext or {}, facts=facts
    )


ALL_LAYERS = {
    "cli": {"port": "1111"},
    "env": {"FLASK_SERVE_PORT": "2222"},
    "config": {"PRODSERVE_PORT": 3333},
    "ext": {"port": 4444},
}


def without(*names: str) -> dict[str, Any]:
    return {k: v for k, v in ALL_LAYERS.items() if k not in names}


@pytest.mark.parametrize(
    ("layers", "env_extra", "expected", "layer", "label"),
    [
        pytest.param(ALL_LAYERS, {}, 1111, Layer.CLI, "--port", id="cli-beats-env"),
        pytest.param(
            without("cli"), {}, 2222, Layer.ENV, "FLASK_SERVE_PORT", id="env-beats-config"
        ),
        pytest.param(
            without("cli", "env"),
            {},
            3333,
            Layer.CONFIG,
            "app.config['PRODSERVE_PORT']",
            id="config-beats-extension",
        ),
        pytest.param(
            without("cli", "env", "config"),
            {},
            4444,
            Layer.EXTENSION,
            "ProdServe(port=...)",
            id="extension-beats-default",
        ),
        pytest.param({}, {}, 8000, Layer.DEFAULT, "default for production mode", id="default-prod"),
        pytest.param(
            {},
            {"PORT": "5555"},
            5555,
            Layer.DEFAULT,
            "PORT environment variable",
            id="paas-port-is-the-default",
        ),
        pytest.param(
            without("cli", "env", "config"),
            {"PORT": "5555"},
            4444,
            Layer.EXTENSION,
            "ProdServe(port=...)",
            id="extension-beats-paas-port",
        ),
        pytest.param(
            without("cli"),
            {"PORT": "5555"},
            2222,
            Layer.ENV,
            "FLASK_SERVE_PORT",
            id="env-beats-paas-port",
        ),
    ],
)
def test_precedence(
    layers: dict[str, Any], env_extra: dict[str, str], expected: int, layer: Layer, label: str
) -> None:
    env = {**layers.get("env", {}), **env_extra}
    result = run(layers.get("cli"), env, layers.get("config"), layers.get("ext"))
    assert result.port == expected
    assert result.origins["port"].layer is layer
    assert result.origins["port"].label == label


def test_none_on_the_command_line_means_not_given() -> None:
    assert run(cli={"port": None}, env={"FLASK_SERVE_PORT": "2222"}).port == 2222


@pytest.mark.parametrize(
    ("cli", "facts", "mode", "server", "why"),
    [
        pytest.param({}, LINUX, "prod", "gunicorn", "auto: gunicorn is installed", id="auto-linux"),
        pytest.param(
            {},
            Facts(False, "win32", 4, False),
            "prod",
            "waitress",
            "auto: gunicorn does not run on Windows",
            id="auto-windows",
        ),
        pytest.param(
            {},
            Facts(False, "win32", 4, True),
            "prod",
            "waitress",
            "auto: gunicorn does not run on Windows",
            id="auto-windows-even-if-importable",
        ),
        pytest.param(
            {},
            Facts(False, "darwin", 4, False),
            "prod",
            "waitress",
            "auto: gunicorn is not installed",
            id="auto-no-gunicorn",
        ),
        pytest.param(
            {},
            Facts(True, "linux", 4, True),
            "dev",
            "werkzeug",
            "dev mode uses Werkzeug's dev server",
            id="debug-means-dev",
        ),
        pytest.param(
            {"mode": "dev"},
            LINUX,
            "dev",
            "werkzeug",
            "dev mode uses Werkzeug's dev server",
            id="forced-dev",
        ),
        pytest.param(
            {"server": "waitress"}, LINUX, "prod", "waitress", "--server", id="forced-waitress"
        ),
    ],
)
def test_auto_choices(cli: dict[str, Any], facts: Facts, mode: str, server: str, why: str) -> None:
    result = run(cli=cli, facts=facts)
    assert (result.mode, result.server) == (mode, server)
    assert result.origins["server"].label == why


@pytest.mark.parametrize(
    ("kwargs", "where", "problem"),
    [
        pytest.param(
            {"cli": {"server": "gunicorn"}, "facts": Facts(False, "win32", 2, False)},
            "--server",
            "gunicorn does not run on Windows",
            id="gunicorn-on-windows",
        ),
        pytest.param(
            {"config": {"PRODSERVE_SERVER": "gunicorn"}, "facts": Facts(False, "linux", 2, False)},
            "app.config['PRODSERVE_SERVER']",
            "pip install gunicorn",
            id="gunicorn-not-installed",
        ),
        pytest.param(
            {"env": {"FLASK_SERVE_SERVER": "uwsgi"}},
            "FLASK_SERVE_SERVER",
            "expected one of auto, gunicorn, waitress",
            id="unknown-server",
        ),
        pytest.param(
            {"env": {"FLASK_SERVE_PORT": "http"}},
            "FLASK_SERVE_PORT",
            "expected a whole number",
            id="bad-env-port",
        ),
        pytest.param(
            {"config": {"PRODSERVE_PORT": "x"}},
            "app.config['PRODSERVE_PORT']",
            "expected a whole number",
            id="bad-config-port",
        ),
        pytest.param(
            {"env": {"PORT": "abc"}}, "PORT", "expected a whole number", id="bad-paas-port"
        ),
        pytest.param(
            {"env": {"WEB_CONCURRENCY": "0"}},
            "WEB_CONCURRENCY",
            "expected a whole number from 1",
            id="bad-web-concurrency",
        ),
        pytest.param(
            {"cli": {"server": "waitress", "workers": 4}, "facts": Facts(False, "win32", 2, False)},
            "--workers",
            "waitress runs one process on Windows",
            id="waitress-workers-on-windows",
        ),
        pytest.param(
            {"cli": {"mode": "prod"}, "facts": Facts(True, "linux", 2, True)},
            "--mode",
            "debug flag is on",
            id="prod-with-debug",
        ),
        pytest.param(
            {"cli": {"mode": "prod", "reload": True}},
            "--reload",
            "only available in dev mode",
            id="reload-in-prod",
        ),
        pytest.param(
            {"config": {"PRODSERVE_DEBUGGER": True}},
            "app.config['PRODSERVE_DEBUGGER']",
            "only available in dev mode",
            id="debugger-in-prod",
        ),
        pytest.param(
            {"config": {"PRODSERVE_PROT": 1}},
            "PRODSERVE_PROT",
            "did you mean PRODSERVE_PORT?",
            id="config-typo",
        ),
        pytest.param(
            {"env": {"FLASK_SERVE_WORKER": "2"}},
            "FLASK_SERVE_WORKER",
            "did you mean FLASK_SERVE_WORKERS?",
            id="env-typo",
        ),
        pytest.param({"ext": {"prefix": "/a"}}, "prefix", "unknown setting", id="extension-typo"),
    ],
)
def test_errors_name_the_value_and_its_source(
    kwargs: dict[str, Any], where: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        run(**kwargs)
    assert info.value.where == where
    assert problem in str(info.value)
    assert str(info.value).startswith(f"{where}: ")


def test_waitress_ignores_default_workers_and_web_concurrency() -> None:
    result = run(cli={"server": "waitress"}, env={"WEB_CONCURRENCY": "8"})
    assert (result.workers, result.threads) == (1, 32)


@pytest.mark.parametrize(
    ("env", "facts", "workers", "label"),
    [
        pytest.param({}, LINUX, 4, "one per usable CPU (4 CPUs)", id="cpus"),
        pytest.param(
            {"WEB_CONCURRENCY": "3"},
            LINUX,
            3,
            "WEB_CONCURRENCY environment variable",
            id="web-concurrency",
        ),
        pytest.param(
            {"WEB_CONCURRENCY": "3", "FLASK_SERVE_WORKERS": "5"},
            LINUX,
            5,
            "FLASK_SERVE_WORKERS",
            id="env-beats-web-concurrency",
        ),
    ],
)
def test_workers_default(env: dict[str, str], facts: Facts, workers: int, label: str) -> None:
    result = run(env=env, facts=facts)
    assert result.workers == workers
    assert result.origins["workers"].label == label


@pytest.mark.parametrize(
    ("facts", "cli", "expected"),
    [
        pytest.param(Facts(True, "linux", 2, True), {}, (True, True), id="debug-on"),
        pytest.param(
            Facts(True, "linux", 2, True), {"reload": False}, (False, True), id="no-reload"
        ),
        pytest.param(
            Facts(False, "linux", 2, True), {"mode": "dev"}, (False, False), id="dev-without-debug"
        ),
        pytest.param(LINUX, {}, (False, False), id="prod"),
    ],
)
def test_reload_and_debugger_follow_debug(
    facts: Facts, cli: dict[str, Any], expected: tuple[bool, bool]
) -> None:
    result = run(cli=cli, facts=facts)
    assert (result.reload, result.debugger) == expected


def test_paas_port_binds_every_interface_in_production_only() -> None:
    assert run(env={"PORT": "9000"}).host == "0.0.0.0"
    assert run(env={"PORT": "9000"}, facts=Facts(True, "linux", 2, True)).host == "127.0.0.1"
    assert run(env={"PORT": "9000"}, cli={"host": "127.0.0.1"}).host == "127.0.0.1"


def test_dev_port_default() -> None:
    assert run(cli={"mode": "dev"}).port == 5000


def test_prefix_is_normalised_from_every_layer() -> None:
    assert run(config={"PRODSERVE_URL_PREFIX": "app/"}).url_prefix == "/app"
    assert run(env={"FLASK_SERVE_URL_PREFIX": "/"}).url_prefix == ""


def test_unrelated_environment_is_ignored() -> None:
    assert run(env={"FLASK_DEBUG": "1", "FLASK_APP": "x", "HOME": "/root"}).mode == "prod"


def test_table_and_dataclass_agree() -> None:
    assert [o.name for o in OPTIONS] == field_names()


def test_names_derive_from_the_option() -> None:
    option = next(o for o in OPTIONS if o.name == "url_prefix")
    assert (option.flag, option.env, option.config_key) == (
        "--url-prefix",
        "FLASK_SERVE_URL_PREFIX",
        "PRODSERVE_URL_PREFIX",
    )


def test_rows_report_every_value_and_source() -> None:
    rows = run(cli={"port": 1}).rows()
    assert [r[0] for r in rows] == field_names()
    assert ("port", 1, "--port") in rows


def test_server_options_from_env_json() -> None:
    result = run(env={"FLASK_SERVE_SERVER_OPTIONS": '{"keepalive": 10}'})
    assert result.server_options == {"keepalive": 10}


def test_max_requests_needs_fork() -> None:
    windows = Facts(debug=False, platform="win32", cpus=2, gunicorn_importable=False)
    with pytest.raises(ConfigError, match="cannot recycle it"):
        run(cli={"server": "waitress", "max_requests": 10}, facts=windows)
    # One process reloads inside itself (flask_prodserve.swapping).
    alone = run(cli={"server": "waitress", "reload_file": "deploy/reload"}, facts=windows)
    assert alone.reload_file == "deploy/reload"
    for server in ("waitress", "gunicorn"):
        assert run(cli={"server": server, "max_requests": 10}).max_requests == 10
    assert run(cli={"server": "waitress", "workers": 3}).workers == 3


def test_production_only_settings_do_not_stop_dev_mode() -> None:
    debug = Facts(debug=True, platform="linux", cpus=2, gunicorn_importable=True)
    result = run(config={"PRODSERVE_MAX_REQUESTS": 100, "PRODSERVE_WORKERS": 4}, facts=debug)
    assert (result.mode, result.server) == ("dev", "werkzeug")


@pytest.mark.parametrize(
    ("kw", "expected", "label"),
    [
        pytest.param({}, True, "default in production", id="on-in-prod"),
        pytest.param(
            {"cli": {"mode": "dev"}},
            False,
            "off in dev mode: Flask's own static route sees every change at once",
            id="off-in-dev",
        ),
        pytest.param(
            {"env": {"FLASK_SERVE_STATIC_FILES": "0"}},
            False,
            "FLASK_SERVE_STATIC_FILES",
            id="env-turns-off",
        ),
        pytest.param(
            {"config": {"PRODSERVE_STATIC_FILES": False}},
            False,
            "app.config['PRODSERVE_STATIC_FILES']",
            id="config-turns-off",
        ),
        pytest.param(
            {"cli": {"static_files": True}, "config": {"PRODSERVE_STATIC_FILES": False}},
            True,
            "--static-files",
            id="cli-beats-config",
        ),
        pytest.param(
            {"env": {"FLASK_SERVE_STATIC_FILES": "yes"}, "ext": {"static_files": False}},
            True,
            "FLASK_SERVE_STATIC_FILES",
            id="env-beats-extension",
        ),
    ],
)
def test_static_files(kw: dict[str, Any], expected: bool, label: str) -> None:
    result = run(**kw)
    assert result.static_files is expected
    assert result.origins["static_files"].label == label


@pytest.mark.parametrize(
    ("kw", "expected", "label"),
    [
        pytest.param({}, True, "default", id="on-by-default"),
        pytest.param(
            {"env": {"FLASK_SERVE_SHARE_CONNECTIONS": "no"}},
            False,
            "FLASK_SERVE_SHARE_CONNECTIONS",
            id="env-turns-off",
        ),
        pytest.param(
            {"cli": {"share_connections": True}, "config": {"PRODSERVE_SHARE_CONNECTIONS": False}},
            True,
            "--share-connections",
            id="cli-beats-config",
        ),
        pytest.param(
            {"ext": {"share_connections": False}},
            False,
            "ProdServe(share_connections=...)",
            id="extension-turns-off",
        ),
    ],
)
def test_share_connections(kw: dict[str, Any], expected: bool, label: str) -> None:
    result = run(**kw)
    assert result.share_connections is expected
    assert result.origins["share_connections"].label == label
