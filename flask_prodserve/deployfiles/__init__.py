"""Deployment files from the resolved config: ``flask serve --emit KIND``.

Each file is a Jinja template in ``templates/`` that reads like the file it
produces. The renderers are pure: a :class:`~flask_prodserve.config.ServeConfig`
and :class:`AppFacts` go in, the file's text and any warnings come out; the
CLI prints them. Each file starts with the command that produced it, and each
command it contains starts the app the way this config does.

Options given on the command line or in ``FLASK_SERVE_*`` variables are
written into the generated commands; options in ``app.config`` or
``ProdServe(...)`` are not, because the app reads them itself when it starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .commands import option_text, serve_args
from .facts import AppFacts, DeployFile, app_facts
from .nginx import nginx
from .platforms import dockerfile, procfile, systemd, systemd_socket

if TYPE_CHECKING:
    from ..config import ServeConfig

KINDS = ("nginx", "systemd", "systemd-socket", "procfile", "dockerfile")

__all__ = [
    "KINDS",
    "AppFacts",
    "DeployFile",
    "app_facts",
    "dockerfile",
    "nginx",
    "option_text",
    "procfile",
    "render",
    "serve_args",
    "systemd",
    "systemd_socket",
]


def render(
    kind: str, config: ServeConfig, facts: AppFacts, *, strip_prefix: str = ""
) -> DeployFile:
    """The file of ``kind`` (one of :data:`KINDS`) for ``config``."""
    if kind == "nginx":
        return nginx(config, facts, strip_prefix=strip_prefix)
    renderers = {
        "systemd": systemd,
        "systemd-socket": systemd_socket,
        "procfile": procfile,
        "dockerfile": dockerfile,
    }
    return renderers[kind](config, facts)
