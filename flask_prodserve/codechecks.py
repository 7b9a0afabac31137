"""The checks that read the app's own code and templates.

Each function here is a finder for a check registered in
:mod:`flask_prodserve.checks`: it yields one message per problem, naming
the file and line. What the source shows comes from
:mod:`flask_prodserve.sourcescan` and :mod:`flask_prodserve.pagescan`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from flask.sessions import SecureCookieSessionInterface

from .config import Layer
from .pagescan import template_session_uses

if TYPE_CHECKING:
    from .checks import Target
    from .sourcescan import Spot


def hand_written(t: Target) -> Iterator[str]:
    """PS505: root-relative URLs in templates and source, under a URL prefix."""
    prefix = t.config.url_prefix
    if not prefix:
        return
    for spot, better in t.hand_written:
        yield f"{spot}: {spot.text} leaves the URL prefix {prefix}; write {better}"


def session_uses(t: Target) -> list[Spot]:
    """Where the app uses Flask's cookie session (``session``, ``flash``)
    without the key it needs; empty when it has a key or another backend."""
    builtin = type(t.app.session_interface) is SecureCookieSessionInterface
    if t.app.secret_key or not builtin:
        return []
    uses = t.scan.session_uses + template_session_uses(t.app)
    return sorted(uses, key=lambda spot: (not spot.file.endswith(".py"), spot.file, spot.line))


def session_without_key(t: Target) -> Iterator[str]:
    """PS207: ``session`` or ``flash`` is used and SECRET_KEY is not set."""
    uses = session_uses(t)
    if uses:
        first, others = uses[0], len(uses) - 1
        more = f" (and {others} other place{'s' * (others > 1)})" if others else ""
        used = first.text.removeprefix("flask.")
        yield (
            f"{first} uses {used}{more}, but SECRET_KEY is not set, so every request that "
            "uses the session or flash answers 500 Internal Server Error"
        )


def key_in_source(t: Target, weak: bool) -> Iterator[str]:
    """PS206: the secret key is a string written in the app's source."""
    key = t.app.secret_key
    if isinstance(key, str) and key and not weak:
        for spot in t.scan.strings:
            if spot.text == key:
                yield (
                    f"SECRET_KEY is written in {spot}, so anyone who can read the code "
                    "(on GitHub, say) can forge the app's session cookies"
                )
                return


def shared_state(t: Target) -> Iterator[str]:
    """PS601: module-level data that views change, under several processes."""
    workers = t.config.workers if t.config.server != "werkzeug" else 1
    if workers < 2:
        return
    origin = t.config.origins.get("workers")
    set_by = f" ({origin.explain()})" if origin and origin.layer is not Layer.DEFAULT else ""
    for state in t.scan.shared_state:
        views = " and ".join(", ".join(state.views).rsplit(", ", 1))
        which = "view" if len(state.views) == 1 else "views"
        article = "an" if state.kind[0] in "aeiouAEIOU" else "a"
        yield (
            f"{state.name} in {state.spot} is {article} {state.kind} that the {which} {views} "
            f"change{'s' * (len(state.views) == 1)}, but each of the {workers} worker "
            f"processes{set_by} has its own copy, so visitors see different data from one "
            "request to the next"
        )
