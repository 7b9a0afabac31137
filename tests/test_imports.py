"""Backends are imported lazily: ``import flask_prodserve`` imports no server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flask_prodserve import backends


def modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(out.stdout.split())


def test_import_does_not_import_any_server() -> None:
    loaded = modules_after("import flask_prodserve")
    assert "flask_prodserve" in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("gunicorn", "waitress")}
    assert "prometheus_client" not in loaded  # only when metrics are on


def test_loading_the_serving_code_does_not_import_prometheus_client() -> None:
    loaded = modules_after("import flask_prodserve.serving, flask_prodserve.middleware")
    assert "flask_prodserve.metrics" in loaded
    assert "prometheus_client" not in loaded


def test_loading_the_pytest_plugin_does_not_import_any_server() -> None:
    # pytest loads it in every run, through the pytest11 entry point.
    loaded = modules_after("import flask_prodserve.pytest_plugin")
    assert not {m for m in loaded if m.split(".")[0] in ("gunicorn", "waitress")}
    assert "flask_prodserve.testing" not in loaded


def test_loading_the_cli_command_does_not_import_any_server() -> None:
    loaded = modules_after("from flask_prodserve.cli import serve_command")
    assert "gunicorn" not in loaded
    assert "waitress" not in loaded


@pytest.mark.parametrize("name", sorted(backends.MODULES))
def test_each_backend_loads_by_name(name: str) -> None:
    module = backends.load(name)
    assert module.__name__ == backends.MODULES[name]  # type: ignore[attr-defined]
    assert callable(module.run)
