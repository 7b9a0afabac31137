"""Find URLs written by hand that a URL prefix breaks, with the ``url_for`` to use.

Under ``--url-prefix /shop`` the app answers ``/shop/...``; a hand-written
``href="/about"`` or ``redirect("/")`` still points at ``/about`` and ``/``,
outside the prefix, where the visitor gets a 404. This module finds such
root-relative URLs in the app's templates (the text, by regular expression:
the attributes are plain HTML) and in its Python source (from
:mod:`flask_prodserve.sourcescan`), and names the ``url_for(...)`` call
that builds each one with the prefix.

It also finds the templates' use of ``session`` and ``get_flashed_messages``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from .sourcescan import SourceScan, Spot, is_library, shown_path

if TYPE_CHECKING:
    from flask import Flask

# href="/about", src='/static/a.js', action="/": a root-relative URL (not //host).
ROOT_RELATIVE = re.compile(
    r"""\b(?P<attr>href|src|action|formaction)\s*=\s*(?P<q>["'])(?P<url>/(?!/)[^"'\s{}<>]*)(?P=q)""",
    re.I,
)
_TEMPLATE_SUFFIXES = {".html", ".htm", ".jinja", ".jinja2", ".j2", ".xml", ".svg", ".txt"}
_TEMPLATE_SESSION = re.compile(r"\{[{%][^}]*?\b(session|get_flashed_messages)\b")


def templates(app: Flask) -> Iterator[tuple[str, str]]:
    """``(shown file name, text)`` of each file in the app's and its blueprints'
    template folders (not Jinja's loader: that would create the app's Jinja
    environment, which the checks leave alone)."""
    owners = [app, *app.iter_blueprints()]
    folders = [os.path.join(o.root_path, o.template_folder) for o in owners if o.template_folder]
    for folder in dict.fromkeys(folders):
        if is_library(folder):
            continue
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file() and path.suffix in _TEMPLATE_SUFFIXES:
                try:
                    yield shown_path(str(path)), path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    continue


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def hand_written_urls(app: Flask, scan: SourceScan) -> list[tuple[Spot, str]]:
    """``(where, what to write instead)`` for each root-relative URL in the app's
    templates and Python source, by file and line."""
    found: list[tuple[Spot, str]] = []
    for file, source in templates(app):
        for m in ROOT_RELATIVE.finditer(source):
            written = f"{m['attr']}={m['q']}{m['url']}{m['q']}"
            better = _instead(app, m["url"], f"{m['attr']}={m['q']}{{{{ CALL }}}}{m['q']}")
            found.append((Spot(file, _line(source, m.start()), written), better))
    for spot in scan.redirects:
        written = f'redirect("{spot.text}")'
        found.append(
            (Spot(spot.file, spot.line, written), _instead(app, spot.text, "redirect(CALL)"))
        )
    for spot in scan.strings:  # HTML built in Python
        for m in ROOT_RELATIVE.finditer(spot.text):
            written = f"{m['attr']}={m['q']}{m['url']}{m['q']}"
            found.append((Spot(spot.file, spot.line, written), _instead(app, m["url"], "CALL")))
    return sorted(dict.fromkeys(found), key=lambda f: (f[0].file, f[0].line))


def _instead(app: Flask, url: str, form: str) -> str:
    """``form`` with CALL replaced by the ``url_for`` call that builds ``url``."""
    call = url_for_call(app, url)
    if call:
        return form.replace("CALL", call)
    guess = form.replace("CALL", "url_for('name_of_the_view')")
    return f"{guess} (no route of the app matches {urlsplit(url).path} yet)"


def url_for_call(app: Flask, url: str) -> str | None:
    """The ``url_for(...)`` that builds ``url``, from the app's routes; its query
    arguments become keyword arguments when they can."""
    parts = urlsplit(url)
    found = _endpoint(app, parts.path)
    if found is None:
        return None
    query = parse_qsl(parts.query, keep_blank_values=True)
    if all(k.isidentifier() for k, _ in query):
        args, after = "".join(f", {k}={v!r}" for k, v in query), ""
    else:
        args, after = "", f" + {'?' + parts.query!r}"
    return f"url_for({found[0]!r}{found[1]}{args}){after}"


def _endpoint(app: Flask, path: str) -> tuple[str, str] | None:
    """``(endpoint, ", name=value" for each URL argument)`` of the route for ``path``."""
    static = app.static_url_path or ""
    if app.has_static_folder and static and path.startswith(static + "/"):
        return "static", f", filename={path[len(static) + 1 :]!r}"
    adapter = app.url_map.bind("localhost")
    for method, again in (("GET", path), ("POST", path), ("GET", path + "/")):  # /about/
        try:
            endpoint, args = adapter.match(again, method=method, return_rule=False)
        except (HTTPException, RequestRedirect):
            continue
        return endpoint, "".join(f", {k}={v!r}" for k, v in args.items())
    return None


def template_session_uses(app: Flask) -> list[Spot]:
    """Where the app's templates use ``session`` or ``get_flashed_messages``."""
    return [
        Spot(file, _line(source, m.start(1)), m[1])
        for file, source in templates(app)
        for m in _TEMPLATE_SESSION.finditer(source)
    ]
