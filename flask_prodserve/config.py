"""The option table and the one function that applies precedence.

Every option of ``flask serve`` is declared once, in :data:`OPTIONS`. The CLI
flags, the ``FLASK_SERVE_*`` environment names, the ``PRODSERVE_*`` config
keys, ``--help`` and the docs reference all derive from it.

Precedence, applied only by :func:`resolve`: command-line flag >
``FLASK_SERVE_<NAME>`` environment variable > ``PRODSERVE_<NAME>`` in
``app.config`` > ``ProdServe(<name>=...)`` argument > built-in default.

This module is pure: it imports no server and no Flask app, and reads the
environment only through the mapping it is given.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import click

from . import converters as c
from .errors import NO_VALUE, ConfigError
from .proxy import ProxyTrust, as_proxy

ENV_PREFIX = "FLASK_SERVE_"
CONFIG_PREFIX = "PRODSERVE_"


class Layer(enum.IntEnum):
    """Where a value came from, strongest first."""

    #: The listening socket systemd passed (socket activation) decides host
    #: and port over any setting: it is already bound when we start.
    SYSTEMD = -1
    CLI = 0
    ENV = 1
    CONFIG = 2
    EXTENSION = 3
    DEFAULT = 4


@dataclass(frozen=True)
class Facts:
    """What the resolver needs to know about the app and the machine."""

    debug: bool
    platform: str
    cpus: int
    gunicorn_importable: bool
    max_content_length: int | None = None  # the app's MAX_CONTENT_LENGTH
    metrics_importable: bool = True  # prometheus_client, for metrics_path


@dataclass(frozen=True)
class Origin:
    """A value's source, with a label a user recognises (``--port``, ...)."""

    layer: Layer
    label: str
    #: The explicit setting this value replaced, ``--port 9000``, if it differed.
    overrides: str = ""

    def explain(self) -> str:
        """``set by --port`` for an explicit value, the reason for a default."""
        return self.label if self.layer is Layer.DEFAULT else f"set by {self.label}"


Default = Callable[[Mapping[str, Any], Mapping[str, str], Facts], tuple[Any, str]]


@dataclass(frozen=True)
class Option:
    """One user-facing setting."""

    name: str
    help: str
    # Converts a flag's value, a variable's or a config value.
    type: click.ParamType  # type: ignore[type-arg,unused-ignore]
    default: Default
    metavar: str = ""
    is_flag: bool = False
    multiple: bool = False  # the flag may be repeated
    short: str = ""  # a one-letter flag, where ``flask run`` has the same one
    production: bool = False  # only production servers use it; the dev server does not

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self.type.choices) if isinstance(self.type, click.Choice) else ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def config_key(self) -> str:
        return CONFIG_PREFIX + self.name.upper()

    def label(self, layer: Layer, *, flag: str | None = None) -> str:
        return {
            Layer.CLI: flag or self.flag,
            Layer.ENV: self.env,
            Layer.CONFIG: f"app.config[{self.config_key!r}]",
            Layer.EXTENSION: f"ProdServe({self.name}=...)",
            Layer.DEFAULT: "default",
        }[layer]


def _const(value: Any, why: str = "default") -> Default:
    return lambda resolved, env, facts: (value, why)


def _default_host(resolved: Mapping[str, Any], env: Mapping[str, str], f: Facts) -> tuple[Any, str]:
    # PaaS platforms set PORT and route traffic to every interface, like
    # gunicorn's own default does; the dev server never binds publicly by default.
    if "PORT" in env and resolved["mode"] == "prod":
        return "0.0.0.0", "default: PORT is set (a PaaS), so listen on all interfaces"
    return "127.0.0.1", "default"


def _default_port(resolved: Mapping[str, Any], env: Mapping[str, str], f: Facts) -> tuple[Any, str]:
    if "PORT" in env:
        return _convert(OPTION_BY_NAME["port"], env["PORT"], "PORT"), "PORT environment variable"
    if resolved["mode"] == "dev":
        return 5000, "default for dev mode"
    return 8000, "default for production mode"


def _default_workers(
    resolved: Mapping[str, Any], env: Mapping[str, str], f: Facts
) -> tuple[Any, str]:
    if resolved["server"] == "werkzeug":
        return 1, "werkzeug runs one process"
    if resolved["server"] == "waitress":
        # One process of many threads, as waitress is made to run; more on
        # request (--workers, not on Windows). WEB_CONCURRENCY is sized for
        # gunicorn's processes of few threads.
        return 1, "default for waitress"
    if "WEB_CONCURRENCY" in env:
        value = _convert(OPTION_BY_NAME["workers"], env["WEB_CONCURRENCY"], "WEB_CONCURRENCY")
        return value, "WEB_CONCURRENCY environment variable"
    # One process per usable CPU: each worker answers quick requests one at
    # a time in its event loop's thread, like a sync worker, so more
    # processes than CPUs only take turns on them (measured on 2 CPUs against
    # two per CPU: p99 at saturation 7-10 ms against 11-18, open-loop p99
    # 0.9-1.5 ms against 1.4-1.9, requests/s 3-9 % higher; docs/servers.rst).
    return f.cpus, f"one per usable CPU ({f.cpus} CPUs)"


def _default_upstream(
    resolved: Mapping[str, Any], env: Mapping[str, str], f: Facts
) -> tuple[Any, str]:
    if not resolved["port"]:
        return c.Addresses(), "none: port 0 is picked at start"
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(resolved["host"], resolved["host"])
    address = f"[{host}]:{resolved['port']}" if ":" in host else f"{host}:{resolved['port']}"
    return c.Addresses((address,)), "default: this server's address"


def _default_threads(
    resolved: Mapping[str, Any], env: Mapping[str, str], f: Facts
) -> tuple[Any, str]:
    # Enough threads that requests waiting on a database or an API do not
    # queue behind each other (50 one-second requests at once take 2 s on 2
    # CPUs); quick requests run one at a time per process whatever the count.
    if resolved["server"] == "waitress":
        return 32, "default for waitress (one process)"
    return 16, "default"


def _default_body_size(
    resolved: Mapping[str, Any], env: Mapping[str, str], f: Facts
) -> tuple[Any, str]:
    if f.max_content_length:
        return f.max_content_length, "the app's MAX_CONTENT_LENGTH"
    return 1024**3, "default (1 GiB, as waitress; set MAX_CONTENT_LENGTH to lower it)"


def _on_in_production(
    resolved: Mapping[str, Any], env: Mapping[str, str], f: Facts
) -> tuple[Any, str]:
    if resolved["mode"] == "prod":
        return True, "default in production"
    return False, "off in dev mode: Flask's own static route sees every change at once"


def _follows_debug(
    resolved: Mapping[str, Any], env: Mapping[str, str], f: Facts
) -> tuple[Any, str]:
    if resolved["mode"] == "prod":
        return False, "always off in production"
    return f.debug, f"follows the debug flag ({'on' if f.debug else 'off'})"


OPTIONS: tuple[Option, ...] = (
    Option(
        "mode",
        "dev: Werkzeug's server with reloader and debugger; prod: a production "
        "server. auto: dev when the app's debug flag is on, else prod.",
        c.OneOf("auto", "dev", "prod"),
        _const("auto"),
    ),
    Option(
        "server",
        "Production server. auto: gunicorn on Linux/macOS when installed, "
        "else waitress (always waitress on Windows).",
        c.OneOf("auto", "gunicorn", "waitress"),
        _const("auto"),
    ),
    Option(
        "host",
        "Address to listen on.",
        c.Parsed(c.as_host),
        _default_host,
        metavar="ADDRESS",
        short="-h",
    ),
    Option(
        "port",
        "Port to listen on (0 picks a free one). Default: $PORT if set, "
        "else 5000 in dev and 8000 in prod.",
        c.WholeNumber(0, 65535, 8000),
        _default_port,
        metavar="PORT",
        short="-p",
    ),
    Option(
        "workers",
        "Worker processes. Default: gunicorn: $WEB_CONCURRENCY, else one per usable "
        "CPU; waitress: 1 (on Windows, always 1).",
        c.WholeNumber(1, 1024, 4),
        _default_workers,
        metavar="N",
        production=True,
    ),
    Option(
        "threads",
        "Threads per worker process. Default: 16 (gunicorn), 32 (waitress).",
        c.WholeNumber(1, 1024, 16),
        _default_threads,
        metavar="N",
        production=True,
    ),
    Option(
        "url_prefix",
        "Serve the app under this path, e.g. /app. Outside it, clients get a 404.",
        c.Parsed(c.as_url_prefix),
        _const(""),
        metavar="PATH",
    ),
    Option(
        "proxy",
        "Trusted proxy hops in front of this server, optionally with their "
        "addresses: 1 (any peer), 1,127.0.0.1. Their X-Forwarded-* headers set the "
        "client address, scheme, host and prefix. Default 0: trust none.",
        c.Parsed(as_proxy),
        _const(ProxyTrust()),
        metavar="N[,ADDR...]",
    ),
    Option(
        "upstream",
        "Instances behind the nginx file that --emit nginx prints: host:port, "
        "repeatable. Default: this server's address.",
        c.Parsed(c.as_addresses),
        _default_upstream,
        metavar="HOST:PORT",
        multiple=True,
    ),
    Option(
        "timeout",
        "Seconds a request may go without progress (a client that stops sending "
        "its body), and a worker without a heartbeat (every thread stuck) before "
        "it is killed and replaced.",
        c.WholeNumber(1, 86400, 30),
        _const(30),
        metavar="SECONDS",
        production=True,
    ),
    Option(
        "keepalive",
        "Seconds an idle keep-alive connection is kept open (production).",
        c.WholeNumber(1, 3600, 5),
        _const(5),
        metavar="SECONDS",
        production=True,
    ),
    Option(
        "share_connections",
        "Let every worker answer requests on every kept-alive connection, so a "
        "request does not wait for a busy worker while another idles (gunicorn "
        "on Linux; it costs 4-8 % of the requests/s at saturation). Off: a connection "
        "stays with the worker that accepted it.",
        c.BOOL,
        _const(True),
        is_flag=True,
        production=True,
    ),
    Option(
        "header_timeout",
        "Seconds a client has to send a request's line and headers; slower "
        "clients are disconnected (production).",
        c.WholeNumber(1, 3600, 10),
        _const(10),
        metavar="SECONDS",
        production=True,
    ),
    Option(
        "max_body_size",
        "Largest request body accepted; larger ones get 413, with or without "
        "Content-Length. Default: the app's MAX_CONTENT_LENGTH, else 1 GiB.",
        c.Parsed(c.as_size(1, 1024**4, "10M")),
        _default_body_size,
        metavar="BYTES",
    ),
    Option(
        "max_header_size",
        "Largest request line plus headers, in bytes (production); larger get 431.",
        c.Parsed(c.as_size(1024, 16 * 1024**2, "64K")),
        _const(64 * 1024),
        metavar="BYTES",
        production=True,
    ),
    Option(
        "max_header_count",
        "Most header fields in one request (production).",
        c.WholeNumber(1, 32768, 100),
        _const(100),
        metavar="N",
        production=True,
    ),
    Option(
        "max_request_line",
        "Longest request line (method, URL, protocol) in bytes (production).",
        c.WholeNumber(256, 8190, 8190),
        _const(8190),
        metavar="BYTES",
        production=True,
    ),
    Option(
        "backlog",
        "Connections the kernel may queue before the server accepts them.",
        c.WholeNumber(1, 65535, 2048),
        _const(2048),
        metavar="N",
    ),
    Option(
        "graceful_timeout",
        "Seconds in-flight requests get to finish after SIGTERM or Ctrl+C; "
        "past that they are cut and the exit status is 5.",
        c.WholeNumber(0, 86400, 30),
        _const(30),
        metavar="SECONDS",
        production=True,
    ),
    Option(
        "access_log",
        "Log one line per request (production).",
        c.BOOL,
        _const(True),
        is_flag=True,
        production=True,
    ),
    Option(
        "access_log_format",
        "combined (Apache style plus seconds taken), json (one object per line), "
        "or a template such as '{remote_addr} {status} {path}'.",
        c.Parsed(c.as_log_format),
        _const("combined"),
        metavar="FORMAT",
        production=True,
    ),
    Option(
        "access_log_file",
        "Where access lines go: - for stdout, or a file path.",
        click.STRING,
        _const("-"),
        metavar="PATH",
        production=True,
    ),
    Option(
        "health_path",
        "Answer this path (e.g. /healthz) with 200 outside the app, for load "
        "balancers; PATH/ready also runs the @prodserve.ready checks. Off by default.",
        c.Parsed(c.as_url_prefix),  # the same normalisation: "healthz" -> "/healthz", "" = off
        _const(""),
        metavar="PATH",
    ),
    Option(
        "static_files",
        "Serve the static folders (the app's and each blueprint's) before the app, "
        "with WhiteNoise: validators, ranges, .gz/.br variants, a minute's caching "
        "or a year for fingerprinted names (production).",
        c.BOOL,
        _on_in_production,
        is_flag=True,
        production=True,
    ),
    Option(
        "metrics_path",
        "Answer this path (e.g. /metrics) with Prometheus metrics of every worker, "
        "outside the app and the URL prefix, never logged. Needs "
        "'pip install flask-prodserve[metrics]'. Off by default.",
        c.Parsed(c.as_url_prefix),
        _const(""),
        metavar="PATH",
    ),
    Option(
        "metrics_allow",
        "Client addresses or networks that may read metrics_path "
        "(e.g. 127.0.0.1,10.0.0.0/8); others get 404. Default: any address.",
        c.Parsed(c.as_networks),
        _const(c.Networks()),
        metavar="ADDR[,ADDR...]",
    ),
    Option(
        "max_requests",
        "Replace a worker after this many requests, to contain memory leaks; the "
        "replacement serves first. 0: never (waitress on Windows: always 0).",
        c.WholeNumber(0, 10**9, 1000),
        _const(0),
        metavar="N",
        production=True,
    ),
    Option(
        "max_requests_jitter",
        "Add up to this many requests at random to max_requests, so workers do "
        "not all restart at once.",
        c.WholeNumber(0, 10**9, 50),
        _const(0),
        metavar="N",
        production=True,
    ),
    Option(
        "reload_file",
        "Reload the app with the code on disk when this file's modification time "
        "changes ('touch PATH'), as kill -HUP does; for Windows and platforms "
        "without signals. Off by default.",
        click.STRING,
        _const(""),
        metavar="PATH",
        production=True,
    ),
    Option(
        "server_options",
        "Raw options for the chosen server, as a JSON object, checked against "
        "its own option names, e.g. '{\"worker_connections\": 500}'.",
        c.Parsed(c.as_mapping),
        _const({}),
        metavar="JSON",
        production=True,
    ),
    Option(
        "ignore_checks",
        "Production-readiness checks to skip, by ID (e.g. PS303,PS401): "
        "'flask serve --check' lists the problems found, each with its ID.",
        c.Parsed(c.as_check_ids),
        _const(""),
        metavar="IDS",
    ),
    Option(
        "reload",
        "Restart when code changes (dev mode only). Default: follows the debug flag.",
        c.BOOL,
        _follows_debug,
        is_flag=True,
    ),
    Option(
        "debugger",
        "Interactive debugger in the browser (dev mode only). Default: follows the debug flag.",
        c.BOOL,
        _follows_debug,
        is_flag=True,
    ),
)

OPTION_BY_NAME: Mapping[str, Option] = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class ServeConfig:
    """The resolved settings, and where each value came from."""

    mode: Literal["dev", "prod"]
    server: Literal["werkzeug", "waitress", "gunicorn"]
    host: str
    port: int
    workers: int
    threads: int
    url_prefix: str
    proxy: ProxyTrust
    upstream: c.Addresses
    timeout: int
    keepalive: int
    share_connections: bool
    header_timeout: int
    max_body_size: int
    max_header_size: int
    max_header_count: int
    max_request_line: int
    backlog: int
    graceful_timeout: int
    access_log: bool
    access_log_format: str
    access_log_file: str
    health_path: str
    static_files: bool
    metrics_path: str
    metrics_allow: c.Networks
    max_requests: int
    max_requests_jitter: int
    reload_file: str
    server_options: Mapping[str, Any]
    ignore_checks: str
    reload: bool
    debugger: bool
    origins: Mapping[str, Origin] = field(default_factory=dict, compare=False)

    def rows(self) -> list[tuple[str, Any, str]]:
        """``(name, value, where it came from)`` for every option."""
        return [(o.name, getattr(self, o.name), self.origins[o.name].label) for o in OPTIONS]


def _convert(option: Option, value: Any, label: str) -> Any:
    try:
        return option.type.convert(value, None, None)
    except click.BadParameter as exc:
        raise ConfigError(label, value, exc.message) from None


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"did you mean {close[0]}?" if close else f"known names: {', '.join(known)}"


def check_names(names: Mapping[str, Any], layer: Layer) -> None:
    """Reject a ``PRODSERVE_*`` key, ``FLASK_SERVE_*`` variable or ``ProdServe``
    argument that names no option (a typo would otherwise be ignored)."""
    spell: Callable[[Option], str] = {
        Layer.ENV: lambda o: o.env,
        Layer.CONFIG: lambda o: o.config_key,
    }.get(layer, lambda o: o.name)
    known = {spell(o): o for o in OPTIONS}
    for name in names:
        if name not in known:
            raise ConfigError(name, names[name], f"unknown setting; {_suggest(name, list(known))}")


def layer_values(
    cli: Mapping[str, Any],
    env: Mapping[str, str],
    config: Mapping[str, Any],
    extension: Mapping[str, Any],
) -> dict[Layer, dict[str, Any]]:
    """The explicit values of each layer, keyed by option name, unconverted."""
    env_ours = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    config_ours = {k: v for k, v in config.items() if k.startswith(CONFIG_PREFIX)}
    check_names(env_ours, Layer.ENV)
    check_names(config_ours, Layer.CONFIG)
    check_names(extension, Layer.EXTENSION)
    return {
        Layer.CLI: {k: v for k, v in cli.items() if v is not None},
        Layer.ENV: {k[len(ENV_PREFIX) :].lower(): v for k, v in env_ours.items()},
        Layer.CONFIG: {k[len(CONFIG_PREFIX) :].lower(): v for k, v in config_ours.items()},
        Layer.EXTENSION: dict(extension),
    }


def validate(values: Mapping[str, Any], layer: Layer) -> None:
    """Convert every value of one layer, raising :class:`ConfigError` on the first bad one."""
    for name, value in values.items():
        option = OPTION_BY_NAME[name]
        _convert(option, value, option.label(layer))


def resolve(
    *,
    cli: Mapping[str, Any],
    env: Mapping[str, str],
    config: Mapping[str, Any],
    extension: Mapping[str, Any],
    facts: Facts,
    cli_labels: Mapping[str, str] | None = None,
) -> ServeConfig:
    """Apply precedence to every option and check the combination.

    ``cli`` maps option names to command-line values (``None`` = not given);
    ``cli_labels`` names the flag actually used where it is not ``--<name>``
    (``--prod`` for ``mode``).
    """
    layers = layer_values(cli, env, config, extension)
    values: dict[str, Any] = {}
    origins: dict[str, Origin] = {}
    for option in OPTIONS:
        for layer, explicit in layers.items():
            if option.name in explicit:
                label = option.label(layer, flag=(cli_labels or {}).get(option.name))
                values[option.name] = _convert(option, explicit[option.name], label)
                origins[option.name] = Origin(layer, label)
                break
        else:
            value, why = option.default(values, env, facts)
            values[option.name] = value
            origins[option.name] = Origin(Layer.DEFAULT, why)
        _settle_auto(option.name, values, origins, facts)
    _check_combination(values, origins, facts)
    return ServeConfig(**values, origins=origins)


def _settle_auto(name: str, values: dict[str, Any], origins: dict[str, Origin], f: Facts) -> None:
    """Turn ``mode=auto`` and ``server=auto`` into a concrete choice with a reason."""
    origin = origins[name]
    if name == "mode":
        if values["mode"] == "auto":
            values["mode"] = "dev" if f.debug else "prod"
            why = f"auto: debug is {'on' if f.debug else 'off'}"
            origins["mode"] = _with_reason(origin, why)
    elif name == "server":
        if values["mode"] == "dev":
            values["server"] = "werkzeug"
            origins["server"] = Origin(Layer.DEFAULT, "dev mode uses Werkzeug's dev server")
        elif values["server"] == "auto":
            if f.platform == "win32":
                choice, why = "waitress", "auto: gunicorn does not run on Windows"
            elif f.gunicorn_importable:
                choice, why = "gunicorn", "auto: gunicorn is installed"
            else:
                choice, why = "waitress", "auto: gunicorn is not installed"
            values["server"] = choice
            origins["server"] = _with_reason(origin, why)


def _with_reason(origin: Origin, why: str) -> Origin:
    return Origin(origin.layer, why if origin.layer is Layer.DEFAULT else f"{origin.label}, {why}")


def _check_combination(values: Mapping[str, Any], origins: Mapping[str, Origin], f: Facts) -> None:
    def fail(name: str, problem: str) -> None:
        # A flag such as --prod carries no value worth echoing back.
        shown = NO_VALUE if origins[name].layer is Layer.CLI else values[name]
        raise ConfigError(origins[name].label, shown, problem)

    if values["server"] == "gunicorn":
        if f.platform == "win32":
            fail("server", "gunicorn does not run on Windows; use waitress (or auto)")
        if not f.gunicorn_importable:
            fail(
                "server",
                "gunicorn is not installed; run 'pip install gunicorn' or use waitress",
            )
    explicit = {n for n, o in origins.items() if o.layer is not Layer.DEFAULT}
    if values["server"] == "waitress" and f.platform == "win32":
        # The supervisor of waitress workers forks: not on Windows.
        if values["workers"] > 1:
            fail("workers", "waitress runs one process on Windows; raise threads instead")
        if values["max_requests"]:
            fail(
                "max_requests",
                "waitress runs one process on Windows and cannot recycle it; set max_requests to 0",
            )
    _check_paths(values, fail)
    if values["metrics_path"] and not f.metrics_importable:
        fail(
            "metrics_path",
            "metrics need prometheus_client; run \"pip install 'flask-prodserve[metrics]'\"",
        )
    if values["mode"] == "prod":
        if f.debug and "mode" in explicit:
            fail(
                "mode",
                "the app's debug flag is on, and production must never run the debugger; "
                "turn debug off (drop --debug / FLASK_DEBUG / DEBUG=True) or serve with --dev",
            )
        for name in ("reload", "debugger"):
            if values[name]:
                fail(
                    name,
                    f"{name} is only available in dev mode; use --dev or turn it off",
                )


def _check_paths(values: Mapping[str, Any], fail: Callable[[str, str], None]) -> None:
    """The metrics path is answered before the health path and the prefix: it must
    not hide them."""
    metrics, health = values["metrics_path"], values["health_path"]
    if metrics and health and (metrics == health or metrics == health + "/ready"):
        fail("metrics_path", f"the health check already answers {metrics}; choose another path")
    if metrics and values["url_prefix"] and metrics == values["url_prefix"]:
        fail("metrics_path", "the app is mounted there (url_prefix); choose another path")


def field_names() -> list[str]:
    """The option fields of :class:`ServeConfig`, in order (tests keep it in step)."""
    return [f.name for f in fields(ServeConfig) if f.name != "origins"]
