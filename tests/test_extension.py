"""The extension: registration, early validation, factories, several apps."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_prodserve import ConfigError, ProdServe
from flask_prodserve.extension import lifecycle_for
from flask_prodserve.serving import config_for


@pytest.fixture
def app() -> Flask:
    """The app pytest-flask's ``client`` fixture uses."""
    app = Flask(__name__)
    ProdServe(app, url_prefix="/x")

    @app.route("/")
    def index() -> str:
        return "hi"

    return app


def test_registers_and_leaves_the_app_working(app: Flask, client: FlaskClient) -> None:
    assert isinstance(app.extensions["prodserve"], ProdServe)
    assert client.get("/").text == "hi"


def test_second_registration_is_refused_with_advice(app: Flask) -> None:
    with pytest.raises(RuntimeError, match=r"already registered.*once per app"):
        ProdServe(app)


def test_factory_pattern_and_several_apps() -> None:
    prodserve = ProdServe(port=9000)

    def create_app(**config: Any) -> Flask:
        app = Flask("factory")
        app.config.update(config)
        prodserve.init_app(app)
        return app

    one, two = create_app(), create_app(PRODSERVE_PORT=9001)
    assert one.extensions["prodserve"] is two.extensions["prodserve"] is prodserve
    assert not hasattr(prodserve, "app")
    assert config_for(one, {}, env={}).port == 9000
    assert config_for(two, {}, env={}).port == 9001  # config overrides the constructor


def test_bad_config_fails_at_init_app_naming_the_key() -> None:
    app = Flask("bad")
    app.config["PRODSERVE_THREADS"] = "lots"
    with pytest.raises(ConfigError, match=r"^app.config\['PRODSERVE_THREADS'\]: expected"):
        ProdServe(app)
    assert "prodserve" not in app.extensions


def test_config_typo_fails_at_init_app() -> None:
    app = Flask("typo")
    app.config["PRODSERVE_URL_PREFIXX"] = "/a"
    with pytest.raises(ConfigError, match="did you mean PRODSERVE_URL_PREFIX"):
        ProdServe(app)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"port": "x"}, r"ProdServe\(port=...\): expected"), ({"prot": 1}, "did you mean port")],
)
def test_bad_constructor_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ProdServe(**kwargs)


def test_without_the_extension_defaults_apply() -> None:
    assert config_for(Flask("plain"), {}, env={}).url_prefix == ""


def test_extension_defaults_reach_the_resolver(app: Flask) -> None:
    result = config_for(app, {}, env={})
    assert result.url_prefix == "/x"
    assert result.origins["url_prefix"].label == "ProdServe(url_prefix=...)"


def test_hook_decorators_register_and_return_the_function() -> None:
    prodserve = ProdServe()
    app = Flask("hooks")
    prodserve.init_app(app)
    calls: list[str] = []

    @prodserve.on_start
    def start(app: Flask) -> None:
        from flask import current_app

        calls.append(f"start {current_app.name}")  # runs inside an app context

    @prodserve.worker_init
    def init(app: Flask) -> None:
        calls.append("init")

    assert start.__name__ == "start"
    lifecycle = lifecycle_for(app)
    lifecycle.run("on_start")
    lifecycle.run("worker_init")
    lifecycle.run("on_stop")
    assert calls == ["start hooks", "init"]
    assert lifecycle_for(Flask("plain")).hooks.on_start == []
