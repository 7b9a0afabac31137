"""A newcomer's first hour: the README quick start works, and each likely
mistake gets one line that says what happened and what to do, never a traceback.

These run the real ``python -m flask`` in a temporary project directory.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.cli import FlaskGroup

from .helpers import ROOT, LiveServer, run_flask

HELLO = (
    "from flask import Flask\n\napp = Flask(__name__)\n\n"
    '@app.route("/")\ndef index():\n    return "Hello, World!"\n'
)
CONFIG_TYPO = HELLO + 'app.config["PRODSERVE_PORT"] = "eighty"\n'
WITH_EXTENSION = HELLO + (
    'app.config["PRODSERVE_URL_PREFIX"] = "a b"\n'
    "from flask_prodserve import ProdServe\nProdServe(app)\n"
)
# Pretend to be Windows once Flask and click are imported (their imports need the real value).
FAKE_WINDOWS = "import sys; from flask.cli import main; sys.platform = 'win32'; main()"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(HELLO)
    return tmp_path


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


MISTAKES = [
    pytest.param(
        None,
        {},
        [".flaskenv:"],
        ["serve"],
        1,
        r"Error: Could not locate a Flask application\. Use the 'flask --app' option, "
        r"'FLASK_APP' environment variable, or a 'wsgi\.py' or 'app\.py' file in the "
        r"current directory\.",
        id="no-app-found",
    ),
    pytest.param(
        HELLO,
        {},
        [],
        ["serve", "--prot", "80"],
        2,
        # click's own words, which changed in 8.2; both suggest --port.
        r"Error: No such option:? '?--prot'?\.? \((Did you mean one of|Possible options): "
        r".*'?--port'?.*\)",
        id="typo-in-an-option",
    ),
    pytest.param(
        HELLO,
        {},
        [],
        ["serve", "--port", "PORT_IN_USE"],
        1,
        r"Error: Port \d+ on 127\.0\.0\.1 is already in use by another program "
        r"\(port from --port\)\. Stop that program, or choose another port with --port\.",
        id="port-in-use",
    ),
    pytest.param(
        HELLO,
        {},
        [],
        ["--debug", "serve", "--prod"],
        1,
        r"Error: --prod: the app's debug flag is on, .* or serve with --dev\.",
        id="debug-with-prod",
    ),
    pytest.param(
        HELLO,
        {},
        [],
        ["serve", "--server", "gunicorn", "WINDOWS"],
        1,
        r"Error: --server: gunicorn does not run on Windows; use waitress \(or auto\)\.",
        id="gunicorn-on-windows",
    ),
    pytest.param(
        HELLO,
        {},
        [".flaskenv:FLASK_SERVE_PORT=eighty"],
        ["serve"],
        1,
        r"Error: FLASK_SERVE_PORT: expected a whole number from 0 to 65535, like 8000 "
        r"\(got 'eighty'\)\.",
        id="bad-value-in-flaskenv",
    ),
    pytest.param(
        CONFIG_TYPO,
        {},
        [],
        ["serve"],
        1,
        r"Error: app\.config\['PRODSERVE_PORT'\]: expected a whole number .*\(got "
        r"'eighty'\)\.",
        id="bad-value-in-app-config",
    ),
    pytest.param(
        WITH_EXTENSION,
        {},
        [],
        ["serve"],
        1,
        r"Error: app\.config\['PRODSERVE_URL_PREFIX'\]: expected a URL path such as "
        r"/app .*\(got 'a b'\)\.",
        id="bad-config-caught-by-init-app",
    ),
    pytest.param(
        HELLO,
        {"FLASK_SERVE_SERVER": "uwsgi"},
        [],
        ["serve"],
        1,
        r"Error: FLASK_SERVE_SERVER: expected one of auto, gunicorn, waitress "
        r"\(got 'uwsgi'\)\.",
        id="unknown-server",
    ),
]


@pytest.mark.parametrize(("source", "env", "files", "args", "status", "line"), MISTAKES)
def test_each_mistake_is_one_line(
    tmp_path: Path,
    busy_port: int,
    source: str | None,
    env: dict[str, str],
    files: list[str],
    args: list[str],
    status: int,
    line: str,
) -> None:
    if source is not None:
        (tmp_path / "app.py").write_text(source)
    for spec in files:
        name, _, text = spec.partition(":")
        (tmp_path / name).write_text(text + "\n")
    args = [str(busy_port) if a == "PORT_IN_USE" else a for a in args]
    code = FAKE_WINDOWS if "WINDOWS" in args else None
    args = [a for a in args if a != "WINDOWS"]
    result = run_flask(tmp_path, *args, env=env, code=code)
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == status, output
    assert len(output) == 1, output
    assert re.fullmatch(line, output[0]), output[0]


def test_readme_quick_start_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    app_source = re.search(r"```python\n(# app\.py\n.*?)```", readme, re.S)
    command = re.search(r"^(flask --app app serve --prod)\b", readme, re.M)
    assert app_source and command, "the README's quick start moved; update this test"
    (tmp_path / "app.py").write_text(app_source.group(1))
    server = LiveServer([*command.group(1).split()[1:], "--port", "0"], tmp_path / "server.log")
    server.env.pop("PYTHONPATH")
    server.start_in(tmp_path)
    try:
        status, _, body = server.request("GET", "/")
        assert (status, body) == (200, b"Hello, World!")
    finally:
        assert server.terminate() == 0


def test_app_run_left_at_the_bottom_does_not_block(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(HELLO + "\napp.run(debug=True)\n")
    server = LiveServer(["--app", "app", "serve", "--prod", "--port", "0"], tmp_path / "server.log")
    server.start_in(tmp_path)
    try:
        assert server.request("GET", "/")[0] == 200
        assert "Ignoring a call to 'app.run()'" in server.log
    finally:
        server.terminate()


def test_help_fits_80_columns_and_gives_examples() -> None:
    result = CliRunner().invoke(FlaskGroup(), ["serve", "--help"], terminal_width=80)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    examples = lines[lines.index("  Examples:") + 1 :][:2]
    assert all(line.strip().startswith("flask --app app") for line in examples)
    assert "FLASK_SERVE_PORT, PRODSERVE_PORT" in " ".join(result.output.split())
