"""The gunicorn versions our worker was tested with, and the names it needs.

Everything else we ask of gunicorn is documented and stable since gunicorn
19: ``BaseApplication`` (``load_config``, ``load``), ``cfg.set``, the server
hooks, ``worker_class`` given as a class, and the worker base class
:class:`gunicorn.workers.base.Worker` (``init_process``, ``run``,
``notify``, ``handle_exit``, ``handle_quit``, ``handle_error``, ``alive``,
``sockets``, ``wsgi``, ``nr``, ``max_requests``).

Our worker (:mod:`.gunicorn_worker`, which answers requests in
:mod:`.gunicorn_answer`) also uses the HTTP layer that every gunicorn worker
uses, which gunicorn does not document. These are all the names it relies
on, unchanged in every release from 23.0 to 27.0:

- ``gunicorn.http.RequestParser(cfg, source, peer)``, iterated with ``next()``;
  ``source`` is anything with ``recv(size)``;
- ``parser.unreader.read()``: the bytes the parser read ahead (or one more
  read from the source);
- ``gunicorn.http.wsgi.create(req, sock, peer, server, cfg)`` returning
  ``(response, environ)``;
- the response's ``start_response``, ``write``, ``write_file``, ``close``,
  ``should_close``, ``force_close`` and ``headers_sent``;
- the request's ``body.read(size)``;
- ``gunicorn.http.errors.NoMoreData``;
- ``gunicorn.util.http_date()``, the text of every response's ``Date``
  header, which our worker has made once a second (:func:`cache_date_header`);
- ``gunicorn.errors.HaltServer`` (its ``exit_status``), which the arbiter can
  let out of ``run()`` when several workers fail to boot at once;
- ``Arbiter.WORKER_BOOT_ERROR`` and ``Arbiter.APP_LOAD_ERROR``, its exit statuses.

Reloads (:mod:`.gunicorn_reload`) use the documented signals SIGTTIN and
SIGTTOU (one worker more, one fewer), and rely on one thing the docs do not
say: SIGTTOU stops the *oldest* worker (the arbiter's ``manage_workers``
sorts by age), in every release from 23.0 to 27.0. Outside :data:`TESTED`
a reload changes nothing and says why (:func:`reload_unsupported`): a
release that stopped another worker would leave old code serving.

Outside :data:`TESTED`, ``flask serve`` runs gunicorn's own ``gthread``
worker instead (see :func:`worker_fallback`): it serves, without the
protections of ours, and the start-up check ``PS701`` says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..clock import EverySecond

#: The gunicorn releases the whole test suite passes on: [first, last] by
#: (major, minor). CI runs it on the first (the declared floor) and the newest.
TESTED = ((23, 0), (27, 0))


def installed() -> str | None:
    """The installed gunicorn's version, read without importing it."""
    try:
        return version("gunicorn")
    except PackageNotFoundError:
        return None


def _major_minor(release: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", release)
    return None if match is None else (int(match[1]), int(match[2]))


def is_tested(release: str) -> bool:
    """Whether ``release`` (``"27.0.1"``) lies in :data:`TESTED`."""
    major_minor = _major_minor(release)
    return major_minor is not None and TESTED[0] <= major_minor <= TESTED[1]


def networks_allowed() -> bool:
    """Whether gunicorn's ``forwarded_allow_ips`` takes networks (``10.0.0.0/8``): 24.1 on."""
    major_minor = _major_minor(installed() or "0.0")
    return major_minor is not None and major_minor >= (24, 1)


def tested_range() -> str:
    """:data:`TESTED` as users write it in a requirement."""
    first, last = TESTED
    return f"gunicorn>={first[0]}.{first[1]},<{last[0] + 1}"


def worker_fallback(server_options: Mapping[str, Any]) -> str | None:
    """Why gunicorn's own worker serves instead of ours, or None if ours does."""
    release = installed()
    if release is not None and not is_tested(release):
        return (
            f"gunicorn {release} is outside the versions flask-prodserve was tested with "
            f"({tested_range()})"
        )
    # TLS, HTTP/2 with prior knowledge and PROXY protocol v2 read the socket
    # before an HTTP/1 request head arrives: our worker reads the head first.
    if server_options.get("certfile") or server_options.get("keyfile"):
        return "TLS (certfile) is served by gunicorn's own worker"
    if server_options.get("http2_cleartext") not in (None, "off", "upgrade"):
        return "cleartext HTTP/2 is served by gunicorn's own worker"
    if server_options.get("proxy_protocol") not in (None, False, True, "off", "v1"):
        return "PROXY protocol v2 is served by gunicorn's own worker"
    return None


def reload_unsupported() -> str | None:
    """Why a reload cannot be done with the installed gunicorn, or None."""
    release = installed()
    if release is None or is_tested(release):
        return None
    return (
        f"reloads rely on how gunicorn {tested_range()} stops a worker on SIGTTOU, and "
        f"gunicorn {release} is outside that range: restart the server instead"
    )


class _DateEverySecond:
    """``gunicorn.util.http_date``, made once a second when asked for now."""

    def __init__(self, made: Callable[..., str]) -> None:
        self.made = made
        self.now = EverySecond(made)

    def __call__(self, timestamp: float | None = None) -> str:
        return self.now() if timestamp is None else self.made(timestamp)


def cache_date_header() -> None:
    """Have gunicorn make its ``Date`` header once a second, not per response.

    gunicorn formats it anew for every response, which took 3.7 % of a
    worker's Python time at saturation (py-spy, ``wrk -c32`` on ``/json``)
    although the header counts whole seconds: made once a second, 6.4 %
    [3.1, 9.8] more requests/s on ``/json`` and 4.1 % [0.8, 7.4] on
    ``/page``, head to head (docs/servers.rst, "Tail latency"). Our worker
    runs only on the releases in :data:`TESTED`, where the name is
    unchanged; it is left as it is if it is not there.
    """
    from gunicorn import util

    made = getattr(util, "http_date", None)
    if callable(made) and not isinstance(made, _DateEverySecond):
        util.http_date = _DateEverySecond(made)
