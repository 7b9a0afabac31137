"""The types of option values: click's own where one fits, ours for the rest.

Each type converts a string (from the command line or the environment) or a
native Python value (from ``app.config`` or ``ProdServe(...)``). Booleans,
whole numbers and choices are click's :data:`~click.BOOL`,
:class:`~click.IntRange` and :class:`~click.Choice`, taught the native values
and our messages. Sizes, addresses, prefixes and the rest are functions that
raise :class:`ValueError` with a message completing the sentence "expected
...", made click types by :class:`Parsed`.

A failure outside click (``param`` is ``None``: the resolver converting an
environment or config value) says only what was expected, because the
resolver names the setting and the value; on the command line the value is
added here.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any, NoReturn

import click

from .sizes import parse_size


def _fail(
    kind: click.ParamType,  # type: ignore[type-arg,unused-ignore]
    problem: str,
    value: Any,
    param: click.Parameter | None,
    ctx: click.Context | None,
) -> NoReturn:
    kind.fail(problem if param is None else f"{problem} (got {value!r}).", param, ctx)


class Parsed(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    """A click type that converts with ``parse``, a function that raises
    :class:`ValueError` with "expected ..." when the value does not fit."""

    def __init__(self, parse: Callable[[Any], Any], name: str = "value") -> None:
        self.parse = parse
        self.name = name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self.parse(value)
        except ValueError as exc:
            _fail(self, str(exc), value, param, ctx)


class Bool(click.types.BoolParamType):
    """``True``/``False``, ``0``/``1``, or one of ``1 0 true false yes no on off``."""

    expected = "expected true or false (1/0, yes/no, on/off)"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> bool:
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and not value.strip():
            return False  # an empty variable (click 8.1 refuses it)
        try:
            if isinstance(value, str):
                return super().convert(value, param, ctx)
        except click.BadParameter:
            pass
        _fail(self, self.expected, value, param, ctx)


BOOL = Bool()


class WholeNumber(click.IntRange):
    """A whole number in ``[low, high]``; ``True`` is not one, and the message
    shows the range and an example."""

    name = "integer"

    def __init__(self, low: int, high: int | None = None, example: int | None = None) -> None:
        super().__init__(low, high)
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        hint = f", like {example}" if example is not None else ""
        self.expected = f"expected a whole number {span}{hint}"

    def _describe_range(self) -> str:
        return ""  # --help keeps to the option's own text; a bad value's message has the range

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                number: Any = value  # click's IntRange is typed for ints, reads strings too
                return int(super().convert(number, param, ctx))
        except click.BadParameter:
            pass
        _fail(self, self.expected, value, param, ctx)


class OneOf(click.Choice):  # type: ignore[type-arg,unused-ignore]
    """One of ``choices``, case-insensitive. On the command line click's own
    message lists them; elsewhere it reads "expected one of ..."."""

    def __init__(self, *choices: str) -> None:
        super().__init__(choices, case_sensitive=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if param is not None:
            return super().convert(value, param, ctx)
        try:
            if isinstance(value, str):
                return super().convert(value.strip(), param, ctx)
        except click.BadParameter:
            pass
        _fail(self, f"expected one of {', '.join(self.choices)}", value, param, ctx)


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
    "generation",
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
    try:
        return str(OneOf(*LOG_FORMATS).convert(value, None, None))
    except click.BadParameter as exc:
        raise ValueError(exc.message) from None


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


def as_size(low: int, high: int, example: str) -> Callable[[Any], int]:
    """A size in bytes: a whole number, or one with a K, M or G suffix (powers of 1024)."""
    hint = f"expected a size in bytes from {low} to {high}, like {example} (K, M, G allowed)"

    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(hint)
        number = value if isinstance(value, int) else None
        if isinstance(value, str):
            number = parse_size(value)
        if number is None or not low <= number <= high:
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
