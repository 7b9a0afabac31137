"""How the ``flask serve`` commands inside the files are written from the config."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..config import OPTIONS, Layer
from ..converters import Addresses
from ..proxy import ProxyTrust

if TYPE_CHECKING:
    from ..config import ServeConfig
    from .facts import AppFacts

# Not part of a serving command: mode is always --prod, the rest is dev-only or
# only for writing the files.
_NEVER_WRITTEN = {"mode", "reload", "debugger", "upstream"}


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
