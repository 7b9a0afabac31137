"""What every generated file shares: the facts about the app, and how a
``flask serve`` command is written from the resolved config."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import OPTIONS, Layer
from ..converters import Addresses
from ..proxy import ProxyTrust
from ..staticfiles import SHORT_MAX_AGE, short_max_age

if TYPE_CHECKING:
    from flask import Flask

    from ..config import ServeConfig

# Not part of a serving command: mode is always --prod, the rest is dev-only or emit-only.
_NEVER_WRITTEN = {"mode", "reload", "debugger", "upstream"}


@dataclass(frozen=True)
class AppFacts:
    """What the files need to know beyond the config (see :func:`app_facts`)."""

    command: str  # the command that produced the file, shown at its top
    app_import: str  # the value for ``flask --app``
    app_name: str
    working_dir: str
    flask_bin: str  # absolute path of this environment's ``flask`` script
    user: str  # the account for systemd's User=
    python_version: str  # "3.11", for the Docker base image
    static_folder: str | None  # absolute; None when the app has no static folder on disk
    static_url_path: str
    has_requirements: bool  # requirements.txt in working_dir
    has_pyproject: bool  # pyproject.toml in working_dir
    static_max_age: int = SHORT_MAX_AGE  # seconds, for names without a fingerprint


@dataclass(frozen=True)
class Emitted:
    """A generated file and the warnings to show next to it."""

    text: str
    warnings: tuple[str, ...] = ()


def app_facts(app: Flask, app_import: str | None, command: str) -> AppFacts:
    """Facts about ``app`` and this machine, read when the file is emitted."""
    cwd = Path.cwd()
    static = app.static_folder if app.has_static_folder else None
    user = "www-data"  # a placeholder to edit when run as root or with no known name
    if getattr(os, "geteuid", lambda: 0)() != 0:
        with contextlib.suppress(OSError, KeyError):  # no name for this uid
            user = getpass.getuser()
    return AppFacts(
        command=command,
        app_import=app_import or app.import_name,
        app_name=app.name,
        working_dir=str(cwd),
        flask_bin=str(Path(sys.executable).parent / "flask"),  # not resolved: keep the venv
        user=user,
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        static_folder=static if static and os.path.isdir(static) else None,
        static_url_path=app.static_url_path or "",
        has_requirements=(cwd / "requirements.txt").is_file(),
        has_pyproject=(cwd / "pyproject.toml").is_file(),
        static_max_age=short_max_age(app),
    )


def option_text(value: Any) -> str:
    """An option's value as it is written on a command line."""
    if isinstance(value, ProxyTrust):
        return ",".join([str(value.hops), *value.addresses])
    if isinstance(value, Addresses):
        return ",".join(value)
    if isinstance(value, Mapping):
        return json.dumps(dict(value), separators=(",", ":"))
    return str(value)


def serve_args(config: ServeConfig, *, skip: Iterable[str] = ()) -> list[str]:
    """Flags for the options set on the command line or in the environment."""
    skipped = _NEVER_WRITTEN | set(skip)
    words: list[str] = []
    for option in OPTIONS:
        origin = config.origins[option.name]
        if option.name in skipped or origin.layer not in (Layer.CLI, Layer.ENV):
            continue
        value = getattr(config, option.name)
        if option.is_flag:
            words.append(option.flag if value else f"--no-{option.flag[2:]}")
        else:
            words += [option.flag, option_text(value)]
    return words


def serve_command(facts: AppFacts, *extra: str, flask: str = "flask") -> list[str]:
    return [flask, "--app", facts.app_import, "serve", "--prod", *extra]


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "app"
