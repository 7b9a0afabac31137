"""Sizes in bytes: read from text, written for people and for nginx."""

from __future__ import annotations

import pytest

from flask_prodserve.sizes import human_size, nginx_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("512", 512, id="bytes"),
        pytest.param("64K", 64 * 1024, id="k"),
        pytest.param(" 10m ", 10 * 1024**2, id="m-spaces"),
        pytest.param("1GiB", 1024**3, id="gib"),
        pytest.param("2kb", 2048, id="kb"),
        pytest.param("10T", None, id="unknown-unit"),
        pytest.param("1.5M", None, id="fraction"),
        pytest.param("", None, id="empty"),
    ],
)
def test_parse_size(text: str, expected: int | None) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("size", "human", "nginx"),
    [
        pytest.param(1024**3, "1 GiB", "1g", id="gib"),
        pytest.param(10 * 1024**2, "10 MiB", "10m", id="mib"),
        pytest.param(1536, "1536 bytes", "1536", id="not-whole-kib"),
        pytest.param(2048, "2 KiB", "2k", id="kib"),
        pytest.param(1000, "1000 bytes", "1000", id="bytes"),
    ],
)
def test_written_in_the_largest_whole_unit(size: int, human: str, nginx: str) -> None:
    assert human_size(size) == human
    assert nginx_size(size) == nginx
