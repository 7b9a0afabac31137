"""Production-readiness checks: ``flask serve --check`` and production start-up.

Every check is declared once, with :func:`check` above the function that
finds the problem, and listed in :data:`CHECKS`; the report, the start-up
banner and the docs all come from that registry. A check's ID is ``PS`` and
three digits, the first naming the area: 1 debugging, 2 secret key and
session cookie, 3 network (hosts, binding, proxy), 4 request limits, 5 the
URL prefix self-test, 6 the app's own code, 7 the server itself, 8 static
files. An ID always
means the same check and is never reused.

Pure: nothing here prints or exits. The checks read the app, its source and
templates (:mod:`flask_prodserve.codechecks`) and the resolved
:class:`~flask_prodserve.config.ServeConfig`; the prefix self-test
(:mod:`flask_prodserve.prefixtest`) runs no view, ``before_request`` function or
session backend, except PS506, which fetches the app's GET pages
(:mod:`flask_prodserve.pagetest`) under ``--check`` only.
"""

from __future__ import annotations

import enum
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from . import codechecks, sourcescan, staticfiles
from .backends import gunicorn_names
from .config import Layer
from .errors import ConfigError, ProdServeError
from .pagescan import hand_written_urls
from .pagetest import leaving_links
from .prefixtest import PrefixFailure, prefix_self_test
from .sizes import human_size
from .sockets import is_loopback

if TYPE_CHECKING:
    from .config import ServeConfig
    from .sourcescan import SourceScan, Spot


class Severity(enum.IntEnum):
    """How bad a problem is; production start-up refuses an error."""

    INFO = 1
    WARNING = 2
    ERROR = 3

    def __str__(self) -> str:
        return self.name.lower()


ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


class Target:
    """What the checks look at: the app and its resolved serving config."""

    def __init__(self, app: Flask, config: ServeConfig, fetch_pages: bool = True) -> None:
        self.app = app
        self.config = config
        self.fetch_pages = fetch_pages  # whether PS506 may run the app's GET views

    @cached_property
    def public(self) -> bool:
        """Whether the server listens on an address other machines can reach."""
        return not is_loopback(self.config.host)

    @cached_property
    def prefix_failures(self) -> dict[str, PrefixFailure]:
        """The prefix self-test's failures by aspect, run once for its four checks."""
        prefix = self.config.url_prefix
        return {f.aspect: f for f in prefix_self_test(self.app, prefix)} if prefix else {}

    @cached_property
    def static_folders(self) -> list[staticfiles.StaticFolder]:
        """The app's and its blueprints' static folders on disk."""
        return staticfiles.static_folders(self.app)

    @cached_property
    def scan(self) -> SourceScan:
        """What the app's own Python source shows, read once for every check."""
        return sourcescan.scan(self.app)

    @cached_property
    def hand_written(self) -> list[tuple[Spot, str]]:
        """Root-relative URLs in the app's templates and source, with their fix."""
        return hand_written_urls(self.app, self.scan)

    def where(self, name: str) -> str:
        """Where an option's value came from: ``--host``, ``default``, ..."""
        origin = self.config.origins.get(name)
        return origin.label if origin else "default"


Finder = Callable[[Target], Iterator[str]]


@dataclass(frozen=True)
class Check:
    """One check: ``find`` yields a message, naming the value, per problem."""

    id: str
    severity: Severity
    title: str
    fix: str
    find: Finder
    setting: str = ""  # the config line the fix sets: KEY = value


@dataclass(frozen=True)
class Problem:
    """A failed check, with the message for this app."""

    check: Check
    message: str
    config_file: str = ""  # where the app reads its config from, if it does

    @property
    def id(self) -> str:
        return self.check.id

    @property
    def severity(self) -> Severity:
        return self.check.severity

    def describe(self) -> str:
        """``message. Fix: fix.``, one line."""
        also = ""
        if self.check.setting and self.config_file:
            also = f"; or write {self.check.setting} in {self.config_file}"
        return f"{self.message}. Fix: {self.check.fix}{also}."

    def __str__(self) -> str:
        return f"{self.id} {self.severity}: {self.describe()}"


class ChecksFailed(ProdServeError):
    """Production start-up refused: at least one check at error level failed."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(" ".join(f"{p.id}: {p.describe()}" for p in problems))


_REGISTRY: list[Check] = []


def check(
    check_id: str, severity: Severity, fix: str, title: str = "", setting: str = ""
) -> Callable[[Finder], Finder]:
    """Register ``find`` as check ``check_id``; ``title`` defaults to its docstring.

    ``setting`` is the config line that fixes it (``KEY = value``): the fix then
    starts with the line to add to app.py, ``app.config["KEY"] = value``."""
    if setting:
        key, _, value = setting.partition(" = ")
        fix = f'add app.config["{key}"] = {value} to the app' + (f" {fix}" if fix else "")

    def register(find: Finder) -> Finder:
        assert all(c.id != check_id for c in _REGISTRY), f"check ID {check_id} is used twice"
        text = " ".join((title or find.__doc__ or "").split())
        _REGISTRY.append(Check(check_id, severity, text, fix, find, setting))
        return find

    return register


# -- 1xx debugging -------------------------------------------------------------


@check("PS101", ERROR, "turn debug off: drop --debug, FLASK_DEBUG and DEBUG=True")
def _debug_on(t: Target) -> Iterator[str]:
    """The app's debug flag is on."""
    if t.app.debug:
        yield "The app's debug flag is on (app.debug is True)"


@check("PS102", ERROR, "remove the DebuggedApplication wrapper from app.wsgi_app")
def _debugger_wrapped(t: Target) -> Iterator[str]:
    """Werkzeug's DebuggedApplication wraps the app: anyone who reaches it can run code."""
    # Not imported here: werkzeug.debug is heavy, and if nothing imported it,
    # no DebuggedApplication exists.
    debug = sys.modules.get("werkzeug.debug")
    if debug is None:
        return
    for where, obj in wsgi_chain(t.app):
        if isinstance(obj, debug.DebuggedApplication):
            yield f"{where} is Werkzeug's DebuggedApplication"


@check("PS103", ERROR, "serve with --prod, and with debug off")
def _dev_server(t: Target) -> Iterator[str]:
    """Werkzeug's development server would serve the app."""
    if t.config.mode == "dev":
        yield f"The Werkzeug development server would serve the app ({t.where('mode')})"


_FOLLOWED = ("app", "application", "wsgi_app", "__wrapped__")


def wsgi_chain(app: Flask) -> Iterator[tuple[str, Any]]:
    """``(path, object)`` for ``app.wsgi_app`` and every WSGI app it wraps:
    ``.app``-style attributes, DispatcherMiddleware mounts, mounted Flask apps."""
    todo: list[tuple[str, Any]] = [("app.wsgi_app", app.wsgi_app)]
    seen: list[Any] = [app]  # kept alive, so that identities stay unique
    while todo and len(seen) < 200:  # a bound for odd object graphs
        where, obj = todo.pop(0)
        if getattr(obj, "__self__", None) is not None and not isinstance(obj, type):
            obj = obj.__self__  # a bound method: its object
        if any(obj is s for s in seen):
            continue
        seen.append(obj)
        yield where, obj
        if isinstance(obj, Flask):
            todo.append((f"{where}.wsgi_app", obj.wsgi_app))
            continue
        todo += [(f"{where}.{a}", getattr(obj, a)) for a in _FOLLOWED if hasattr(obj, a)]
        mounts = getattr(obj, "mounts", None)
        if isinstance(mounts, dict):
            todo += [(f"{where}.mounts[{k!r}]", v) for k, v in mounts.items()]


# -- 2xx secret key and session cookie -------------------------------------------

SET_SECRET_KEY = (
    'make a key with python -c "import secrets; print(secrets.token_hex())", then set it in '
    "the shell that runs flask: export SECRET_KEY=the-printed-key (Windows PowerShell: "
    '$env:SECRET_KEY = "the-printed-key")'
)
SECRET_KEY_RECIPE = (
    f'{SET_SECRET_KEY}; in app.py read it with app.secret_key = os.environ["SECRET_KEY"] '
    "(after import os)"
)
_PLACEHOLDERS = frozenset(
    {"dev", "development", "test", "testing", "key", "flask", "admin", "abc123", "123456"}
)
# Words that no random key contains by chance (each has a letter outside hex
# and is long enough to be vanishingly rare in base64), but placeholders do.
_PLACEHOLDER_WORDS = ("secret", "changeme", "password", "insecure", "replaceme", "example")


def weakness(key: str | bytes) -> tuple[str, str]:
    """``(check ID, what is wrong)`` for the worst weakness of a key, or ``("", "")``."""
    raw = key.encode() if isinstance(key, str) else key
    text = raw.decode("utf-8", "replace").lower()
    squashed = "".join(ch for ch in text if ch.isalnum())
    if text in _PLACEHOLDERS or squashed in _PLACEHOLDERS:
        return "PS202", f"is a well-known placeholder ({text!r})"
    word = next((w for w in _PLACEHOLDER_WORDS if w in squashed), "")
    if word:
        return "PS202", f"contains {word!r}, like a placeholder"
    if len(raw) < 16:
        return "PS204", f"is only {len(raw)} byte{'s' * (len(raw) != 1)} long"
    if len(set(raw)) < 8:
        distinct = len(set(raw))
        return "PS203", f"uses only {distinct} different character{'s' * (distinct > 1)}"
    if len(raw) < 32:
        return "PS205", f"is {len(raw)} bytes long"
    return "", ""


def _weak_keys(check_id: str) -> Finder:
    def find(t: Target) -> Iterator[str]:
        keys = [("SECRET_KEY", t.app.secret_key)]
        fallbacks = t.app.config.get("SECRET_KEY_FALLBACKS") or []
        keys += [(f"SECRET_KEY_FALLBACKS[{i}]", key) for i, key in enumerate(fallbacks)]
        for name, key in keys:
            found, problem = weakness(key) if key else ("", "")
            if found == check_id:
                yield f"{name} {problem}"  # never the key itself: this goes to logs

    return find


for _id, _severity, _title in (
    ("PS202", ERROR, "A secret key is a well-known placeholder or contains 'secret'."),
    ("PS203", ERROR, "A secret key uses fewer than 8 different characters."),
    ("PS204", ERROR, "A secret key is shorter than 16 bytes: short enough to guess."),
    ("PS205", WARNING, "A secret key is shorter than 32 bytes."),
):
    check(_id, _severity, SECRET_KEY_RECIPE, _title)(_weak_keys(_id))


@check("PS201", INFO, f"if the app needs sessions: {SECRET_KEY_RECIPE}")
def _no_secret_key(t: Target) -> Iterator[str]:
    """SECRET_KEY is not set (fine if the app uses no sessions)."""
    if not t.app.secret_key and not codechecks.session_uses(t):  # else PS207 says more
        yield "SECRET_KEY is not set, so the app cannot use sessions or flash messages"


@check("PS206", WARNING, SECRET_KEY_RECIPE)
def _key_in_source(t: Target) -> Iterator[str]:
    """The secret key is written in the app's source code."""
    key = t.app.secret_key
    yield from codechecks.key_in_source(t, weak=bool(key and weakness(key)[0]))


check(
    "PS207",
    WARNING,
    SECRET_KEY_RECIPE,
    "The app uses session or flash (in its code or templates), and SECRET_KEY is not set.",
)(codechecks.session_without_key)


def _uses_sessions(app: Flask) -> bool:
    # Flask's own cookie sessions need a key; other session backends may not.
    builtin = type(app.session_interface) is SecureCookieSessionInterface
    return bool(app.secret_key) or not builtin


def _https_reason(t: Target) -> str:
    """Why the app is (probably) reached over https, or ``""``."""
    if "certfile" in t.config.server_options:
        return "the server has a certfile"
    if t.app.config.get("PREFERRED_URL_SCHEME") == "https":
        return "PREFERRED_URL_SCHEME is 'https'"
    if t.config.proxy.hops:
        return f"this matters if your proxy serves https; proxy set by {t.where('proxy')}"
    return ""


@check("PS211", WARNING, "", setting="SESSION_COOKIE_SECURE = True")
def _cookie_not_secure(t: Target) -> Iterator[str]:
    """SESSION_COOKIE_SECURE is off while the app is served over https (a certfile,
    PREFERRED_URL_SCHEME = 'https', or a trusted proxy)."""
    reason = _https_reason(t)
    if reason and _uses_sessions(t.app) and not t.app.config.get("SESSION_COOKIE_SECURE"):
        yield (
            "SESSION_COOKIE_SECURE is False, so browsers also send the session cookie "
            f"over plain http ({reason})"
        )


@check("PS212", WARNING, "(Flask's default)", setting="SESSION_COOKIE_HTTPONLY = True")
def _cookie_not_httponly(t: Target) -> Iterator[str]:
    """SESSION_COOKIE_HTTPONLY is off."""
    if _uses_sessions(t.app) and not t.app.config.get("SESSION_COOKIE_HTTPONLY"):
        yield "SESSION_COOKIE_HTTPONLY is False, so scripts on a page can read the session cookie"


@check("PS213", WARNING, "", setting='SESSION_COOKIE_SAMESITE = "Lax"')
def _cookie_no_samesite(t: Target) -> Iterator[str]:
    """SESSION_COOKIE_SAMESITE is not set."""
    if _uses_sessions(t.app) and not t.app.config.get("SESSION_COOKIE_SAMESITE"):
        yield (
            "SESSION_COOKIE_SAMESITE is not set, so browsers send the session cookie "
            "with requests that other sites make"
        )


# -- 3xx network ------------------------------------------------------------------


@check(
    "PS301",
    WARNING,
    "(your domain names): Flask 3.1 then answers requests for any other Host with 400",
    setting='TRUSTED_HOSTS = ["example.com"]',
)
def _no_trusted_hosts(t: Target) -> Iterator[str]:
    """TRUSTED_HOSTS is not set while the server listens on a non-loopback address."""
    if t.public and not t.app.config.get("TRUSTED_HOSTS"):
        yield (
            f"TRUSTED_HOSTS is not set and the server listens on {t.config.host} "
            f"({t.where('host')}), so the app accepts any Host header"
        )


@check(
    "PS302",
    INFO,
    "fine if clients should connect directly; behind a proxy, set --proxy 1,PROXY_ADDRESS",
)
def _public_without_proxy(t: Target) -> Iterator[str]:
    """The server listens on a non-loopback address and trusts no proxy."""
    if t.public and not t.config.proxy.hops:
        yield (
            f"The server listens on {t.config.host} ({t.where('host')}) and trusts no "
            "proxy, so clients connect to it directly"
        )


@check("PS303", WARNING, "list the proxy's addresses, e.g. --proxy 1,10.0.0.5")
def _proxy_from_anywhere(t: Target) -> Iterator[str]:
    """A proxy is trusted from any address while the server listens on a
    non-loopback address."""
    proxy = t.config.proxy
    if t.public and proxy.hops and not proxy.addresses:
        yield (
            f"proxy is {proxy} ({t.where('proxy')}) and the server listens on "
            f"{t.config.host}: anyone who can reach the port can fake their address"
        )


@check(
    "PS304",
    WARNING,
    "serve with --metrics-allow and the Prometheus server's address, e.g. "
    "--metrics-allow 10.0.0.7, or keep the port off the public network",
)
def _metrics_to_anyone(t: Target) -> Iterator[str]:
    """Metrics are served on a non-loopback address to any client."""
    if t.public and t.config.metrics_path and not t.config.metrics_allow:
        yield (
            f"metrics_path is {t.config.metrics_path} ({t.where('metrics_path')}) and the "
            f"server listens on {t.config.host}: anyone who can reach the port can read "
            "the app's routes and traffic"
        )


# -- 4xx request limits --------------------------------------------------------------


@check(
    "PS401",
    WARNING,
    "(the largest upload you expect), or serve with --max-body-size",
    setting="MAX_CONTENT_LENGTH = 16 * 1024 * 1024",
)
def _no_body_limit(t: Target) -> Iterator[str]:
    """Neither MAX_CONTENT_LENGTH nor max_body_size limits request bodies."""
    origin = t.config.origins.get("max_body_size")
    default = origin is None or origin.layer is Layer.DEFAULT
    if default and t.app.config.get("MAX_CONTENT_LENGTH") is None:
        yield (
            "MAX_CONTENT_LENGTH is not set, so request bodies up to "
            f"{human_size(t.config.max_body_size)} are accepted"
        )


# -- 5xx URL prefix self-test ----------------------------------------------------------


def _prefix_aspect(aspect: str) -> Finder:
    def find(t: Target) -> Iterator[str]:
        failure = t.prefix_failures.get(aspect)
        if failure:
            yield f"{failure.what} is {failure.got!r}, outside the URL prefix {t.config.url_prefix}"

    return find


_KEEP_SCRIPT_NAME = (
    "build URLs with url_for, and don't overwrite SCRIPT_NAME in middleware around "
    "app.wsgi_app (it carries the prefix)"
)
check("PS501", ERROR, _KEEP_SCRIPT_NAME, "url_for() of a GET route leaves the URL prefix.")(
    _prefix_aspect("url_for")
)
check(
    "PS502",
    ERROR,
    _KEEP_SCRIPT_NAME,
    "Routing's redirect (adding a trailing slash) leaves the URL prefix.",
)(_prefix_aspect("redirect"))
check("PS503", ERROR, _KEEP_SCRIPT_NAME, "url_for('static', ...) leaves the URL prefix.")(
    _prefix_aspect("static")
)
check(
    "PS504",
    ERROR,
    "remove SESSION_COOKIE_PATH and APPLICATION_ROOT from the config (the prefix sets them)",
    "The session cookie's path is not the URL prefix.",
)(_prefix_aspect("cookie_path"))


check(
    "PS505",
    ERROR,
    "build each URL with url_for(), as shown, so that it carries the prefix",
    'A template or the source has a URL written from the root (href="/about", '
    'redirect("/")), which leaves the URL prefix.',
)(codechecks.hand_written)


_QUOTED_URL = re.compile(r"""["'](/[^"']*)["']""")


@check(
    "PS506",
    ERROR,
    "build the URL with url_for() (in a template: {{ url_for('index') }}) so that it "
    "carries the prefix",
)
def _rendered_links(t: Target) -> Iterator[str]:
    """A page the app renders for GET links, loads or redirects outside the URL prefix."""
    prefix = t.config.url_prefix
    if not prefix or not t.fetch_pages:
        return
    written = {_QUOTED_URL.findall(spot.text)[0] for spot, _ in t.hand_written}
    for link in leaving_links(t.app, prefix):
        if link.url not in written:  # PS505 names those by file and line
            yield f"GET {link.page} answers with {link.what}, outside the URL prefix {prefix}"


# -- 6xx the app's own code --------------------------------------------------------------

check(
    "PS601",
    WARNING,
    "keep the data in a database (sqlite3, CS50's SQL, Flask-SQLAlchemy), which every "
    "process shares and which survives a restart; or serve one process: --workers 1",
    "Module-level data that views change (a dict, list or set, or a variable they assign "
    "after global) while several worker processes each have their own copy.",
)(codechecks.shared_state)


# -- 7xx the server itself ------------------------------------------------------------


@check(
    "PS701",
    WARNING,
    "put nginx in front (flask serve --emit nginx), or serve with --server waitress, "
    f"or install a tested gunicorn: pip install '{gunicorn_names.tested_range()}'",
)
def _stock_gunicorn_worker(t: Target) -> Iterator[str]:
    """gunicorn's own worker serves: slow clients can hold every thread."""
    if t.config.server != "gunicorn":
        return
    why = gunicorn_names.worker_fallback(t.config.server_options)
    if why:
        yield (
            f"{why}, so gunicorn's own gthread worker serves, without flask-prodserve's "
            "request-head deadline (slow clients can hold every thread) or its checks "
            "of bodies that stop or end early"
        )


# -- 8xx static files ------------------------------------------------------------------

LARGE_TEXT = 10 * 1024  # bytes: below this, compressing saves a client little time


@check(
    "PS801",
    WARNING,
    "run flask serve --compress-static whenever the static files change (in the "
    "build or deploy step): it writes a .gz (and .br) next to each",
)
def _not_compressed(t: Target) -> Iterator[str]:
    """Large text files in the static folders have no compressed variant, so every
    client receives them uncompressed."""
    if not t.config.static_files:
        return
    found = staticfiles.uncompressed(t.static_folders, LARGE_TEXT)
    if found:
        names = ", ".join(_relative(p, t.app) for p in found[:3])
        more = f" and {len(found) - 3} more" if len(found) > 3 else ""
        yield (
            f"{len(found)} text file{'s' * (len(found) > 1)} of {LARGE_TEXT // 1024} KiB or "
            f"more ha{'ve' if len(found) > 1 else 's'} no .gz or .br variant ({names}{more})"
        )


ASSETS = 100 * 1024  # bytes of CSS and JavaScript: below this, re-checking them is cheap


@check(
    "PS802",
    INFO,
    "put a hash of each file's content in its name (app.3f9a1c2e.js: webpack's "
    "[contenthash], esbuild's [hash]) and link to those names; see the static files docs",
)
def _not_fingerprinted(t: Target) -> Iterator[str]:
    """The static folders hold 100 KiB or more of CSS and JavaScript and no
    fingerprinted name, so browsers ask again about each file after a minute
    instead of keeping it for a year."""
    if not t.config.static_files:
        return
    assets = [p for p in staticfiles.files_in(t.static_folders) if p.endswith((".css", ".js"))]
    size = sum(os.path.getsize(p) for p in assets)
    if size >= ASSETS and not any(staticfiles.is_fingerprinted("/" + p) for p in assets):
        max_age = staticfiles.short_max_age(t.app)
        files = f"{len(assets)} file{'s' * (len(assets) > 1)}"
        yield (
            f"The static folders hold {size // 1024} KiB of CSS and JavaScript in {files}, "
            f"none with a fingerprinted name, so each is cached for {max_age} s only"
        )


def _relative(path: str, app: Flask) -> str:
    return os.path.relpath(path, app.root_path)


CHECKS: tuple[Check, ...] = tuple(sorted(_REGISTRY, key=lambda c: c.id))
"""Every check, by ID."""

CHECK_BY_ID = {c.id: c for c in CHECKS}


def run_checks(app: Flask, config: ServeConfig, *, fetch_pages: bool = True) -> list[Problem]:
    """Every problem found, errors first, skipping ``config.ignore_checks``;
    ``fetch_pages=False`` skips the check that runs the app's GET views (PS506)."""
    ignored = ignored_ids(config)
    target = Target(app, config, fetch_pages)
    problems = [
        Problem(c, message, _config_file(target) if c.setting else "")
        for c in CHECKS
        if c.id not in ignored
        for message in c.find(target)
    ]
    return sorted(problems, key=lambda p: -p.severity)


def _config_file(t: Target) -> str:
    """The file the app loads its config from (``app.config.from_pyfile(...)``)."""
    return t.scan.config_files[0] if t.scan.config_files else ""


def ignored_ids(config: ServeConfig) -> list[str]:
    """The IDs in ``ignore_checks``; an unknown one is a :class:`ConfigError`."""
    ids = [i for i in config.ignore_checks.split(",") if i]
    unknown = [i for i in ids if i not in CHECK_BY_ID]
    if unknown:
        where = config.origins["ignore_checks"].label
        raise ConfigError(where, config.ignore_checks, f"there is no check {unknown[0]}")
    return ids


def startup_warnings(app: Flask, config: ServeConfig) -> list[Problem]:
    """The checks for production start-up: raise :class:`ChecksFailed` when one at
    error level fails, else return the warnings (info is left to ``--check``).

    The app's views are not run (PS506): here they would run in the server's
    main process, before gunicorn forks its workers, which would then share
    the database connections the views opened."""
    problems = run_checks(app, config, fetch_pages=False)
    errors = [p for p in problems if p.severity is ERROR]
    if errors:
        raise ChecksFailed(errors)
    return [p for p in problems if p.severity is WARNING]


def summary(problems: list[Problem]) -> str:
    """``1 error, 2 warnings, 0 info``."""
    counts = [(s, sum(p.severity is s for p in problems)) for s in (ERROR, WARNING, INFO)]
    return ", ".join(f"{n} {s}{'s' if n != 1 and s is not INFO else ''}" for s, n in counts)
