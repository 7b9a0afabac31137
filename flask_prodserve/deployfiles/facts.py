"""What a deployment file needs to know beyond the config, and what it is."""

from __future__ import annotations

import contextlib
import getpass
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..staticfiles import SHORT_MAX_AGE, short_max_age

if TYPE_CHECKING:
    from flask import Flask


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
class DeployFile:
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
