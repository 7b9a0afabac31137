"""The URL prefix self-test: do the app's URLs stay under ``url_prefix``?

The app is mounted with :func:`~flask_prodserve.middleware.mount`, exactly as
it is served, and a request is sent through the mount and the app's own
middleware (``app.wsgi_app``) up to the point where Flask would create the
request context. The environ that arrives there is kept and the request goes
no further: no ``before_request`` hook, view or session backend runs. URLs
are then built in a request context made from that environ.

Nothing of the app is changed: ``APPLICATION_ROOT``, which the mount sets,
and the method replaced to catch the environ are restored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import url_for
from flask.ctx import RequestContext
from werkzeug.routing import RequestRedirect, Rule
from werkzeug.test import EnvironBuilder

from .middleware import mount
from .responses import drain

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment
    from flask import Flask


@dataclass(frozen=True)
class PrefixFailure:
    """One URL that left the prefix: ``aspect`` is ``url_for``, ``redirect``,
    ``static`` or ``cookie_path``; ``what`` names the URL in a sentence."""

    aspect: str
    what: str
    got: str


def prefix_self_test(app: Flask, prefix: str) -> list[PrefixFailure]:
    """Build each kind of URL under ``prefix`` and return those outside it."""
    saved_root = app.config.get("APPLICATION_ROOT", "/")
    try:
        chain = mount(app, prefix)
        host = probe_host(app)
        failures = list(_built_urls(app, chain, prefix, host))
        failures += _redirect(app, chain, prefix, host)
        path = app.session_interface.get_cookie_path(app)
        key = "SESSION_COOKIE_PATH" if app.config.get("SESSION_COOKIE_PATH") else "APPLICATION_ROOT"
        failures += _outside(prefix, "cookie_path", f"The session cookie path (from {key})", path)
    finally:
        app.config["APPLICATION_ROOT"] = saved_root
    return failures


def _built_urls(
    app: Flask, chain: WSGIApplication, prefix: str, host: str
) -> Iterator[PrefixFailure]:
    environ = _arriving_environ(app, chain, prefix, "/", host)
    rule = _plain_get_rule(app)
    with RequestContext(app, environ, session=app.session_interface.make_null_session(app)):
        if rule is not None:
            url = _try_url_for(rule.endpoint)
            yield from _outside(prefix, "url_for", f"url_for({rule.endpoint!r})", url, host)
        if app.has_static_folder:
            url = _try_url_for("static", filename="style.css")
            yield from _outside(prefix, "static", "url_for('static', ...)", url, host)


def _redirect(app: Flask, chain: WSGIApplication, prefix: str, host: str) -> list[PrefixFailure]:
    """Routing's redirect to the URL with a trailing slash (``/app`` -> ``/app/``)."""
    path = _slash_redirect_path(app, prefix)
    if path is None:
        return []
    environ = _arriving_environ(app, chain, prefix, path[len(prefix) :], host)
    try:
        adapter = app.create_url_adapter(app.request_class(environ))
        if adapter is not None:
            adapter.match()
    except RequestRedirect as redirect:
        what = f"The redirect from {path}"
        return list(_outside(prefix, "redirect", what, redirect.new_url, host))
    except Exception:
        pass  # any other routing outcome says nothing about the prefix
    return []


def _outside(
    prefix: str, aspect: str, what: str, url: str | None, host: str = ""
) -> Iterator[PrefixFailure]:
    if url is None:
        return
    parts = urlsplit(url)
    if parts.netloc and parts.netloc != host:
        return  # another site (a CDN for static files): not ours to judge
    if parts.path != prefix and not parts.path.startswith(prefix + "/"):
        yield PrefixFailure(aspect, what, url)


def _try_url_for(endpoint: str, **values: Any) -> str | None:
    try:
        return url_for(endpoint, **values)
    except Exception:
        # url_defaults or build error handlers that need a real request:
        # nothing to learn about the prefix here.
        return None


def _plain_get_rule(app: Flask) -> Rule | None:
    """A GET route without arguments, ``/`` if there is one."""
    rules = [
        r
        for r in app.url_map.iter_rules()
        if not r.arguments and "GET" in (r.methods or ()) and r.endpoint != "static"
        if not r.host and not r.subdomain
    ]
    return next((r for r in rules if r.rule == "/"), rules[0] if rules else None)


def _slash_redirect_path(app: Flask, prefix: str) -> str | None:
    """A path that routing redirects to add a trailing slash."""
    rule = _plain_get_rule(app)
    if rule is not None and rule.rule == "/":
        return prefix  # the mount passes PATH_INFO "", which routing redirects to "/"
    for r in app.url_map.iter_rules():
        slash = r.rule.endswith("/") and r.rule != "/" and r.strict_slashes
        if slash and not r.arguments and "GET" in (r.methods or ()):
            return prefix + r.rule.rstrip("/")
    return None


def probe_host(app: Flask) -> str:
    """A Host the app accepts: the first of TRUSTED_HOSTS, else SERVER_NAME."""
    trusted = app.config.get("TRUSTED_HOSTS") or []
    if trusted:
        return str(trusted[0]).lstrip(".")
    return str(app.config.get("SERVER_NAME") or "localhost")


class _Arrived(Exception):
    def __init__(self, environ: WSGIEnvironment) -> None:
        self.environ = environ


def _arriving_environ(
    app: Flask, chain: WSGIApplication, prefix: str, rest: str, host: str
) -> WSGIEnvironment:
    """The environ of ``GET prefix+rest`` as Flask receives it, through ``chain``
    and the app's middleware. Flask's ``wsgi_app`` starts by calling
    ``self.request_context(environ)``: replacing that on the instance catches
    the environ before anything of the app runs."""
    environ = EnvironBuilder(path=prefix + rest, base_url=f"http://{host}").get_environ()
    previous = vars(app).get("request_context")

    def arrive(arrived: WSGIEnvironment) -> Any:
        raise _Arrived(arrived)

    vars(app)["request_context"] = arrive
    try:
        drain(chain(environ, lambda status, headers, exc_info=None: lambda data: None))
    except _Arrived as arrived:
        return arrived.environ
    except Exception:
        pass  # a middleware failed on the probe request: fall back below
    finally:
        if previous is None:
            del vars(app)["request_context"]
        else:
            vars(app)["request_context"] = previous
    # The app's middleware answered by itself: use what the mount alone passes on.
    return EnvironBuilder(path=rest, base_url=f"http://{host}{prefix}").get_environ()
