"""Sizes in bytes: read from text such as ``10M``, written for people and for nginx.

Units are powers of 1024 (``K``, ``M``, ``G``), as nginx, gunicorn and
waitress read them.
"""

from __future__ import annotations

import re

_UNITS = (("G", 1024**3), ("M", 1024**2), ("K", 1024))
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)i?b?\s*$", re.I)


def parse_size(text: str) -> int | None:
    """``10M`` -> 10485760; also ``64k``, ``1GiB``, ``512``. ``None`` if it is not a size."""
    match = _SIZE.match(text)
    if match is None:
        return None
    factor = dict(_UNITS).get(match.group(2).upper(), 1)
    return int(match.group(1)) * factor


def split_size(size: int) -> tuple[int, str]:
    """``size`` in the largest unit that divides it: ``(10, "M")``; ``(1000, "")`` for bytes."""
    for unit, factor in _UNITS:
        if size >= factor and size % factor == 0:
            return size // factor, unit
    return size, ""


def human_size(size: int) -> str:
    """``10 MiB``, ``1000 bytes``, ``1 byte``: for messages."""
    number, unit = split_size(size)
    return f"{number} {unit}iB" if unit else f"{number} byte{'s' * (number != 1)}"


def nginx_size(size: int) -> str:
    """``10m``, ``1000``: how nginx's ``client_max_body_size`` writes it."""
    number, unit = split_size(size)
    return f"{number}{unit.lower()}"
