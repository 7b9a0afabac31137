"""From a loaded app and the user's options to a running server.

Nothing here prints or exits: the CLI passes ``announce`` to show the
banner once the socket is bound, and turns the returned status into the
process exit status.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import backends, metrics, sockets
from .checks import Problem, startup_warnings
from .config import OPTIONS, Facts, ServeConfig, resolve
from .cpus import available_cpus
from .errors import ConfigError
from .extension import extension_defaults
from .reloading import OBJECT, AppLoader, AppSource

if TYPE_CHECKING:
    import socket

    from flask import Flask


def facts_about(app: Flask) -> Facts:
    """What the resolver needs to know about ``app`` and this machine."""
    return Facts(
        debug=bool(app.debug),
        platform=sys.platform,
        cpus=available_cpus(),
        gunicorn_importable=importlib.util.find_spec("gunicorn") is not None,
        max_content_length=app.config.get("MAX_CONTENT_LENGTH"),
        metrics_importable=metrics.available(),
    )


def config_for(
    app: Flask,
    cli: Mapping[str, Any],
    *,
    cli_labels: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> ServeConfig:
    """Resolve every option for ``app`` (see :func:`flask_prodserve.config.resolve`)."""
    return resolve(
        cli=cli,
        env=os.environ if env is None else env,
        config=app.config,
        extension=extension_defaults(app),
        facts=facts_about(app),
        cli_labels=cli_labels,
    )


# app.run()'s names for settings that mean the same here.
_RUN_NAMES = {"use_reloader": "reload", "use_debugger": "debugger"}


def run_options(app: Flask, options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """``flask_prodserve.serve(app, **options)``'s options as ``(values, labels)`` for
    :func:`config_for`, taking ``app.run()``'s names too: ``debug`` sets the app's
    debug flag as ``app.run(debug=...)`` does. An unknown name is a :class:`ConfigError`."""
    known = [o.name for o in OPTIONS] + ["debug", *_RUN_NAMES]
    for name, value in options.items():
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"known names: {', '.join(known)}"
            raise ConfigError(f"serve({name}=...)", value, f"unknown option; {hint}")
    if options.get("debug") is not None:
        app.debug = bool(options["debug"])
    named = {_RUN_NAMES.get(n, n): (n, v) for n, v in options.items() if n != "debug"}
    values = {name: value for name, (_, value) in named.items()}
    labels = {name: f"serve({given}=...)" for name, (given, _) in named.items()}
    return values, labels


def serve(
    app: Flask,
    config: ServeConfig,
    announce: Callable[[ServeConfig, list[str], list[Problem]], None],
    stopping: Callable[[str, bool], None],
    reload_note: Callable[[str], None] = lambda line: None,
    source: AppSource = OBJECT,
) -> int:
    """Bind, and serve until stopped; return the exit status.

    ``announce(config, urls, warnings)`` is called once the server has accepted
    its settings (``config`` with the address of the socket systemd passed, if
    it passed one), ``stopping(signal_name, graceful)`` when a stop signal arrives,
    ``reload_note(line)`` as a reload goes. ``source`` says how to import the
    app again for a reload (:func:`flask_prodserve.reloading.load`).
    In production the checks run first, and a failed check at error level
    (:class:`~flask_prodserve.checks.ChecksFailed`) stops before binding.
    """
    backend = backends.load(config.server)
    backend.check_options(config)
    sock = None
    if config.server == "werkzeug":
        from .backends.dev import inherited_socket

        sock = inherited_socket()  # the reloader's child: its parent announced
    started: Callable[[], None] = lambda: None  # noqa: E731
    if sock is None:
        sock, config, warnings = _listen(app, config)
        urls = sockets.display_urls(sock, config.url_prefix)
        started = lambda: announce(config, urls, warnings)  # noqa: E731
    try:
        loader = AppLoader(source, config, metrics.start(config))
        first = loader.first(app)
        events = backends.Events(started, stopping, reload_note, loader)
        return backend.run(first.wsgi_app, sock, config, first.lifecycle, events)
    finally:
        sock.close()
        metrics.stop()  # only in the process that started them, not in a gunicorn worker


def _listen(app: Flask, config: ServeConfig) -> tuple[socket.socket, ServeConfig, list[Problem]]:
    """The socket systemd passed, or a new one once the checks have passed;
    the config says where it listens, and the checks judged that address."""
    inherited = sockets.from_systemd(os.environ)
    if inherited is not None:
        config = sockets.adopt(config, inherited)
    try:
        warnings = startup_warnings(app, config) if config.mode == "prod" else []
    except BaseException:
        if inherited is not None:
            inherited.close()  # our copy: systemd keeps the socket open
        raise
    sock = inherited or sockets.bind(
        config.host, config.port, config.backlog, where=config.origins["port"].label
    )
    return sock, config, warnings
