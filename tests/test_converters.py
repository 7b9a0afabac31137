"""Option types accept strings (CLI, env) and native values (config, ProdServe)."""

from __future__ import annotations

from typing import Any

import click
import pytest

from flask_prodserve import converters as c


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("1", True, id="one"),
        pytest.param("TRUE", True, id="true-upper"),
        pytest.param(" on ", True, id="on-spaces"),
        pytest.param("no", False, id="no"),
        pytest.param("0", False, id="zero"),
        pytest.param("", False, id="empty"),
        pytest.param(True, True, id="native-true"),
        pytest.param(0, False, id="native-zero"),
    ],
)
def test_bool(value: Any, expected: bool) -> None:
    assert c.BOOL.convert(value, None, None) is expected


@pytest.mark.parametrize("value", ["maybe", 2, None, "2"])
def test_bool_rejects(value: Any) -> None:
    with pytest.raises(click.BadParameter, match="expected true or false"):
        c.BOOL.convert(value, None, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("8000", 8000, id="string"),
        pytest.param(" 80 ", 80, id="spaces"),
        pytest.param(0, 0, id="zero"),
        pytest.param(65535, 65535, id="max"),
    ],
)
def test_whole_number_port(value: Any, expected: int) -> None:
    assert c.WholeNumber(0, 65535, 8000).convert(value, None, None) == expected


@pytest.mark.parametrize("value", ["eighty", "80.5", -1, 65536, True, None, "1e3"])
def test_whole_number_rejects(value: Any) -> None:
    with pytest.raises(
        click.BadParameter, match=r"expected a whole number from 0 to 65535, like 8000"
    ):
        c.WholeNumber(0, 65535, 8000).convert(value, None, None)


def test_whole_number_without_upper_bound() -> None:
    with pytest.raises(click.BadParameter, match="of at least 1"):
        c.WholeNumber(1).convert(0, None, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("app", "/app", id="bare"),
        pytest.param("/app/", "/app", id="trailing-slash"),
        pytest.param("/app", "/app", id="canonical"),
        pytest.param("//a//b/", "/a/b", id="doubled-slashes"),
        pytest.param("", "", id="empty"),
        pytest.param("/", "", id="root"),
        pytest.param(None, "", id="none"),
    ],
)
def test_as_url_prefix(value: Any, expected: str) -> None:
    assert c.as_url_prefix(value) == expected


@pytest.mark.parametrize("value", ["/a b", "/app?x=1", "/app#top", "/../etc", 5])
def test_as_url_prefix_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match="expected a URL path such as /app"):
        c.as_url_prefix(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127.0.0.1", "127.0.0.1"), ("[::1]", "::1"), ("::", "::"), ("localhost", "localhost")],
)
def test_as_host(value: str, expected: str) -> None:
    assert c.as_host(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("localhost:8000", "without a port"),
        ("http://example.com", "without a scheme"),
        ("", "expected an address"),
    ],
)
def test_as_host_rejects(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        c.as_host(value)


def test_one_of_is_case_insensitive() -> None:
    assert c.OneOf("auto", "dev").convert("DEV", None, None) == "dev"
    with pytest.raises(click.BadParameter, match="expected one of auto, dev"):
        c.OneOf("auto", "dev").convert("prod", None, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("JSON", "json", id="name"),
        pytest.param("{remote_addr} {status}", "{remote_addr} {status}", id="template"),
    ],
)
def test_as_log_format(value: str, expected: str) -> None:
    assert c.as_log_format(value) == expected


@pytest.mark.parametrize("value", ["apache", "{remote_ip}", "{status"])
def test_as_log_format_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        c.as_log_format(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param('{"keepalive": 10}', {"keepalive": 10}, id="json"),
        pytest.param({"a": 1}, {"a": 1}, id="native"),
        pytest.param("", {}, id="empty"),
    ],
)
def test_as_mapping(value: Any, expected: dict[str, Any]) -> None:
    assert c.as_mapping(value) == expected


@pytest.mark.parametrize("value", ["keepalive=10", "[1]", {1: 2}, 5])
def test_as_mapping_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match="expected a"):
        c.as_mapping(value)
