"""The walls a student hits in the first hour with a CS50-style app.

Each row is a small app of its own, run as the student runs it: ``flask
serve`` in the app's folder. The row gives the exact lines printed and the
exit status, then does what the message says and checks that the next run
succeeds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .helpers import LiveServer, run_flask

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
    then_lines: list[str] | None = None  # what the run after the fix prints, if checked
    env: dict[str, str] = field(default_factory=dict)  # for both runs


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def run_wall(folder: Path, wall: Wall) -> None:
    _write(folder, wall.files)
    result = run_flask(folder, *wall.args, env=wall.env)
    output = (result.stdout + result.stderr).rstrip("\n").splitlines()
    assert (result.returncode, output) == (wall.status, wall.lines)
    _write(folder, wall.fix)
    after = run_flask(folder, *wall.then, env={**wall.env, **wall.fix_env})
    assert after.returncode == 0, after.stdout + after.stderr
    if wall.then_lines is not None:
        assert (after.stdout + after.stderr).rstrip("\n").splitlines() == wall.then_lines


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


# -- the app loads; what the checks say ------------------------------------------------

# An app that passes every check once SECRET_KEY is set, as the recipe says.
BASE = (
    "import os\n\n"
    "from flask import Flask, flash, redirect, render_template, request, session, url_for\n\n"
    "app = Flask(__name__)\n"
    'app.secret_key = os.environ["SECRET_KEY"]\n'
    'app.config["SESSION_COOKIE_SAMESITE"] = "Lax"\n'
    'app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024\n'
)
BIRTHDAYS = BASE + (
    '\n@app.route("/", methods=["GET", "POST"])\n'
    "def index():\n"
    '    if request.method == "POST":\n'
    '        return redirect("/")\n'
    '    return render_template("index.html")\n'
)
LAYOUT = (
    '<link href="/static/styles.css" rel="stylesheet">\n'
    '<form action="/" method="post"><button>Add</button></form>\n'
)
GOOD_LAYOUT = (
    "<link href=\"{{ url_for('static', filename='styles.css') }}\" rel=\"stylesheet\">\n"
    '<form action="{{ url_for(\'index\') }}" method="post"><button>Add</button></form>\n'
)
FROSHIMS = BASE + (
    "\nREGISTRANTS = {}\n\n\n"
    '@app.route("/register", methods=["POST"])\n'
    "def register():\n"
    '    REGISTRANTS[request.form["name"]] = request.form["sport"]\n'
    '    return redirect(url_for("registrants"))\n\n\n'
    '@app.route("/registrants")\n'
    "def registrants():\n"
    "    return dict(REGISTRANTS)\n"
)
LOGIN = FLASK_APP + (
    '\nfrom flask import session\n\n\n@app.route("/login")\ndef login():\n'
    '    session["user_id"] = 1\n    return "ok"\n'
)
CLEAN = "Checked app 'app' served by gunicorn on 127.0.0.1:8000: 0 errors, 0 warnings, 0 info."
RECIPE = (
    'make a key with python -c "import secrets; print(secrets.token_hex())", then set it in '
    "the shell that runs flask: export SECRET_KEY=the-printed-key (Windows PowerShell: "
    '$env:SECRET_KEY = "the-printed-key"); in app.py read it with app.secret_key = '
    'os.environ["SECRET_KEY"] (after import os)'
)
TWO_WORKERS = {**_RUN_SECRET, "WEB_CONCURRENCY": "2"}  # the same on every machine

CHECKS = [
    pytest.param(
        Wall(
            {"app.py": BIRTHDAYS, "templates/index.html": LAYOUT, "static/styles.css": ""},
            ["serve", "--check", "--url-prefix", "/shop"],
            1,
            [
                'PS505 error: app.py, line 13: redirect("/") leaves the URL prefix /shop; write '
                "redirect(url_for('index')). Fix: build each URL with url_for(), as shown, so "
                "that it carries the prefix.",
                'PS505 error: templates/index.html, line 1: href="/static/styles.css" leaves '
                "the URL prefix /shop; write href=\"{{ url_for('static', filename='styles.css') "
                '}}". Fix: build each URL with url_for(), as shown, so that it carries the '
                "prefix.",
                'PS505 error: templates/index.html, line 2: action="/" leaves the URL prefix '
                "/shop; write action=\"{{ url_for('index') }}\". Fix: build each URL with "
                "url_for(), as shown, so that it carries the prefix.",
                "Checked app 'app' served by gunicorn on 127.0.0.1:8000/shop: 3 errors, "
                "0 warnings, 0 info.",
            ],
            fix={
                "templates/index.html": GOOD_LAYOUT,
                "app.py": BIRTHDAYS.replace('redirect("/")', 'redirect(url_for("index"))'),
            },
            then=["serve", "--check", "--url-prefix", "/shop"],
            env=TWO_WORKERS,
        ),
        id="hand-written-urls-under-a-prefix",
    ),
    pytest.param(
        Wall(
            {"app.py": FROSHIMS},
            ["serve", "--check"],
            0,
            [
                "PS601 warning: REGISTRANTS in app.py, line 10 is a dict that the view "
                "register changes, but each of the 2 worker processes has its own copy, so "
                "visitors see different data from one request to the next. Fix: keep the data "
                "in a database (sqlite3, CS50's SQL, Flask-SQLAlchemy), which every process "
                "shares and which survives a restart; or serve one process: --workers 1.",
                "Checked app 'app' served by gunicorn on 127.0.0.1:8000: 0 errors, 1 warning, "
                "0 info.",
            ],
            then=["serve", "--check", "--workers", "1"],
            then_lines=[CLEAN],
            env=TWO_WORKERS,
        ),
        id="data-in-a-module-level-dict",
    ),
    pytest.param(
        Wall(
            {"app.py": BASE.replace('os.environ["SECRET_KEY"]', repr(SECRET))},
            ["serve", "--check"],
            0,
            [
                "PS206 warning: SECRET_KEY is written in app.py, line 6, so anyone who can "
                "read the code (on GitHub, say) can forge the app's session cookies. Fix: "
                f"{RECIPE}.",
                CLEAN.replace("0 warnings", "1 warning"),
            ],
            fix={"app.py": BASE},
            then_lines=[CLEAN],
            fix_env=_RUN_SECRET,
            env={"WEB_CONCURRENCY": "2"},
        ),
        id="secret-key-pasted-into-the-code",
    ),
    pytest.param(
        Wall(
            {"app.py": BASE.replace('os.environ["SECRET_KEY"]', '"dev"')},
            ["serve", "--prod"],
            1,
            [f"Error: PS202: SECRET_KEY is a well-known placeholder ('dev'). Fix: {RECIPE}."],
            fix={"app.py": BASE},
            then_lines=[CLEAN],
            fix_env=_RUN_SECRET,
            env={"WEB_CONCURRENCY": "2"},
        ),
        id="placeholder-secret-key",
    ),
    pytest.param(
        Wall(
            {"app.py": LOGIN},
            ["serve", "--check"],
            0,
            [
                "PS207 warning: app.py, line 10 uses session, but SECRET_KEY is not set, so "
                "every request that uses the session or flash answers 500 Internal Server "
                f"Error. Fix: {RECIPE}.",
                "PS401 warning: MAX_CONTENT_LENGTH is not set, so request bodies up to 1 GiB "
                'are accepted. Fix: add app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024 '
                "to the app (the largest upload you expect), or serve with --max-body-size.",
                "Checked app 'app' served by gunicorn on 127.0.0.1:8000: 0 errors, 2 warnings, "
                "0 info.",
            ],
            fix={"app.py": BASE + LOGIN.removeprefix(FLASK_APP)},
            then_lines=[CLEAN],
            fix_env=_RUN_SECRET,
            env={"WEB_CONCURRENCY": "2"},
        ),
        id="session-without-a-secret-key",
    ),
    pytest.param(
        Wall(
            {
                "app.py": BASE.replace(
                    'app.config["SESSION_COOKIE_SAMESITE"]', "SESSION_COOKIE_SAMESITE"
                )
            },
            ["serve", "--check"],
            0,
            [
                "PS213 warning: SESSION_COOKIE_SAMESITE is not set, so browsers send the "
                "session cookie with requests that other sites make. Fix: add "
                'app.config["SESSION_COOKIE_SAMESITE"] = "Lax" to the app.',
                CLEAN.replace("0 warnings", "1 warning"),
            ],
            fix={"app.py": BASE},
            then_lines=[CLEAN],
            env=TWO_WORKERS,
        ),
        id="config-line-without-app-config",
    ),
    pytest.param(
        Wall(
            {"app.py": BASE},
            ["serve", "-p", "8080", "-h", "127.0.0.2", "--check"],
            0,
            [CLEAN.replace("127.0.0.1:8000", "127.0.0.2:8080")],
            then=["serve", "--port", "8080", "--host", "127.0.0.2", "--check"],
            env=TWO_WORKERS,
        ),
        id="flask-run-short-options",
    ),
]


@pytest.mark.parametrize("wall", CHECKS)
def test_what_the_checks_say(tmp_path: Path, wall: Wall) -> None:
    run_wall(tmp_path, wall)


SERVE_FROM_PYTHON = FLASK_APP + (
    "\nif __name__ == '__main__':\n"
    "    import flask_prodserve\n\n"
    "    raise SystemExit(flask_prodserve.serve(app, prot=0))\n"
)


def test_serve_from_python_names_a_mistyped_option(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(SERVE_FROM_PYTHON)
    run_app = "import runpy; runpy.run_path('app.py', run_name='__main__')"
    result = run_flask(tmp_path, code=run_app)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "flask_prodserve.errors.ConfigError: serve(prot=...): unknown option; did you mean "
        "port? (got 0)."
    )


def test_fixed_app_works_under_a_prefix_in_one_process(tmp_path: Path) -> None:
    """Both fixes, served for real: every URL in the page carries the prefix and
    each request sees the data the previous one stored."""
    app = FROSHIMS + '\n\n@app.route("/")\ndef index():\n    return render_template("i.html")\n'
    _write(tmp_path, {"app.py": app, "templates/i.html": GOOD_LAYOUT, "static/styles.css": "b{}"})
    args = ["serve", "--prod", "--port", "0", "--url-prefix", "/shop", "--workers", "1"]
    server = LiveServer(args, tmp_path / "server.log", env={**_RUN_SECRET, "FLASK_APP": "app"})
    server.start_in(tmp_path)
    try:
        status, _, page = server.request("GET", "/shop/")
        assert status == 200
        assert re.findall(rb'(?:href|action)="([^"]*)"', page) == [
            b"/shop/static/styles.css",
            b"/shop/",
        ]
        assert server.request("GET", "/shop/static/styles.css")[0] == 200
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        for n in range(6):
            body = f"name=student{n}&sport=soccer".encode()
            status, headers, _ = server.request("POST", "/shop/register", form, body)
            assert (status, headers["location"]) == (302, "/shop/registrants")
            assert len(server.get_json("/shop/registrants")) == n + 1
    finally:
        assert server.terminate() == 0


def test_small_things_a_student_notices(tmp_path: Path) -> None:
    _write(tmp_path, {"app.py": BASE})
    dev = run_flask(tmp_path, "--debug", "serve", "--print-config", env=_RUN_SECRET)
    lines = dev.stdout.splitlines()
    assert dev.returncode == 0 and max(len(line) for line in lines) <= 80
    assert [line.split()[0] for line in lines[1:8]] == [
        "mode", "server", "host", "port", "url_prefix", "proxy", "upstream",
    ]  # fmt: skip
    assert (
        "  Not used by the dev server (see --prod): workers, threads, timeout, keepalive,"
    ) in lines
    args = ["serve", "--prod", "--port", "0", "--workers", "1", "--threads", "1"]
    server = LiveServer(args, tmp_path / "server.log", env={**_RUN_SECRET, "FLASK_APP": "app"})
    server.start_in(tmp_path)
    try:
        assert " * Workers: 1 process x 1 thread\n" in server.log
    finally:
        assert server.terminate() == 0
