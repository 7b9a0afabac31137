"""Static files served before the Flask request cycle, by WhiteNoise.

In production, :func:`static_layer` puts WhiteNoise in front of the app,
inside the URL prefix mount, for the app's static folder and every
blueprint's. It answers from a table of files made at start-up: validators
(``ETag``, ``Last-Modified``) and 304s, byte ranges (206), the ``.gz`` and
``.br`` variants that :func:`compress_folders` wrote next to the files
(``flask serve --compress-static``), and the cache lifetime of
:func:`cache_control`. The body is the server's ``wsgi.file_wrapper``, so
gunicorn sends it with ``sendfile`` and waitress from the file.

Not for the dev server: a file added or changed after start-up would not be
seen (WhiteNoise hands requests for unknown names to the app, whose own
static route then serves them, uncached). The same lifetimes are written
into the nginx file by :mod:`flask_prodserve.emit.nginx`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment
    from flask import Flask

SHORT_MAX_AGE = 60
"""Seconds a browser or CDN may reuse a file with an ordinary name (WhiteNoise's default)."""

A_YEAR = 365 * 24 * 60 * 60
"""The lifetime of a fingerprinted name, whose content never changes."""

# A content hash as the last part of the name before its extension(s): at least
# 8 lowercase hex digits (webpack's [contenthash], Django's manifest storage,
# `app.3f9a1c2e.js`) or 8 upper-case base32 characters (esbuild's [hash]), after
# a dot or a hyphen, holding both a digit and a letter (so neither a date such
# as report-20240101.pdf nor a word such as app-download.js counts). PCRE and
# Python read it alike: the nginx file uses it too.
FINGERPRINT = (
    r"[.-](?=[^./-]*[0-9])(?=[^./-]*[a-zA-Z])(?:[0-9a-f]{8,64}|[A-Z2-7]{8})"
    r"\.[A-Za-z0-9]+(?:\.[A-Za-z0-9]+)*$"
)
_FINGERPRINT = re.compile(FINGERPRINT)

# Text formats worth compressing (the rest are images, fonts, archives: compressed already).
TEXT_SUFFIXES = frozenset(
    {".css", ".js", ".mjs", ".map", ".json", ".svg", ".html", ".htm", ".txt", ".xml", ".csv"}
)


def is_fingerprinted(url: str) -> bool:
    """Whether the file name in ``url`` carries a content hash (``app.3f9a1c2e.js``)."""
    return _FINGERPRINT.search(url) is not None


def cache_control(url: str, max_age: int = SHORT_MAX_AGE) -> str:
    """The ``Cache-Control`` value for the file at ``url``: a year and
    ``immutable`` for a fingerprinted name, else ``max_age`` seconds."""
    if is_fingerprinted(url):
        return f"public, max-age={A_YEAR}, immutable"
    return f"public, max-age={max_age}"


def short_max_age(app: Flask) -> int:
    """The lifetime of ordinary names: the app's ``SEND_FILE_MAX_AGE_DEFAULT``
    when it set one (Flask's own static route uses it too), else a minute."""
    value = app.config.get("SEND_FILE_MAX_AGE_DEFAULT")
    if value is None:
        return SHORT_MAX_AGE
    return int(value.total_seconds()) if hasattr(value, "total_seconds") else int(value)


@dataclass(frozen=True)
class StaticFolder:
    """A static route's URL path within the app (``/static``) and its folder on disk."""

    url_path: str
    folder: str


def static_folders(app: Flask) -> list[StaticFolder]:
    """The app's static folder and each blueprint's, as routed, that exist on disk.

    Read from the URL map, so a blueprint's ``url_prefix`` and a custom
    ``static_url_path`` are where Flask itself serves them. Routes bound to
    a host or subdomain are left to Flask.
    """
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint != "static" and not rule.endpoint.endswith(".static"):
            continue
        if rule.host or rule.subdomain or not rule.rule.endswith("/<path:filename>"):
            continue
        owner = app if rule.endpoint == "static" else app.blueprints.get(rule.endpoint[:-7])
        folder = owner.static_folder if owner is not None else None
        if folder and os.path.isdir(folder):
            found.append(StaticFolder(rule.rule[: -len("/<path:filename>")], folder))
    return found


def static_layer(app: Flask) -> NoneMatch:
    """``app`` behind WhiteNoise for every folder of :func:`static_folders`."""
    from whitenoise import WhiteNoise

    max_age = short_max_age(app)

    def set_headers(headers: Any, path: str, url: str) -> None:
        headers["Cache-Control"] = cache_control(url, max_age)
        # WhiteNoise writes charset="utf-8"; Flask and nginx write it unquoted.
        headers["Content-Type"] = headers["Content-Type"].replace('"utf-8"', "utf-8")

    layer = WhiteNoise(
        app,
        max_age=max_age,
        allow_all_origins=False,  # as Flask's own route and the nginx file
        add_headers_function=set_headers,
    )
    for static in static_folders(app):
        layer.add_files(static.folder, prefix=static.url_path + "/")
    return NoneMatch(layer)


class NoneMatch:
    """Let WhiteNoise answer 304 to every ``If-None-Match`` that RFC 9110 says
    matches: ``*``, a list of tags, a weak tag (``W/"..."``). WhiteNoise itself
    compares the header's whole value with the file's ``ETag``; here a
    matching header is replaced by that exact tag before it looks."""

    def __init__(self, whitenoise: Any) -> None:
        from whitenoise.string_utils import decode_path_info

        self.whitenoise = whitenoise
        self.decode = decode_path_info

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        tags = environ.get("HTTP_IF_NONE_MATCH")
        if tags is not None:
            static = self.whitenoise.files.get(self.decode(environ.get("PATH_INFO", "")))
            etag = getattr(static, "etag", None)
            if etag and none_match_hits(tags, etag):
                environ["HTTP_IF_NONE_MATCH"] = etag
        body: Iterable[bytes] = self.whitenoise(environ, start_response)
        return body


def none_match_hits(header: str, etag: str) -> bool:
    """Whether ``If-None-Match: header`` matches ``etag`` (weak comparison)."""
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return header.strip() == "*" or etag.removeprefix("W/") in tags


def files_in(folders: list[StaticFolder]) -> Iterator[str]:
    """Every file under ``folders``, compressed variants excluded."""
    for static in folders:
        for dirpath, _dirs, names in os.walk(static.folder):
            for name in sorted(names):
                if not name.endswith((".gz", ".br")):
                    yield os.path.join(dirpath, name)


def uncompressed(folders: list[StaticFolder], min_size: int) -> list[str]:
    """Text files of at least ``min_size`` bytes with neither a ``.gz`` nor a ``.br`` variant."""
    return [
        path
        for path in files_in(folders)
        if os.path.splitext(path)[1].lower() in TEXT_SUFFIXES
        and os.path.getsize(path) >= min_size
        and not any(os.path.isfile(path + suffix) for suffix in (".gz", ".br"))
    ]


@dataclass(frozen=True)
class Compressed:
    """One file :func:`compress_folders` compressed: its size, and each variant's."""

    path: str
    size: int
    variants: dict[str, int]  # ".gz" -> bytes


def brotli_available() -> bool:
    """Whether ``.br`` variants can be written (the ``Brotli`` package is installed)."""
    from whitenoise.compress import Compressor

    return bool(Compressor(quiet=True).use_brotli)


def compress_folders(
    folders: list[StaticFolder], on_file: Callable[[Compressed], None] = lambda c: None
) -> list[Compressed]:
    """Write ``.gz`` (and ``.br`` where Brotli is installed) next to every file
    that compresses to 95 % of its size or less, once, with WhiteNoise's
    compressor (the same as ``python -m whitenoise.compress``); images, fonts
    and archives are skipped. A variant keeps its file's modification time.
    """
    from whitenoise.compress import Compressor

    compressor = Compressor(quiet=True)
    done = []
    for path in files_in(folders):
        if not compressor.should_compress(path):
            continue
        written = list(compressor.compress(path))  # a generator before WhiteNoise 6.9
        if written:
            variants = {w[len(path) :]: os.path.getsize(w) for w in written}
            done.append(Compressed(path, os.path.getsize(path), variants))
            on_file(done[-1])
    return done
