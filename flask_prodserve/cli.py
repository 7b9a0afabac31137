"""``flask serve`` and :func:`serve`: the only module that prints or exits.

The command's options are generated from :data:`~flask_prodserve.config.OPTIONS`;
this module only translates them, shows what was resolved, and hands off to
:mod:`flask_prodserve.serving`.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import textwrap
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource
from flask.cli import ScriptInfo, pass_script_info

from . import checks, deployfiles, loaderrors, reloading, serving, staticfiles
from .backends import GRACE_EXPIRED
from .config import OPTION_BY_NAME, OPTIONS, Layer, Option
from .errors import ProdServeError, ServeError
from .logbuffer import PLAIN, BatchingStreamHandler
from .middleware import access_logger
from .sockets import is_loopback

if TYPE_CHECKING:
    from flask import Flask

    from .config import ServeConfig


class _OneLineUsageError(click.UsageError):
    """A usage error shown as one line, without click's usage block."""

    def show(self, file: Any = None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx else ""
        click.echo(f"Error: {self.format_message()}{hint}", err=True)


class _ServeCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            if isinstance(exc, _OneLineUsageError):
                raise
            raise _OneLineUsageError(exc.format_message(), exc.ctx or ctx) from None


def _click_option(option: Option) -> Callable[[Any], Any]:
    # Env values are read by our own resolver (so `flask serve` and the test
    # runner agree, and a bad env value names the variable), not by click.
    help_text = f"{option.help} [{option.env}, {option.config_key}]"
    common: dict[str, Any] = {
        "default": None,
        "help": help_text,
        "allow_from_autoenv": False,
    }
    if option.multiple:  # click gives () when absent: "not given" must stay None
        common.update(multiple=True, callback=lambda ctx, param, value: value or None)
    if option.is_flag:
        decls = f"{option.flag}/--no-{option.flag[2:]}"
        return click.option(decls, option.name, **common)
    flags = [option.flag, option.short] if option.short else [option.flag]
    return click.option(*flags, option.name, type=option.type, metavar=option.metavar, **common)


def _generated_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(OPTIONS):
        func = _click_option(option)(func)
    return func


_EPILOG = """\b
Examples:
  flask --app app serve --prod     production server, http://127.0.0.1:8000/
  flask --app app --debug serve    dev server with reloader and debugger

\b
Each option can also be set with the environment variable or the
app.config key shown in brackets. Precedence: flag > environment >
app.config > ProdServe(...) > default.
"""


@click.command("serve", cls=_ServeCommand, epilog=_EPILOG)
@click.option("--dev", "dev", is_flag=True, default=None, help="Same as --mode dev.")
@click.option("--prod", "prod", is_flag=True, default=None, help="Same as --mode prod.")
@_generated_options
@click.option(
    "--emit",
    type=click.Choice(deployfiles.KINDS, case_sensitive=False),
    help="Print a deployment file for these settings to stdout, then exit.",
)
@click.option(
    "--nginx-strip-prefix",
    type=OPTION_BY_NAME["url_prefix"].type,
    metavar="PATH",
    help="With --emit nginx: nginx serves the app under PATH and strips it, sending "
    "X-Forwarded-Prefix (the app then runs without url_prefix).",
)
@click.option(
    "--print-config",
    is_flag=True,
    allow_from_autoenv=False,
    help="Print every resolved setting and where it came from, then exit.",
)
@click.option(
    "--check",
    is_flag=True,
    allow_from_autoenv=False,
    help="Report production-readiness problems with the resolved settings, then exit "
    "(status 1 on a problem at --fail-level).",
)
@click.option(
    "--compress-static",
    is_flag=True,
    allow_from_autoenv=False,
    help="Write .gz (and .br, with the Brotli package) next to each static file that "
    "compresses well, for the static_files layer and nginx to serve, then exit.",
)
@click.option(
    "--traceback",
    is_flag=True,
    allow_from_autoenv=False,
    help="If loading the app fails, show the full traceback instead of a summary.",
)
@click.option(
    "--fail-level",
    type=click.Choice([str(s) for s in reversed(checks.Severity)], case_sensitive=False),
    allow_from_autoenv=False,
    help="With --check: the least severe problem that makes it exit 1. Default: error.",
)
@pass_script_info
def serve_command(info: ScriptInfo, /, dev: bool | None, prod: bool | None, **values: Any) -> None:
    """Serve the app: dev server when debug is on, a production server otherwise."""
    print_config = values.pop("print_config")
    check, fail_level = values.pop("check"), values.pop("fail_level")
    if fail_level and not check:
        raise _OneLineUsageError("--fail-level applies only with --check.")
    kind, strip_prefix = values.pop("emit"), values.pop("nginx_strip_prefix")
    compress = values.pop("compress_static")
    labels = {}
    if dev or prod:
        if (dev and prod) or values["mode"] is not None:
            raise _OneLineUsageError("Use only one of --dev, --prod and --mode.")
        values["mode"], labels["mode"] = ("dev", "--dev") if dev else ("prod", "--prod")
    app, source = _load_app(info, values.pop("traceback"))
    try:
        config = serving.config_for(app, values, cli_labels=labels)
    except ProdServeError as exc:
        # Values from flags were already checked by click (exit 2); what is
        # left is a bad env/config value or a combination the server refuses.
        raise click.ClickException(str(exc)) from None
    if check:
        sys.exit(_report(app, config, checks.Severity[(fail_level or "error").upper()]))
    if compress:
        _compress_static(app)
        return
    if kind:
        _emit(info, app, config, kind, strip_prefix or "")
        return
    if print_config:
        _print_config(app, config)
        return
    sys.exit(_serve(app, config, source=source))


def _load_app(info: ScriptInfo, full_traceback: bool) -> tuple[Flask, reloading.AppSource]:
    """The app and where it came from, or a short message in the app's own
    terms if importing it fails."""
    try:
        return reloading.load(info)  # imports the app: an error raised here is in the app's code
    except ProdServeError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # the app's own code failed: show its frames, not ours
        if full_traceback:
            click.echo(loaderrors.full_traceback(exc), err=True)
            raise click.exceptions.Exit(1) from None
        raise click.ClickException(loaderrors.explain(exc, info.app_import_path)) from None


def serve(app: Flask, **options: Any) -> int:
    """Serve ``app`` from Python, choosing dev or prod as ``flask serve`` does, and
    return the exit status once the server stops.

    Keyword arguments are options (``serve(app, port=8080)``) and override
    every other source. The names ``app.run()`` takes work too:
    ``debug=True`` turns the app's debug flag on, which means the dev server,
    and ``use_reloader`` and ``use_debugger`` are ``reload`` and ``debugger``.
    For the ``if __name__ == "__main__":`` block::

        if __name__ == "__main__":
            flask_prodserve.serve(app)

    Raises :class:`~flask_prodserve.ConfigError` for an unknown name or a bad
    value, naming it; a failed production check or a port in use is printed,
    and the status is 1.
    """
    values, labels = serving.run_options(app, options)
    config = serving.config_for(app, values, cli_labels=labels)
    return _serve(app, config)


def _serve(
    app: Flask,
    config: ServeConfig,
    announced: Callable[[list[str]], None] = lambda urls: None,
    source: reloading.AppSource = reloading.OBJECT,
) -> int:
    """Serve as ``flask serve`` does; ``announced(urls)`` is called after the
    banner (the ``prod_server`` pytest fixture learns the port from it);
    ``source`` is where the app came from, for reloads."""

    def announce(served: ServeConfig, urls: list[str], warnings: list[checks.Problem]) -> None:
        _banner(app, served, urls, warnings)
        announced(urls)

    try:
        _configure_access_log(config.access_log_file)
        status = serving.serve(
            app,
            config,
            announce,
            lambda signame, graceful: _stopping(config, signame, graceful),
            lambda line: click.echo(f" * {line}"),
            source,
        )
    except checks.ChecksFailed as exc:
        for problem in exc.problems:
            click.echo(f"Error: {problem.id}: {problem.describe()}", err=True)
        return 1
    except ProdServeError as exc:
        click.echo(f"Error: {exc}", err=True)
        return 1
    except KeyboardInterrupt:  # Ctrl+C while a backend was still starting
        status = 0
    finally:
        for handler in access_logger.handlers:
            handler.flush()  # the last requests' lines come before the stop's
    if status == GRACE_EXPIRED:
        click.echo(
            f" * Stopped after the {config.graceful_timeout} s grace period: requests still "
            "running were cut (raise --graceful-timeout to give them longer)."
        )
    else:
        click.echo(" * Stopped." if status == 0 else f" * Stopped with exit status {status}.")
    return status


def _stopping(config: ServeConfig, signame: str, graceful: bool) -> None:
    if graceful:
        click.echo(
            f" * Stopping ({signame}): finishing requests in flight, for up to "
            f"{config.graceful_timeout} s (CTRL+C again to stop at once)"
        )
    else:
        click.echo(f" * Stopping now ({signame}): requests in flight are cut")


def _configure_access_log(path: str) -> None:
    # Only when the app has not configured this logger itself: users keep control.
    if not access_logger.handlers:
        try:
            handler: logging.Handler = (
                BatchingStreamHandler(sys.stdout)
                if path == "-"
                else BatchingStreamHandler(open(path, "a", encoding="utf-8"))  # noqa: SIM115
            )
        except OSError as exc:
            raise ServeError(
                f"Cannot open the access log file {path!r} (from access_log_file): "
                f"{exc.strerror}. Use an existing folder you can write to, or - for stdout."
            ) from None
        handler.setFormatter(PLAIN)
        access_logger.addHandler(handler)
        # Lines go to our handler only, not also to whatever the root logger prints.
        access_logger.propagate = False
    if access_logger.level == logging.NOTSET:
        access_logger.setLevel(logging.INFO)


def _server_title(config: ServeConfig) -> str:
    if config.server == "werkzeug":
        extras = [f"reloader {'on' if config.reload else 'off'}"]
        extras.append(f"debugger {'on' if config.debugger else 'off'}")
        return f"Werkzeug development server, {', '.join(extras)}"
    try:
        return f"{config.server} {version(config.server)}"
    except PackageNotFoundError:
        return config.server


def _count(n: int, noun: str) -> str:
    """``1 process``, ``4 processes``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}{'es' if noun.endswith('s') else 's'}"


def _banner(
    app: Flask, config: ServeConfig, urls: list[str], warnings: list[checks.Problem]
) -> None:
    mode = "production" if config.mode == "prod" else "development"
    lines = [
        f" * Serving Flask app {app.name!r} in {mode} mode ({config.origins['mode'].explain()})",
        f" * Server: {_server_title(config)}",
    ]
    if config.server != "werkzeug":
        lines[-1] += f" ({config.origins['server'].explain()})"
        lines.append(
            f" * Workers: {_count(config.workers, 'process')} x {_count(config.threads, 'thread')}"
        )
        if hasattr(os, "fork"):  # waitress on Windows runs one process: no reloads
            lines.append(_generation_line(config))
    lines += _systemd_socket_lines(config)
    lines += [f" * Running on {url}" for url in urls]
    if config.health_path:
        lines.append(
            f" * Health check: {config.health_path} (readiness: {config.health_path}/ready)"
        )
    if config.metrics_path:
        readers = ", ".join(config.metrics_allow) or "any address"
        lines.append(f" * Metrics: {config.metrics_path} (Prometheus; readable from {readers})")
    if config.mode == "prod":
        where = "stdout" if config.access_log_file == "-" else config.access_log_file
        lines.append(f" * Access log: {f'on, to {where}' if config.access_log else 'off'}")
    else:
        lines.append(" * Not for production: use 'flask serve --prod' when you deploy")
    if config.debugger and not is_loopback(config.host):
        lines.append(
            " * WARNING: the debugger is on and this address can be reached from other "
            "machines; anyone who reaches it can run code on this computer."
        )
    lines += [f" * Warning {w.id}: {w.describe()}" for w in warnings]
    lines.append(" * Press CTRL+C to stop")
    click.echo("\n".join(lines))


def _systemd_socket_lines(config: ServeConfig) -> list[str]:
    """Say that systemd's socket decides the address, and which settings it overrode."""
    origin = config.origins["port"]
    if origin.layer is not Layer.SYSTEMD:
        return []
    host = f"[{config.host}]" if ":" in config.host else config.host
    lines = [f" * Listening on {origin.label}, {host}:{config.port}"]
    for name in ("host", "port"):
        if replaced := config.origins[name].overrides:
            lines.append(
                f" * Warning: {replaced} is ignored: systemd's socket decides where to "
                "listen (change ListenStream= in the .socket unit, or remove the setting)"
            )
    return lines


def _generation_line(config: ServeConfig) -> str:
    """Generation 1, and how to deploy the next (see docs/deploying.rst)."""
    touch = f" or touch {config.reload_file}" if config.reload_file else ""
    return f" * Generation 1: kill -HUP {os.getpid()}{touch} loads new code, one worker at a time"


def _report(app: Flask, config: ServeConfig, fail_level: checks.Severity) -> int:
    """Print the ``--check`` report; the exit status is 1 if a problem reaches ``fail_level``."""
    try:
        problems = checks.run_checks(app, config)
    except ProdServeError as exc:
        click.echo(f"Error: {exc}", err=True)
        return 1
    for problem in problems:
        click.echo(str(problem))
    server = "Werkzeug's dev server" if config.server == "werkzeug" else config.server
    ignored = f"; ignored: {config.ignore_checks}" if config.ignore_checks else ""
    host = f"[{config.host}]" if ":" in config.host else config.host
    click.echo(
        f"Checked app {app.name!r} served by {server} on {host}:{config.port}"
        f"{config.url_prefix}: {checks.summary(problems)}{ignored}."
    )
    return 1 if any(p.severity >= fail_level for p in problems) else 0


def _compress_static(app: Flask) -> None:
    """Compress the static folders' files once, one line per file written."""
    folders = staticfiles.static_folders(app)
    if not folders:
        click.echo(f"App {app.name!r} has no static folder on disk: nothing to compress.")
        return

    def show(done: staticfiles.Compressed) -> None:
        variants = ", ".join(f"{s} {_kib(n)}" for s, n in sorted(done.variants.items()))
        click.echo(f"  {os.path.relpath(done.path)}: {_kib(done.size)} -> {variants}")

    click.echo(f"Compressing {', '.join(os.path.relpath(f.folder) for f in folders)}:")
    done = staticfiles.compress_folders(folders, show)
    brotli = (
        ""
        if staticfiles.brotli_available()
        else (" No .br files: pip install 'flask-prodserve[brotli]' for Brotli.")
    )
    click.echo(f"Compressed {len(done)} file{'s' * (len(done) != 1)}.{brotli}")


def _kib(size: int) -> str:
    return f"{size / 1024:.1f} KiB"


def _emit(info: ScriptInfo, app: Flask, config: ServeConfig, kind: str, strip_prefix: str) -> None:
    """Print the ``kind`` file for ``config``; warnings go to stderr, one line each."""
    app_import = info.app_import_path or app.import_name
    facts = deployfiles.app_facts(app, app_import, shlex.join(_command_words(app_import)))
    try:
        result = deployfiles.render(kind, config, facts, strip_prefix=strip_prefix)
    except ProdServeError as exc:
        raise click.ClickException(str(exc)) from None
    for warning in result.warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo(result.text, nl=False)


def _command_words(app_import: str) -> list[str]:
    """The current ``flask serve`` command line, from the options given on it."""
    ctx = click.get_current_context()
    words = ["flask", "--app", app_import, "serve"]
    first = ("emit", "nginx_strip_prefix")  # what the command is for, then its settings
    for param in sorted(ctx.command.params, key=lambda p: p.name not in first):
        if not isinstance(param, click.Option) or param.name is None:
            continue
        if ctx.get_parameter_source(param.name) is not ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        if param.is_flag:
            words.append(param.opts[0] if value else param.secondary_opts[0])
        else:
            words += [
                w
                for v in (value if param.multiple else [value])
                for w in (param.opts[0], deployfiles.option_text(v))
            ]
    return words


def _print_config(app: Flask, config: ServeConfig) -> None:
    """One row per setting that applies in this mode, in 80 columns."""
    click.echo(f"Settings for Flask app {app.name!r}:")
    dev = config.mode == "dev"
    rows = [
        (name, "(none)" if value == "" else str(value), where)
        for name, value, where in config.rows()
        if not (dev and OPTION_BY_NAME[name].production)
    ]
    width = [max(len(row[i]) for row in rows) for i in (0, 1)]
    indent = width[0] + width[1] + 6
    for name, value, where in rows:
        # Long reasons continue under their column rather than past 80 columns.
        lines = textwrap.wrap(where, max(80 - indent, 24)) or [""]
        click.echo(f"  {name:<{width[0]}}  {value:<{width[1]}}  {lines[0]}")
        for line in lines[1:]:
            click.echo(" " * indent + line)
    if dev:
        unused = ", ".join(o.name for o in OPTIONS if o.production)
        note = f"Not used by the dev server (see --prod): {unused}."
        click.echo(textwrap.fill(note, 80, initial_indent="  ", subsequent_indent="  "))
