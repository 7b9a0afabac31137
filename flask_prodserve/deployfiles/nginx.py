"""The nginx file: an ``upstream`` of the instances and a ``server`` in front of them."""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING

from ..errors import NO_VALUE, ConfigError
from ..staticfiles import FINGERPRINT, cache_control
from .commands import serve_args, serve_command, slug
from .facts import DeployFile
from .templating import render

if TYPE_CHECKING:
    from ..config import ServeConfig
    from .facts import AppFacts

# What nginx's config language and a URL path can both carry without quoting.
_NGINX_SAFE_PATH = re.compile(r"^[A-Za-z0-9._~/@:+,=!*-]*$")


def nginx(config: ServeConfig, facts: AppFacts, *, strip_prefix: str = "") -> DeployFile:
    """An http-context nginx file: an ``upstream`` of the instances and a ``server``."""
    warnings = _check(config, facts, strip_prefix)
    static = facts.static_folder if facts.static_url_path else None
    text = render(
        "nginx.conf.j2",
        config=config,
        facts=facts,
        upstream="flask_" + slug(facts.app_name).replace("-", "_"),
        instance_commands=[_instance_command(config, facts, a) for a in config.upstream],
        prefix=strip_prefix or config.url_prefix,
        strip=bool(strip_prefix),
        static_folder=None if static is None else static.rstrip("/\\"),
        fingerprint=FINGERPRINT,
        long_cache=cache_control("/x.0123abcd.js"),
        short_cache=cache_control("/x.js", facts.static_max_age),
    )
    return DeployFile(text, tuple(warnings))


def _check(config: ServeConfig, facts: AppFacts, strip_prefix: str) -> list[str]:
    """Refuse what the file cannot express; return warnings about the instances."""
    if strip_prefix and config.url_prefix:
        raise ConfigError(
            "--nginx-strip-prefix",
            strip_prefix,
            f"the app already mounts url_prefix {config.url_prefix} itself; drop url_prefix "
            "to have nginx strip the path, or drop --nginx-strip-prefix to pass it through",
        )
    paths = {
        "url_prefix": strip_prefix or config.url_prefix,
        "health_path": config.health_path,
        "metrics_path": config.metrics_path,
        "the app's static_url_path": facts.static_url_path,
    }
    for where, path in paths.items():
        if not _NGINX_SAFE_PATH.match(path):
            raise ConfigError(where, path, "nginx needs letters, digits and - . _ ~ / here")
    if facts.static_folder and any(ch in facts.static_folder for ch in '"$\\\n'):
        problem = 'nginx cannot quote a path with " $ \\ or a line break; move the folder'
        raise ConfigError("the app's static_folder", facts.static_folder, problem)
    if not config.upstream:
        raise ConfigError(
            "upstream", NO_VALUE, "no instance to proxy to; give --upstream HOST:PORT"
        )
    if not config.proxy.hops:
        return [
            "proxy is 0, so the instances ignore nginx's X-Forwarded-* headers and the app "
            "sees nginx's address and scheme; serve them with --proxy 1 (or --proxy 1,ADDRESS)."
        ]
    if config.proxy.hops > 1:
        return [
            f"proxy is {config.proxy.hops} hops, but this nginx file sets X-Forwarded-Proto, "
            "-Host, -Port and -Prefix itself (one value each), so the app ignores them; "
            "use --proxy 1 when nginx is the only proxy."
        ]
    return []


def _instance_command(config: ServeConfig, facts: AppFacts, address: str) -> str:
    host, _, port = address.rpartition(":")
    proxy = [] if config.proxy.hops else ["--proxy", "1"]
    extra = serve_args(config, skip={"host", "port"})
    return shlex.join(serve_command(facts, *proxy, *extra, "--host", host, "--port", port))
