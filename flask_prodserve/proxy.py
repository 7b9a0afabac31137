"""The ``proxy`` setting: which peers may set forwarded headers, and how many hops.

One setting drives every layer: the server's own handling of forwarded
headers (see each backend) and Werkzeug's
:class:`~werkzeug.middleware.proxy_fix.ProxyFix`, applied by
:class:`ForwardedHeaders` the same way under every server. By default no
peer is trusted, not even loopback: a forwarded header from a client then
changes nothing the app sees.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from werkzeug.middleware.proxy_fix import ProxyFix

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger("flask_prodserve")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ProxyTrust:
    """``hops`` trusted proxies in front of the server; ``addresses`` limits
    which peers may be the nearest one (empty: any peer)."""

    hops: int = 0
    addresses: tuple[str, ...] = ()

    def __str__(self) -> str:
        if not self.hops:
            return "0 (no proxy trusted)"
        hops = f"{self.hops} hop{'s' if self.hops > 1 else ''}"
        return f"{hops} from {', '.join(self.addresses) or 'any address'}"

    @property
    def networks(self) -> tuple[Network, ...]:
        return tuple(ipaddress.ip_network(a, strict=False) for a in self.addresses)

    def trusts(self, peer: str) -> bool:
        """Whether forwarded headers from the connecting ``peer`` may be used."""
        if not self.hops:
            return False
        if not self.addresses:
            return True
        try:
            address = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)


_PROXY_HINT = "expected a number of proxy hops, optionally with their addresses, like 1,127.0.0.1"


def as_proxy(value: Any) -> ProxyTrust:
    """``N`` or ``N,address,...`` (a string, an int, or a list such as ``[1, "10.0.0.0/8"]``)."""
    if isinstance(value, ProxyTrust):
        return value
    parts: list[Any]
    if isinstance(value, bool):
        raise ValueError(_PROXY_HINT)
    if isinstance(value, int):
        parts = [value]
    elif isinstance(value, str):
        parts = [p.strip() for p in value.replace(" ", ",").split(",") if p.strip()] or ["0"]
    elif isinstance(value, (list, tuple)) and value:
        parts = list(value)
    else:
        raise ValueError(_PROXY_HINT)
    try:
        hops = int(parts[0])
    except (TypeError, ValueError):
        raise ValueError(_PROXY_HINT) from None
    if not 0 <= hops <= 10:
        raise ValueError("expected from 0 to 10 proxy hops, like 1 (or 1,127.0.0.1)")
    addresses = tuple(str(a) for a in parts[1:])
    for address in addresses:
        try:
            ipaddress.ip_network(address, strict=False)
        except ValueError:
            raise ValueError(
                f"expected IP addresses or networks after the hop count; {address!r} is neither"
            ) from None
    if addresses and not hops:
        raise ValueError("expected at least 1 hop before proxy addresses, like 1,127.0.0.1")
    return ProxyTrust(hops, addresses)


def forwarded_keys(environ: Iterable[str]) -> list[str]:
    """The environ keys of headers a proxy would set (``X_Forwarded_For``
    lands on the same key as ``X-Forwarded-For``)."""
    # Most requests have none: one pass over the joined keys, in C, says so.
    names = " ".join(environ)
    if "FORWARDED" not in names and "HTTP_X_REAL_IP" not in names:
        return []
    return [
        k
        for k in environ
        if k.startswith("HTTP_X_FORWARDED_") or k in ("HTTP_FORWARDED", "HTTP_X_REAL_IP")
    ]


def _header_name(key: str) -> str:
    return "-".join(w.capitalize() for w in key[5:].split("_"))


class ForwardedHeaders:
    """Apply forwarded headers from trusted peers (through ProxyFix, rightmost
    ``hops`` values only), and remove them from every other request.

    Outermost in the chain, so the access log, the health check and the app
    all see the same client address, scheme, host and prefix.
    """

    def __init__(self, app: WSGIApplication, trust: ProxyTrust) -> None:
        self.app = app
        self.trust = trust
        n = trust.hops
        self.fixed: WSGIApplication = (
            ProxyFix(app, x_for=n, x_proto=n, x_host=n, x_port=n, x_prefix=n) if n else app
        )
        self.hinted = False

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        keys = forwarded_keys(environ)
        if not keys:
            return self.app(environ, start_response)
        peer = environ.get("REMOTE_ADDR", "")
        if self.trust.trusts(peer):
            return self.fixed(environ, start_response)
        for key in keys:
            del environ[key]
        if not self.hinted:
            self.hinted = True  # once per process: a spoofing client must not flood the log
            self._hint(peer, [_header_name(k) for k in keys])
        return self.app(environ, start_response)

    def _hint(self, peer: str, names: list[str]) -> None:
        if self.trust.hops:
            fix = (
                f"it is not one of the trusted proxies ({', '.join(self.trust.addresses)}); "
                f"if it is your proxy, add its address to --proxy"
            )
        else:
            fix = (
                "no proxy is trusted; if this server is behind a proxy you run (nginx, "
                "a PaaS router), serve with --proxy 1 so the app sees the client's "
                "address and scheme"
            )
        logger.warning(
            "flask-prodserve: ignored %s from %s: %s (logged once).", ", ".join(names), peer, fix
        )
