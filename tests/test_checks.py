"""Production-readiness checks: each check on a passing and a failing app,
the prefix self-test's promises, ``flask serve --check``, and start-up."""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask, request
from flask.cli import FlaskGroup
from flask.sessions import SecureCookieSessionInterface, SessionInterface
from werkzeug.debug import DebuggedApplication
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_prodserve import backends, checks, pagescan, serving, sockets, sourcescan
from flask_prodserve.config import ServeConfig
from flask_prodserve.converters import as_check_ids
from flask_prodserve.errors import ConfigError
from flask_prodserve.middleware import access_logger

from .helpers import ROOT, run_flask

GOOD_KEY = secrets.token_hex(32)
RECIPE = checks.SECRET_KEY_RECIPE
BODY_LIMIT_FIX = (
    'add app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024 to the app (the largest upload '
    "you expect), or serve with --max-body-size"
)
STATIC = str(Path(__file__).parent / "live_apps")  # any existing folder
NO_SOURCE = str(Path(__file__).parent / "live_apps" / "static")  # no .py file, no template


def good_app(
    name: str = "demo", cls: type[Flask] = Flask, root: str = NO_SOURCE, **config: Any
) -> Flask:
    """An app that passes every check, whatever the settings; its source and
    templates are the files in ``root`` (by default, none)."""
    app = cls(
        name, static_folder=STATIC, static_url_path="/static", root_path=root, instance_path=root
    )
    app.config.update(
        SECRET_KEY=GOOD_KEY,
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
        TRUSTED_HOSTS=["example.com"],
    )
    app.config.update(config)
    app.add_url_rule("/", "index", lambda: "index")
    app.add_url_rule("/about/", "about", lambda: "about")
    return app


@dataclass
class Setup:
    """An app's config changes, a wrapper for ``app.wsgi_app``, and options."""

    config: dict[str, Any] = field(default_factory=dict)
    wrap: Callable[[Flask], Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # the app's source and templates

    def run(self) -> dict[str, list[str]]:
        """The messages of each failed check, by ID."""
        with tempfile.TemporaryDirectory() as root:
            for name, text in self.files.items():
                (Path(root) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(root) / name).write_text(text)
            app = good_app(root=root if self.files else NO_SOURCE, **self.config)
            if self.wrap:
                app.wsgi_app = self.wrap(app)  # type: ignore[method-assign]
            cwd = os.getcwd()
            os.chdir(root)  # file names are shown relative to the app's folder
            try:
                return found(app, **self.options)
            finally:
                os.chdir(cwd)


def found(app: Flask, **options: Any) -> dict[str, list[str]]:
    config = serving.config_for(app, options, env={})
    result: dict[str, list[str]] = {}
    for problem in checks.run_checks(app, config):
        result.setdefault(problem.id, []).append(problem.message)
    return result


def S(
    config: dict[str, Any] | None = None,
    wrap: Any = None,
    files: dict[str, str] | None = None,
    **options: Any,
) -> Setup:
    return Setup(config or {}, wrap, options, files or {})


def with_page(html: str) -> Callable[[Flask], Any]:
    """A wrap that adds a page ``/page`` answering ``html`` (built at run time)."""

    def wrap(app: Flask) -> Any:
        app.add_url_rule("/page", "page", lambda: html)
        return app.wsgi_app

    return wrap


FROSHIMS = (
    "from flask import Flask, redirect, session\n"
    "app = Flask(__name__)\n"
    "REGISTRANTS = {}\n"
    "@app.route('/register', methods=['POST'])\n"
    "def register():\n"
    "    REGISTRANTS['a'] = 'soccer'\n"
    "    session['name'] = 'a'\n"
    "    return redirect('/about/')\n"
)
LAYOUT = '<link href="/static/x.css">\n<a href="{{ url_for(\'index\') }}">Home</a>\n'
GOOD_LAYOUT = "<link href=\"{{ url_for('static', filename='x.css') }}\">\n"


def debugged_admin() -> Flask:
    admin = Flask("admin")
    admin.wsgi_app = DebuggedApplication(admin.wsgi_app)  # type: ignore[method-assign]
    return admin


class ClearScriptName:
    """Middleware that drops the prefix the mount passes in ``SCRIPT_NAME``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ["SCRIPT_NAME"] = ""
        return self.app(environ, start_response)  # type: ignore[no-any-return]


def static_in_root(app: Flask) -> Any:
    """A wrap that moves the static folder to ``static/`` in the app's (temporary) folder."""
    app.static_folder = os.path.join(app.root_path, "static")
    return app.wsgi_app


SHOP: dict[str, Any] = {"url_prefix": "/shop"}
PUBLIC: dict[str, Any] = {"host": "0.0.0.0", "proxy": "1,10.0.0.5"}

# (check ID, failing setup, text in its message, passing setup)
TABLE = [
    ("PS101", S({"DEBUG": True}), "app.debug is True", S()),
    (
        "PS102",
        S(wrap=lambda app: ProxyFix(DebuggedApplication(app.wsgi_app))),
        "app.wsgi_app.app is Werkzeug's DebuggedApplication",
        S(wrap=lambda app: ProxyFix(app.wsgi_app)),
    ),
    (
        "PS102",
        S(wrap=lambda app: DispatcherMiddleware(app.wsgi_app, {"/admin": debugged_admin()})),
        "app.wsgi_app.mounts['/admin'].wsgi_app is Werkzeug's DebuggedApplication",
        S(wrap=lambda app: DispatcherMiddleware(app.wsgi_app, {"/admin": Flask("admin")})),
    ),
    ("PS103", S(mode="dev"), "development server would serve the app (--mode)", S(mode="prod")),
    ("PS201", S({"SECRET_KEY": None}), "SECRET_KEY is not set", S()),
    ("PS202", S({"SECRET_KEY": "dev"}), "SECRET_KEY is a well-known placeholder ('dev')", S()),
    (
        "PS202",
        S({"SECRET_KEY_FALLBACKS": [GOOD_KEY, "Change-Me-" + GOOD_KEY]}),
        "SECRET_KEY_FALLBACKS[1] contains 'changeme', like a placeholder",
        S({"SECRET_KEY_FALLBACKS": [GOOD_KEY]}),
    ),
    ("PS203", S({"SECRET_KEY": "ab" * 20}), "uses only 2 different characters", S()),
    ("PS204", S({"SECRET_KEY": "k3j4h5g6f7"}), "SECRET_KEY is only 10 bytes long", S()),
    (
        "PS204",
        S({"SECRET_KEY": os.urandom(8)}),
        "SECRET_KEY is only 8 bytes long",
        S({"SECRET_KEY": os.urandom(32)}),
    ),
    (
        "PS205",
        S({"SECRET_KEY": secrets.token_hex(12)}),
        "SECRET_KEY is 24 bytes long",
        S({"SECRET_KEY": secrets.token_hex(16)}),
    ),
    (
        "PS211",
        S({"SESSION_COOKIE_SECURE": False}, proxy="1"),
        "over plain http (this matters if your proxy serves https; proxy set by --proxy)",
        S({"SESSION_COOKIE_SECURE": False}),  # plain http, no proxy: Secure would break it
    ),
    (
        "PS211",
        S({"SESSION_COOKIE_SECURE": False, "PREFERRED_URL_SCHEME": "https"}),
        "(PREFERRED_URL_SCHEME is 'https')",
        S({"PREFERRED_URL_SCHEME": "https"}),
    ),
    (
        "PS212",
        S({"SESSION_COOKIE_HTTPONLY": False}),
        "SESSION_COOKIE_HTTPONLY is False",
        S({"SESSION_COOKIE_HTTPONLY": False, "SECRET_KEY": None}),  # no session cookie
    ),
    (
        "PS206",
        S(files={"app.py": f"app.secret_key = {GOOD_KEY!r}\n"}),
        "SECRET_KEY is written in app.py, line 1, so anyone who can read the code",
        S(files={"app.py": "app.secret_key = os.environ['SECRET_KEY']\n"}),
    ),
    (
        "PS207",
        S({"SECRET_KEY": None}, files={"app.py": FROSHIMS}),
        "app.py, line 7 uses session, but SECRET_KEY is not set, so every request",
        S(files={"app.py": FROSHIMS}),
    ),
    (
        "PS207",
        S({"SECRET_KEY": None}, files={"templates/a.html": "{{ get_flashed_messages() }}"}),
        "templates/a.html, line 1 uses get_flashed_messages, but SECRET_KEY is not set",
        S({"SECRET_KEY": None}, files={"templates/a.html": "{{ messages }}"}),
    ),
    ("PS213", S({"SESSION_COOKIE_SAMESITE": None}), "SESSION_COOKIE_SAMESITE is not set", S()),
    (
        "PS301",
        S({"TRUSTED_HOSTS": None}, **PUBLIC),
        "TRUSTED_HOSTS is not set and the server listens on 0.0.0.0 (--host)",
        S({"TRUSTED_HOSTS": None}),  # loopback
    ),
    (
        "PS302",
        S(host="::"),
        "The server listens on :: (--host) and trusts no proxy",
        S(**PUBLIC),
    ),
    (
        "PS303",
        S(host="203.0.113.7", proxy="1"),
        "proxy is 1 hop from any address (--proxy) and the server listens on 203.0.113.7",
        S(**PUBLIC),
    ),
    (
        "PS304",
        S(**PUBLIC, metrics_path="/metrics"),
        "metrics_path is /metrics (--metrics-path) and the server listens on 0.0.0.0",
        S(**PUBLIC, metrics_path="/metrics", metrics_allow="10.0.0.7"),
    ),
    (
        "PS401",
        S({"MAX_CONTENT_LENGTH": None}),
        "MAX_CONTENT_LENGTH is not set, so request bodies up to 1 GiB are accepted",
        S({"MAX_CONTENT_LENGTH": None}, max_body_size="10M"),
    ),
    (
        "PS501",
        S(wrap=lambda app: ClearScriptName(app.wsgi_app), **SHOP),
        "url_for('index') is '/', outside the URL prefix /shop",
        S(**SHOP),
    ),
    (
        "PS502",
        S(wrap=lambda app: ClearScriptName(app.wsgi_app), **SHOP),
        "The redirect from /shop is 'http://example.com/', outside the URL prefix /shop",
        S(**SHOP),
    ),
    (
        "PS503",
        S(wrap=lambda app: ClearScriptName(app.wsgi_app), **SHOP),
        "url_for('static', ...) is '/static/style.css', outside the URL prefix /shop",
        S(**SHOP),
    ),
    (
        "PS505",
        S(files={"templates/layout.html": LAYOUT}, **SHOP),
        'templates/layout.html, line 1: href="/static/x.css" leaves the URL prefix /shop; '
        "write href=\"{{ url_for('static', filename='x.css') }}\"",
        S(files={"templates/layout.html": GOOD_LAYOUT}, **SHOP),
    ),
    (
        "PS505",
        S(files={"app.py": FROSHIMS}, **SHOP),
        'app.py, line 8: redirect("/about/") leaves the URL prefix /shop; write '
        "redirect(url_for('about'))",
        S(files={"app.py": FROSHIMS}),  # no prefix: root-relative URLs work
    ),
    (
        "PS506",
        S(wrap=with_page('<a href="/ab' + 'out/">'), **SHOP),
        'GET /shop/page answers with <a href="/about/">, outside the URL prefix /shop',
        S(wrap=with_page('<a href="about/"><a href="/shop/about/">'), **SHOP),
    ),
    (
        "PS601",
        S(files={"app.py": FROSHIMS}, server="gunicorn", workers=4),
        "REGISTRANTS in app.py, line 3 is a dict that the view register changes, but each "
        "of the 4 worker processes (set by --workers) has its own copy",
        S(files={"app.py": FROSHIMS}, server="gunicorn", workers=1),
    ),
    (
        "PS504",
        S({"SESSION_COOKIE_PATH": "/"}, **SHOP),
        "The session cookie path (from SESSION_COOKIE_PATH) is '/', outside the URL prefix",
        S(**SHOP),
    ),
    (
        "PS504",
        S({"APPLICATION_ROOT": "/other"}, **SHOP),
        "The session cookie path (from APPLICATION_ROOT) is '/other'",
        S({"APPLICATION_ROOT": "/shop"}, **SHOP),
    ),
    (
        "PS701",
        S(server="gunicorn", server_options={"certfile": "cert.pem"}),
        "TLS (certfile) is served by gunicorn's own worker, so gunicorn's own gthread worker "
        "serves, without flask-prodserve's request-head deadline",
        S(server="gunicorn"),
    ),
    (
        "PS801",
        S(files={"static/site.css": "a { color: red; }\n" * 1000}, wrap=static_in_root),
        "1 text file of 10 KiB or more has no .gz or .br variant (static/site.css)",
        S(
            files={"static/site.css": "a {}\n" * 5000, "static/site.css.gz": "."},
            wrap=static_in_root,
        ),
    ),
    (
        "PS802",
        S(files={"static/site.js": "f();\n" * 30000}, wrap=static_in_root),
        "The static folders hold 146 KiB of CSS and JavaScript in 1 file, none with a",
        S(files={"static/site.0a1b2c3d.js": "f();\n" * 30000}, wrap=static_in_root),
    ),
]


def _ids(table: list[Any]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for row in table:
        seen[row[0]] = seen.get(row[0], 0) + 1
        out.append(row[0] if seen[row[0]] == 1 else f"{row[0]}-{seen[row[0]]}")
    return out


@pytest.mark.parametrize(("check_id", "failing", "message", "passing"), TABLE, ids=_ids(TABLE))
def test_check_fails_and_passes(
    check_id: str, failing: Setup, message: str, passing: Setup
) -> None:
    failed = failing.run()
    assert check_id in failed, failed
    assert any(message in m for m in failed[check_id]), failed[check_id]
    assert check_id not in passing.run()


def test_table_covers_every_check() -> None:
    assert {row[0] for row in TABLE} == set(checks.CHECK_BY_ID)


def test_every_check_is_documented_in_one_line() -> None:
    for check in checks.CHECKS:
        assert re.fullmatch(r"PS[1-8]\d\d", check.id)
        assert check.title.endswith(".") and "\n" not in check.title
        assert check.fix and not check.fix.endswith(".") and "\n" not in check.fix


def test_a_correct_production_app_passes() -> None:
    # Public address, a proxy with its address listed, a prefix: nothing to report.
    assert found(good_app(), **PUBLIC, **SHOP) == {}


def test_sizes_in_words() -> None:
    assert "SECRET_KEY is only 1 byte long" in found(good_app(SECRET_KEY="x"))["PS204"]
    limit = found(good_app(MAX_CONTENT_LENGTH=None), max_body_size=1)
    assert "PS401" not in limit  # an explicit limit is a choice
    assert checks.weakness("k" * 40) == ("PS203", "uses only 1 different character")


def test_secret_keys_never_appear_in_messages() -> None:
    keys = ["my-long-secret-key-for-production-42", "ab" * 20, "k3j4h5g6f7", "q" * 12 + "wxyz"]
    for key in keys:
        messages = " ".join(m for ms in found(good_app(SECRET_KEY=key)).values() for m in ms)
        assert "SECRET_KEY" in messages
        assert key not in messages


def test_trusted_hosts_answers_other_hosts_with_400() -> None:
    # What the PS301 fix promises, with the installed Flask.
    client = good_app().test_client()
    assert client.get("/", headers={"Host": "example.com"}).status_code == 200
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400


class _NoSessions(SecureCookieSessionInterface):
    def open_session(self, app: Flask, request: Any) -> Any:
        raise AssertionError("the self-test opened a session (a database in real backends)")


def test_prefix_self_test_runs_no_hook_and_changes_nothing() -> None:
    app = good_app()
    app.session_interface = _NoSessions()
    calls: list[str] = []
    app.before_request(lambda: calls.append(request.path))
    app.wsgi_app = ProxyFix(app.wsgi_app)  # type: ignore[method-assign]
    before = (dict(app.config), list(app.url_map.iter_rules()), dict(vars(app)))
    assert found(app, **SHOP, ignore_checks="PS506") == {}  # PS506 runs the GET views
    assert calls == []
    assert (dict(app.config), list(app.url_map.iter_rules()), dict(vars(app))) == before


def test_prefix_self_test_when_middleware_answers_by_itself() -> None:
    app = good_app()

    def maintenance(environ: Any, start_response: Any) -> list[bytes]:
        start_response("503 Service Unavailable", [])
        return [b"down for maintenance"]

    app.wsgi_app = maintenance  # type: ignore[method-assign]
    assert found(app, **SHOP) == {}  # what the mount passes on is checked instead


class CdnFlask(Flask):
    def url_for(self, endpoint: str, /, **values: Any) -> str:  # type: ignore[override]
        if endpoint == "static":
            return f"https://cdn.example.net/static/{values['filename']}"
        return super().url_for(endpoint, **values)


def test_static_files_on_another_host_are_not_judged() -> None:
    assert found(good_app(cls=CdnFlask), **SHOP) == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("ps301, PS303", "PS301,PS303", id="text"),
        pytest.param(["PS401", "ps401"], "PS401", id="list-deduplicated"),
        pytest.param("", "", id="empty"),
    ],
)
def test_ignore_checks_converter(value: Any, expected: str) -> None:
    assert as_check_ids(value) == expected


@pytest.mark.parametrize("value", ["PS1", "301", 5, ["PS301", 3]])
def test_ignore_checks_converter_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match="expected check IDs such as PS301,PS303"):
        as_check_ids(value)


def test_ignored_checks_are_skipped_and_unknown_ones_named() -> None:
    app = good_app(SECRET_KEY="dev", PRODSERVE_IGNORE_CHECKS=["PS202"])
    assert found(app) == {}
    app.config["PRODSERVE_IGNORE_CHECKS"] = "PS202,PS999"
    with pytest.raises(ConfigError) as info:
        found(app)
    assert str(info.value) == (
        "app.config['PRODSERVE_IGNORE_CHECKS']: there is no check PS999 (got 'PS202,PS999')."
    )


# -- the command line ----------------------------------------------------------


class FakeBackend:
    def __init__(self) -> None:
        self.calls: list[ServeConfig] = []

    def check_options(self, config: ServeConfig) -> None:
        pass

    def run(
        self, wsgi_app: Any, sock: socket.socket, config: ServeConfig, lifecycle: Any, events: Any
    ) -> int:
        events.started()
        self.calls.append(config)
        return 0


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> FakeBackend:
    fake = FakeBackend()
    monkeypatch.setattr(backends, "load", lambda name: fake)
    monkeypatch.setattr(access_logger, "handlers", [])
    monkeypatch.setattr(access_logger, "propagate", True)
    monkeypatch.setattr(access_logger, "level", logging.NOTSET)
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "false")
    for name in ("FLASK_DEBUG", "PORT", "WEB_CONCURRENCY", "FLASK_APP"):
        monkeypatch.delenv(name, raising=False)
    return fake


@pytest.fixture
def no_bind(monkeypatch: pytest.MonkeyPatch, backend: FakeBackend) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("bound a socket")

    monkeypatch.setattr(sockets, "bind", refuse)


def invoke(app: Flask, *args: str, env: dict[str, str] | None = None) -> Result:
    group = FlaskGroup(create_app=lambda: app)
    return CliRunner().invoke(group, list(args), env=env, prog_name="flask", catch_exceptions=False)


SUMMARY = "Checked app 'demo' served by waitress on 127.0.0.1:8000: "
WAITRESS = ("serve", "--server", "waitress")


@pytest.mark.usefixtures("no_bind")
@pytest.mark.parametrize(
    ("config", "args", "lines", "status"),
    [
        pytest.param({}, [], ["0 errors, 0 warnings, 0 info."], 0, id="clean"),
        pytest.param(
            {"SECRET_KEY": "dev", "MAX_CONTENT_LENGTH": None},
            [],
            [
                f"PS202 error: SECRET_KEY is a well-known placeholder ('dev'). Fix: {RECIPE}.",
                "PS401 warning: MAX_CONTENT_LENGTH is not set, so request bodies up to 1 GiB "
                f"are accepted. Fix: {BODY_LIMIT_FIX}.",
                "1 error, 1 warning, 0 info.",
            ],
            1,
            id="error",
        ),
        pytest.param(
            {"SESSION_COOKIE_SAMESITE": None},
            [],
            ["PS213 warning:", "0 errors, 1 warning, 0 info."],
            0,
            id="warning",
        ),
        pytest.param(
            {"SESSION_COOKIE_SAMESITE": None},
            ["--fail-level", "warning"],
            ["PS213 warning:", "0 errors, 1 warning, 0 info."],
            1,
            id="warning-at-fail-level-warning",
        ),
        pytest.param(
            {"SECRET_KEY": None},
            ["--fail-level", "warning"],
            ["PS201 info:", "0 errors, 0 warnings, 1 info."],
            0,
            id="info-at-fail-level-warning",
        ),
        pytest.param(
            {"SECRET_KEY": None},
            ["--fail-level", "INFO"],
            ["PS201 info:", "0 errors, 0 warnings, 1 info."],
            1,
            id="info-at-fail-level-info",
        ),
        pytest.param(
            {"MAX_CONTENT_LENGTH": None, "PRODSERVE_IGNORE_CHECKS": "PS401"},
            [],
            ["0 errors, 0 warnings, 0 info; ignored: PS401."],
            0,
            id="ignored",
        ),
    ],
)
def test_check_command(
    config: dict[str, Any], args: list[str], lines: list[str], status: int
) -> None:
    """Each line of the report starts as expected; the last is the summary."""
    result = invoke(good_app(**config), *WAITRESS, "--check", *args)
    assert result.exit_code == status, result.output
    output = result.output.splitlines()
    assert output[-1].startswith(SUMMARY)
    output[-1] = output[-1].removeprefix(SUMMARY)
    assert len(output) == len(lines), output
    for line, expected in zip(output, lines, strict=True):
        assert line.startswith(expected), (line, expected)


def test_check_uses_every_source_of_settings(no_bind: None) -> None:
    app = good_app(TRUSTED_HOSTS=None, PRODSERVE_PROXY="1,10.0.0.5")
    result = invoke(app, *WAITRESS, "--check", env={"FLASK_SERVE_HOST": "0.0.0.0"})
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "PS301 warning: TRUSTED_HOSTS is not set and the server listens on 0.0.0.0 "
        "(FLASK_SERVE_HOST), so the app accepts any Host header. Fix: add "
        'app.config["TRUSTED_HOSTS"] = ["example.com"] to the app (your domain names): '
        "Flask 3.1 then answers requests for any other Host with 400.",
        "Checked app 'demo' served by waitress on 0.0.0.0:8000: 0 errors, 1 warning, 0 info.",
    ]


def test_check_with_debug_reports_the_dev_server(no_bind: None) -> None:
    result = invoke(good_app(), "--debug", "serve", "--check")
    assert result.exit_code == 1
    assert [line[:11] for line in result.output.splitlines()[:2]] == ["PS101 error", "PS103 error"]
    assert "served by Werkzeug's dev server on 127.0.0.1:5000: 2 errors" in result.output


@pytest.mark.parametrize(
    ("args", "env", "status", "line"),
    [
        pytest.param(
            ["--fail-level", "info"],
            {},
            2,
            "Error: --fail-level applies only with --check. (see 'flask serve --help')",
            id="fail-level-without-check",
        ),
        pytest.param(
            ["--check"],
            {"FLASK_SERVE_IGNORE_CHECKS": "PS999"},
            1,
            "Error: FLASK_SERVE_IGNORE_CHECKS: there is no check PS999 (got 'PS999').",
            id="unknown-check-id",
        ),
    ],
)
def test_check_mistakes_are_one_line(
    no_bind: None, args: list[str], env: dict[str, str], status: int, line: str
) -> None:
    result = invoke(good_app(), *WAITRESS, *args, env=env)
    assert (result.exit_code, result.output.splitlines()) == (status, [line])


def test_production_banner_shows_warnings(backend: FakeBackend) -> None:
    app = good_app(MAX_CONTENT_LENGTH=None, SECRET_KEY=None)
    result = invoke(app, *WAITRESS, "--port", "0")
    assert result.exit_code == 0, result.output
    assert len(backend.calls) == 1
    lines = result.output.splitlines()
    assert lines[-3:] == [
        " * Warning PS401: MAX_CONTENT_LENGTH is not set, so request bodies up to 1 GiB are "
        f"accepted. Fix: {BODY_LIMIT_FIX}.",
        " * Press CTRL+C to stop",
        " * Stopped.",
    ]
    assert "PS201" not in result.output  # info is left to --check


def test_production_refuses_to_start_on_an_error(no_bind: None, backend: FakeBackend) -> None:
    app = good_app(SECRET_KEY="changeme", MAX_CONTENT_LENGTH=None)
    app.wsgi_app = DebuggedApplication(app.wsgi_app)  # type: ignore[method-assign]
    result = invoke(app, *WAITRESS, "--port", "0")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Error: PS102: app.wsgi_app is Werkzeug's DebuggedApplication. "
        "Fix: remove the DebuggedApplication wrapper from app.wsgi_app.",
        f"Error: PS202: SECRET_KEY contains 'changeme', like a placeholder. Fix: {RECIPE}.",
    ]
    assert backend.calls == []


def test_dev_mode_does_not_run_the_checks(backend: FakeBackend) -> None:
    app = good_app(SECRET_KEY="dev", MAX_CONTENT_LENGTH=None)
    result = invoke(app, "--debug", "serve", "--port", "0", "--no-reload")
    assert result.exit_code == 0, result.output
    assert len(backend.calls) == 1
    assert "PS" not in result.output


# -- the real command ---------------------------------------------------------------

_ON_PATH = {"PYTHONPATH": str(ROOT)}  # example_app importable from any folder


def test_live_check_of_the_example_app() -> None:
    result = run_flask(ROOT, "--app", "example_app", "serve", "--check", env=_ON_PATH)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    # The example app sets MAX_CONTENT_LENGTH and a real key: nothing to report.
    assert re.fullmatch(
        r"Checked app 'example_app' served by (gunicorn|waitress) on 127\.0\.0\.1:8000: "
        r"0 errors, 0 warnings, 0 info\.\n",
        result.stdout,
    )
    public = run_flask(
        ROOT, "--app", "example_app", "serve", "--check", "--host", "0.0.0.0", env=_ON_PATH
    )
    assert public.returncode == 0
    assert [line[:13] for line in public.stdout.splitlines()[:-1]] == [
        "PS301 warning",
        "PS302 info: T",
    ]


def test_live_production_start_refused(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "from flask import Flask\napp = Flask(__name__)\napp.secret_key = 'super-secret'\n"
    )
    result = run_flask(tmp_path, "--app", "app", "serve", "--prod", "--port", "0", env=_ON_PATH)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"Error: PS202: SECRET_KEY contains 'secret', like a placeholder. Fix: {RECIPE}."
    ]


def test_fix_names_the_config_file_the_app_reads(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("app.config.from_pyfile('settings.py')\n")
    app = good_app(root=str(tmp_path), SESSION_COOKIE_SAMESITE=None)
    config = serving.config_for(app, {}, env={})
    (problem,) = checks.run_checks(app, config)
    assert problem.describe() == (
        "SESSION_COOKIE_SAMESITE is not set, so browsers send the session cookie with requests "
        'that other sites make. Fix: add app.config["SESSION_COOKIE_SAMESITE"] = "Lax" to the '
        'app; or write SESSION_COOKIE_SAMESITE = "Lax" in settings.py.'
    )
    # What the fix says works: the line in settings.py sets the config key.
    (tmp_path / "settings.py").write_text('SESSION_COOKIE_SAMESITE = "Lax"\n')
    app.config.from_pyfile("settings.py")
    assert checks.run_checks(app, config) == []


def test_production_start_up_runs_no_view(backend: FakeBackend) -> None:
    app = good_app()
    calls: list[str] = []
    app.before_request(lambda: calls.append(request.path))
    app.add_url_rule("/page", "page", lambda: '<a href="/elsewhere">')
    assert "PS506" in found(app, **SHOP)  # --check fetches the pages
    calls.clear()
    result = invoke(app, *WAITRESS, "--port", "0", "--url-prefix", "/shop")
    assert result.exit_code == 0, result.output
    assert calls == []


def test_a_url_no_route_matches_gets_the_url_for_pattern(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "a.html").write_text('<a href="/logout">\n')
    app = good_app(root=str(tmp_path))
    config = serving.config_for(app, {"url_prefix": "/shop"}, env={})
    target = checks.Target(app, config)
    ((spot, better),) = target.hand_written
    assert (spot.line, spot.text) == (1, 'href="/logout"')
    assert better == (
        "href=\"{{ url_for('name_of_the_view') }}\" (no route of the app matches /logout yet)"
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(
            "X = []\n@app.post('/a')\ndef a():\n    X.append(1)\n", ["X list a"], id="append"
        ),
        pytest.param(
            "X = {}\n@bp.route('/a')\ndef a():\n    X['k'].add(1)\n", ["X dict a"], id="nested"
        ),
        pytest.param(
            "N = 0\n@app.get('/a')\ndef a():\n    global N\n    N += 1\n",
            ["N variable a"],
            id="global-counter",
        ),
        pytest.param(
            "X = {}\n@app.get('/a')\ndef a():\n    X = {}\n    X['k'] = 1\n", [], id="local"
        ),
        pytest.param("X = {}\ndef setup():\n    X['k'] = 1\n", [], id="not-a-view"),
        pytest.param(
            "X = {}\n@app.get('/a')\ndef a():\n    return X.get('k')\n", [], id="only-read"
        ),
    ],
)
def test_shared_state_found_in_source(tmp_path: Path, source: str, expected: list[str]) -> None:
    (tmp_path / "app.py").write_text(source)
    app = good_app(root=str(tmp_path))
    states = sourcescan.scan(app).shared_state
    assert [f"{s.name} {s.kind} {' '.join(s.views)}" for s in states] == expected


def test_projects_beside_the_app_are_not_its_source(tmp_path: Path) -> None:
    # An app.py in a folder that also holds other projects (a home folder,
    # /tmp): their code is not the app's, and must not be warned about.
    (tmp_path / "app.py").write_text("from flask import Flask\n")
    for name, marker in (("clone", ".git"), ("tool", "pyproject.toml"), ("old", "setup.py")):
        (tmp_path / name).mkdir()
        (tmp_path / name / marker).touch()
        (tmp_path / name / "views.py").write_text("from flask import session\nsession['a'] = 1\n")
    (tmp_path / "helpers").mkdir()  # a folder of the app's own code is still read
    (tmp_path / "helpers" / "util.py").write_text("X = 1\n")
    app = good_app(root=str(tmp_path), SECRET_KEY=None)
    files = [p.relative_to(tmp_path).as_posix() for p in sourcescan.app_files(app)]
    assert files == ["app.py", "helpers/util.py"]
    assert "PS207" not in found(app)


def test_server_side_sessions_need_no_key(tmp_path: Path) -> None:
    # Flask-Session replaces the session interface: its sessions need no SECRET_KEY.
    (tmp_path / "app.py").write_text("from flask import session\nsession['a'] = 1\n")
    app = good_app(root=str(tmp_path), SECRET_KEY=None)
    assert "PS207" in found(app)
    app.session_interface = ServerSideSessions()
    assert "PS207" not in found(app)


class ServerSideSessions(SessionInterface):
    """Stands for Flask-Session's interface: the session lives on the server."""


@pytest.mark.parametrize(
    ("url", "call"),
    [
        pytest.param("/", "url_for('index')", id="index"),
        pytest.param("/about", "url_for('about')", id="slash-added"),
        pytest.param("/static/css/a.css", "url_for('static', filename='css/a.css')", id="static"),
        pytest.param("/quote/AAPL?n=2", "url_for('quote', symbol='AAPL', n='2')", id="args"),
        pytest.param("/?a-b=1", "url_for('index') + '?a-b=1'", id="query-kept"),
        pytest.param("/nowhere", None, id="no-route"),
    ],
)
def test_url_for_call_rebuilds_a_hand_written_url(url: str, call: str | None) -> None:
    app = good_app()
    app.add_url_rule("/quote/<symbol>", "quote", lambda symbol: symbol)
    assert pagescan.url_for_call(app, url) == call
