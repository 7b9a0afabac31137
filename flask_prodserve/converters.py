"""Converters for option values.

Each converter accepts either a string (from the command line or the
environment) or a native Python value (from ``app.config`` or
``ProdServe(...)``), and raises :class:`ValueError` with a message that
completes the sentence "expected ..." when the value does not fit.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any

Converter = Callable[[Any], Any]

_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f", ""})


def as_bool(value: Any) -> bool:
    """``True``/``False`` or one of ``1 0 true false yes no on off``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ValueError("expected true or false (1/0, yes/no, on/off)")


def as_int(low: int, high: int | None = None, example: int | None = None) -> Converter:
    """A whole number in ``[low, high]``."""
    span = f"from {low} to {high}" if high is not None else f"of at least {low}"
    hint = f", like {example}" if example is not None else ""

    def convert(value: Any) -> int:
        if isinstance(value, bool):  # bool is an int subclass; True is not a port
            raise ValueError(f"expected a whole number {span}{hint}")
        try:
            number = int(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a whole number {span}{hint}") from None
        if number < low or (high is not None and number > high):
            raise ValueError(f"expected a whole number {span}{hint}")
        return number

    return convert


def as_choice(*choices: str) -> Converter:
    """One of ``choices``, case-insensitive."""

    def convert(value: Any) -> str:
        word = value.strip().lower() if isinstance(value, str) else value
        if word not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return str(word)

    return convert


def as_host(value: Any) -> str:
    """An interface name or address to bind to; ``[::1]`` is accepted for ``::1``."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected an address such as 127.0.0.1 or 0.0.0.0")
    host = value.strip()
    if "://" in host or "/" in host:
        raise ValueError("expected an address without a scheme or path, like 127.0.0.1")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif host.count(":") == 1:
        # "localhost:8000" is a common slip: the port has its own option.
        raise ValueError("expected an address without a port (set the port separately)")
    return host


_PREFIX_CHARS = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$")


def as_url_prefix(value: Any) -> str:
    """A URL path prefix, normalised to ``/name`` (``app``, ``/app/`` and ``/app``
    are the same; empty or ``/`` means no prefix)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError("expected a URL path such as /app")
    text = value.strip()
    segments = [s for s in text.split("/") if s]
    if not _PREFIX_CHARS.match(text) or any(s in (".", "..") for s in segments):
        raise ValueError("expected a URL path such as /app (no spaces, '?', '#' or '..')")
    return "/" + "/".join(segments) if segments else ""


LOG_FORMATS = ("combined", "json")


ACCESS_LOG_FIELDS = [
    "remote_addr",
    "remote_user",
    "time",
    "timestamp",
    "method",
    "path",
    "protocol",
    "status",
    "size",
    "referer",
    "user_agent",
    "duration",
]


def as_log_format(value: Any) -> str:
    """``combined``, ``json``, or a template such as ``{remote_addr} {status}``."""
    if isinstance(value, str) and "{" in value:
        sample = dict.fromkeys(ACCESS_LOG_FIELDS, 0)
        try:
            value.format_map(sample)
        except (KeyError, ValueError, IndexError) as exc:
            fields = ", ".join(ACCESS_LOG_FIELDS)
            raise ValueError(f"expected a template using only {fields} ({exc})") from None
        return value
    return str(as_choice(*LOG_FORMATS)(value))


def as_mapping(value: Any) -> dict[str, Any]:
    """A mapping, or its JSON text (``{"keepalive": 10}``) from the command line or env."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError:
            raise ValueError('expected a JSON object such as {"keepalive": 10}') from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError('expected a mapping such as {"keepalive": 10}')
    return dict(value)


_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)i?b?\s*$", re.I)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def as_size(low: int, high: int, example: str) -> Converter:
    """A size in bytes: a whole number, or one with a K, M or G suffix (powers of 1024)."""
    hint = f"expected a size in bytes from {low} to {high}, like {example} (K, M, G allowed)"

    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(hint)
        if isinstance(value, int):
            number = value
        else:
            match = _SIZE.match(value) if isinstance(value, str) else None
            if match is None:
                raise ValueError(hint)
            number = int(match.group(1)) * _UNITS[match.group(2).lower()]
        if not low <= number <= high:
            raise ValueError(hint)
        return number

    return convert


_CHECK_ID = re.compile(r"^PS\d{3}$")


def as_check_ids(value: Any) -> str:
    """Check IDs such as ``PS301,PS303`` (a string, or a list of IDs), normalised
    to upper case and commas."""
    hint = "expected check IDs such as PS301,PS303"
    if isinstance(value, str):
        ids = [i.strip().upper() for i in value.replace(" ", ",").split(",") if i.strip()]
    elif isinstance(value, (list, tuple)) and all(isinstance(i, str) for i in value):
        ids = [i.strip().upper() for i in value]
    else:
        raise ValueError(hint)
    if not all(_CHECK_ID.match(i) for i in ids):
        raise ValueError(hint)
    return ",".join(dict.fromkeys(ids))


class Addresses(tuple[str, ...]):
    """``host:port`` addresses, shown comma-separated (``--print-config``, the docs)."""

    __slots__ = ()

    def __str__(self) -> str:
        return ", ".join(self) or "(none)"


_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")
_ADDRESSES_HINT = "expected host:port addresses such as 127.0.0.1:8001 (IPv6 as [::1]:8001)"


def as_addresses(value: Any) -> Addresses:
    """``host:port`` addresses: a list, or text separated by commas or spaces."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    words: list[str] = []
    for item in items:
        if isinstance(item, (list, tuple)):  # click gives a tuple of converted values
            words += item
        elif isinstance(item, str):
            words += item.replace(",", " ").split()
        else:
            raise ValueError(_ADDRESSES_HINT)
    for word in words:
        match = _HOST_PORT.match(word)
        if match is None or not 1 <= int(match.group(2)) <= 65535:
            raise ValueError(_ADDRESSES_HINT)
    if not words:
        raise ValueError(_ADDRESSES_HINT)
    return Addresses(words)


class Networks(tuple[str, ...]):
    """IP addresses or networks, shown comma-separated; empty means any address."""

    __slots__ = ()

    def __str__(self) -> str:
        return ",".join(self) or "(any address)"


def as_networks(value: Any) -> Networks:
    """IP addresses or networks (``127.0.0.1,10.0.0.0/8``): a list, or text
    separated by commas or spaces; empty means any address."""
    if isinstance(value, str):
        words = value.replace(",", " ").split()
    elif isinstance(value, (list, tuple)):
        words = [str(w) for w in value]
    else:
        raise ValueError("expected IP addresses or networks such as 127.0.0.1,10.0.0.0/8")
    for word in words:
        try:
            ipaddress.ip_network(word, strict=False)
        except ValueError:
            raise ValueError(
                f"expected IP addresses or networks such as 127.0.0.1,10.0.0.0/8; "
                f"{word!r} is neither"
            ) from None
    return Networks(words)
