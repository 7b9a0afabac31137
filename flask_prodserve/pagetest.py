"""The rendered-pages part of the URL prefix self-test.

:mod:`flask_prodserve.prefixtest` builds URLs without running a view. This
module goes one step further, as a visitor would: it sends ``GET`` to each of
the app's pages that take no URL arguments, through the mount exactly as
served, and checks that every link, script, stylesheet, image, form and
redirect in the answers stays under the prefix. That catches URLs that are
built at run time, which no reading of the source finds.

GET views are meant to change nothing, but they do run, with their
``before_request`` functions and the session backend: so only ``--check``
runs this part (not production start-up, in the process gunicorn forks), and
``ignore_checks = PS506`` skips it. An exception in a view is caught and the page
skipped; ``PROPAGATE_EXCEPTIONS`` is set only while the pages are fetched, so
that the app does not log it as a failed request.
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from werkzeug.test import Client

from .middleware import mount
from .prefixtest import probe_host

if TYPE_CHECKING:
    from flask import Flask

_MAX_PAGES = 50
_URL_ATTRS = {"a": "href", "link": "href", "script": "src", "img": "src", "form": "action"}


@dataclass(frozen=True)
class PageLink:
    """A URL in a rendered page (or its redirect) that leaves the prefix."""

    page: str
    what: str  # <a href="/about">, or: the redirect to /login
    url: str


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {_URL_ATTRS.get(tag), "formaction" if tag in ("button", "input") else None}
        for name, value in attrs:
            if name in wanted and value is not None:
                self.found.append((f'<{tag} {name}="{value}">', value))


def leaving_links(app: Flask, prefix: str) -> list[PageLink]:
    """Fetch each argument-free GET page under ``prefix``; return what leaves it."""
    saved = {k: app.config.get(k) for k in ("APPLICATION_ROOT", "PROPAGATE_EXCEPTIONS")}
    app.config["PROPAGATE_EXCEPTIONS"] = True
    try:
        client, host = Client(mount(app, prefix)), probe_host(app)
        found: list[PageLink] = []
        for path in _pages(app)[:_MAX_PAGES]:
            found += _check_page(client, prefix, host, prefix + path)
    finally:
        app.config.update(saved)
    return list(dict.fromkeys(found))


def _pages(app: Flask) -> list[str]:
    return sorted(
        r.rule
        for r in app.url_map.iter_rules()
        if not r.arguments and "GET" in (r.methods or ()) and r.endpoint != "static"
        if not r.host and not r.subdomain and not r.defaults
    )


def _check_page(client: Client, prefix: str, host: str, page: str) -> list[PageLink]:
    try:
        response = client.get(page, base_url=f"http://{host}")
    except Exception:
        return []  # the view failed without its real inputs: nothing to learn here
    links: list[tuple[str, str]] = []
    location = response.headers.get("Location")
    if location:
        links.append((f"the redirect to {location}", location))
    if response.mimetype == "text/html":
        parser = _Links()
        parser.feed(response.get_data(as_text=True))
        links += parser.found
    return [PageLink(page, what, url) for what, url in links if _leaves(url, prefix, host)]


def _leaves(url: str, prefix: str, host: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in ("", "http", "https") or parts.netloc not in ("", host):
        return False  # mailto:, another site (a CDN): not ours to judge
    if not parts.path.startswith("/"):
        return False  # relative to the page: it keeps the prefix
    return parts.path != prefix and not parts.path.startswith(prefix + "/")
