"""Files that start ``flask serve --prod``: systemd units, a Procfile, a Dockerfile."""

from __future__ import annotations

import ipaddress
import shlex
from typing import TYPE_CHECKING

from ..config import Layer
from ..errors import ConfigError
from .commands import serve_args, serve_command, slug
from .facts import DeployFile
from .templating import render

if TYPE_CHECKING:
    from ..config import ServeConfig
    from .facts import AppFacts


def systemd(config: ServeConfig, facts: AppFacts) -> DeployFile:
    """A systemd service unit that runs ``flask serve --prod`` on the socket of
    :func:`systemd_socket`, and reloads it with SIGHUP."""
    where: list[str] = []
    if config.host != "127.0.0.1":
        where += ["--host", config.host]
    if config.port != 8000:
        where += ["--port", str(config.port)]
    args = serve_args(config, skip={"host", "port"}) + where
    command = serve_command(facts, *args, flask=facts.flask_bin)
    text = render(
        "systemd.service.j2",
        config=config,
        facts=facts,
        name=slug(facts.app_name),
        command=command,
        socket_command=_with_emit(facts.command, "systemd-socket"),
    )
    return DeployFile(text)


def systemd_socket(config: ServeConfig, facts: AppFacts) -> DeployFile:
    """The systemd socket unit that listens for :func:`systemd`'s service."""
    if config.port == 0:
        raise ConfigError(
            config.origins["port"].label, 0, "a .socket unit needs a fixed port, such as 8000"
        )
    host = "127.0.0.1" if config.host == "localhost" else config.host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            config.origins["host"].label,
            config.host,
            "a .socket unit listens on an IP address, not a host name; use --host "
            "127.0.0.1 (this machine only) or 0.0.0.0 (every interface)",
        ) from None
    listen = f"[{address}]:{config.port}" if address.version == 6 else f"{address}:{config.port}"
    text = render(
        "systemd.socket.j2",
        config=config,
        facts=facts,
        name=slug(facts.app_name),
        listen=listen,
        dual_stack=address == ipaddress.ip_address("::"),
    )
    return DeployFile(text)


def _with_emit(command: str, kind: str) -> str:
    """The command that produced one file, changed to print the ``kind`` file."""
    words = shlex.split(command)
    if "--emit" in words[:-1]:
        words[words.index("--emit") + 1] = kind
    return shlex.join(words)


def _platform_command(config: ServeConfig, facts: AppFacts) -> tuple[list[str], list[str]]:
    """The command for a platform that sets PORT, and warnings about the port."""
    warnings = []
    origin = config.origins["port"]
    if origin.layer in (Layer.CLI, Layer.ENV):
        warnings.append(f"{origin.label} is not written into the file: the platform sets PORT.")
    elif origin.layer is not Layer.DEFAULT:
        warnings.append(
            f"{origin.label} overrides PORT when the app starts, so the platform's port "
            "would be ignored; remove it."
        )
    args = serve_args(config, skip={"host", "port"})
    return serve_command(facts, "--host", "0.0.0.0", *args), warnings


def procfile(config: ServeConfig, facts: AppFacts) -> DeployFile:
    """A Procfile ``web`` process: listens on every interface, on ``$PORT``."""
    command, warnings = _platform_command(config, facts)
    return DeployFile(render("Procfile.j2", facts=facts, command=command), tuple(warnings))


def dockerfile(config: ServeConfig, facts: AppFacts) -> DeployFile:
    """A Dockerfile: Python slim image, app installed as root, run as a plain user."""
    command, warnings = _platform_command(config, facts)
    text = render("Dockerfile.j2", facts=facts, name=slug(facts.app_name), command=command)
    return DeployFile(text, tuple(warnings))
