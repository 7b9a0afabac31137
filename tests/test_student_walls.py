"""The walls a student hits in the first hour with a CS50-style app.

Each row is a small app of its own, run as the student runs it: ``flask
serve`` in the app's folder. The row gives the exact lines printed and the
exit status, then does what the message says and checks that the next run
succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import run_flask

FLASK_APP = "from flask import Flask\n\napp = Flask(__name__)\n"
SECRET = "0123456789abcdef" * 4  # what the recipe's python -c line prints, in shape
_RUN_SECRET = {"SECRET_KEY": SECRET}


@dataclass
class Wall:
    """An app's files, a command, what it prints; then the fix, and the command that
    must succeed (exit 0) once the fix is made."""

    files: dict[str, str]
    args: list[str]
    status: int
    lines: list[str]
    fix: dict[str, str] = field(default_factory=dict)
    fix_env: dict[str, str] = field(default_factory=dict)
    then: list[str] = field(default_factory=lambda: ["serve", "--check"])


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def run_wall(folder: Path, wall: Wall) -> None:
    _write(folder, wall.files)
    result = run_flask(folder, *wall.args)
    output = (result.stdout + result.stderr).rstrip("\n").splitlines()
    assert (result.returncode, output) == (wall.status, wall.lines)
    _write(folder, wall.fix)
    after = run_flask(folder, *wall.then, env=wall.fix_env)
    assert after.returncode == 0, after.stdout + after.stderr


FULL = "'flask serve --traceback' shows the full traceback."
CS50_IMPORT = FLASK_APP.replace("from flask", "from cs50 import SQL\nfrom flask")
LOADING = [
    pytest.param(
        Wall(
            {"app.py": CS50_IMPORT},
            [*args, "serve", *more],
            1,
            [
                "Error: app.py, line 1: no module named 'cs50' (from cs50 import SQL). Fix: "
                "pip install cs50 (and add it to requirements.txt); if cs50 is a file of your "
                f"own, put cs50.py next to app.py; {FULL}"
            ],
            fix={"cs50.py": "class SQL:\n    pass\n"},
        ),
        id=f"missing-package{'-'.join(['', *args, *more])}",
    )
    for args, more in [
        ([], ["--prod"]),
        ([], ["--check"]),
        ([], ["--print-config"]),
        (["--debug"], []),
    ]
] + [
    pytest.param(
        Wall(
            {"app.py": "from helpers import apology\n" + FLASK_APP, "helpers.py": "x = 1\n"},
            ["serve", "--prod"],
            1,
            [
                "Error: app.py, line 1: helpers.py defines no 'apology' (from helpers import "
                f"apology). Fix: check the spelling, or define apology in helpers.py; {FULL}"
            ],
            fix={"helpers.py": "def apology():\n    pass\n"},
        ),
        id="missing-name-in-own-module",
    ),
    pytest.param(
        Wall(
            {"app.py": FLASK_APP + '\n@app.route("/")\ndef index()\n    return "hi"\n'},
            ["serve", "--prod"],
            1,
            ["Error: app.py, line 6: SyntaxError: expected ':'", "    def index()", " " * 15 + "^"],
            fix={"app.py": FLASK_APP + '\n@app.route("/")\ndef index():\n    return "hi"\n'},
        ),
        id="syntax-error",
    ),
    pytest.param(
        Wall(
            {
                "app.py": "import helpers\n" + FLASK_APP + "RATE = helpers.rate()\n",
                "helpers.py": "def rate():\n    return 1 / 0\n",
            },
            ["serve", "--check"],
            1,
            [
                "Error: ZeroDivisionError: division by zero, while loading the app:",
                '  File "app.py", line 5, in <module>',
                "    RATE = helpers.rate()",
                '  File "helpers.py", line 2, in rate',
                "    return 1 / 0",
                f"({FULL[:-1]}.)",
            ],
            fix={"helpers.py": "def rate():\n    return 1 / 2\n"},
        ),
        id="exception-in-own-module",
    ),
    pytest.param(
        Wall(
            {"app.py": "import os\n" + FLASK_APP + 'app.secret_key = os.environ["SECRET_KEY"]\n'},
            ["serve", "--prod"],
            1,
            [
                "Error: app.py, line 5: the environment variable SECRET_KEY is not set. Fix: "
                'make a key with python -c "import secrets; print(secrets.token_hex())", then '
                "set it in the shell that runs flask: export SECRET_KEY=the-printed-key (Windows "
                'PowerShell: $env:SECRET_KEY = "the-printed-key").'
            ],
            fix_env=_RUN_SECRET,
        ),
        id="secret-key-not-exported",
    ),
    pytest.param(
        Wall(
            {"app.py": FLASK_APP},
            ["--app", "ap", "serve", "--check"],
            1,
            ["Error: Could not import 'ap'. Did you mean --app app?"],
            then=["--app", "app", "serve", "--check"],
        ),
        id="app-name-typo",
    ),
]


@pytest.mark.parametrize("wall", LOADING)
def test_loading_the_app(tmp_path: Path, wall: Wall) -> None:
    run_wall(tmp_path, wall)


def test_traceback_flag_shows_the_real_traceback(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(CS50_IMPORT)
    result = run_flask(tmp_path, "serve", "--traceback")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-3:] == [
        f'  File "{tmp_path / "app.py"}", line 1, in <module>',
        "    from cs50 import SQL",
        "ModuleNotFoundError: No module named 'cs50'",
    ]
