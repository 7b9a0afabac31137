"""The documentation builds without a warning, and its option reference is complete."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flask_prodserve.checks import CHECKS, Check
from flask_prodserve.config import OPTIONS, Option

pytest.importorskip("sphinx", reason="Sphinx is not installed (pip install -e '.[test]')")

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(scope="module")
def html_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the HTML docs once, as the docs are built for real: ``-W`` turns
    every warning into an error. In a subprocess, so Sphinx's global state
    and its own warnings stay out of the test process."""
    out = tmp_path_factory.mktemp("docs")
    build = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    build += ["-d", str(out / "doctrees"), str(DOCS), str(out / "html")]
    result = subprocess.run(build, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stdout}\n{result.stderr}"
    return out / "html"


def test_docs_build_without_warnings(html_dir: Path) -> None:
    pages = {p.stem for p in html_dir.glob("*.html")}
    expected = {"index", "quickstart", "configuration", "servers", "deploying", "api", "changes"}
    expected |= {"checks", "testing"}
    assert expected <= pages


_ANCHOR = re.compile(r'id="cmdoption-flask-serve-([a-z-]+)"')


def _entry(page: str, option: Option) -> str:
    """The text of ``option``'s entry: from its anchor to the next option's
    (a yes/no option has two anchors, ``--x`` and ``--no-x``)."""
    name = option.flag[2:]
    anchors = list(_ANCHOR.finditer(page))
    starts = [m for m in anchors if m.group(1) == name]
    assert starts, f"the configuration page has no entry for {option.flag}"
    after = [m for m in anchors if m.start() > starts[0].start()]
    ends = [m.start() for m in after if m.group(1) not in (name, f"no-{name}")]
    entry = page[starts[0].start() : ends[0] if ends else len(page)]
    return html.unescape(re.sub(r"<[^>]+>", "", entry))


@pytest.mark.parametrize("option", OPTIONS, ids=[o.name for o in OPTIONS])
def test_configuration_page_documents_option(html_dir: Path, option: Option) -> None:
    page = (html_dir / "configuration.html").read_text(encoding="utf-8")
    entry = _entry(page, option)
    assert option.flag in entry
    assert option.env in entry
    assert option.config_key in entry


def _words(text: str) -> str:
    """Text without markup, quotes (Sphinx curls them) or line breaks."""
    text = html.unescape(re.sub(r"<[^>]+>", "", text)).replace("\u2026", "...")
    return " ".join(re.sub("[\"'\u2018\u2019\u201c\u201d]", "", text).split()).lower()


@pytest.mark.parametrize("check", CHECKS, ids=[c.id for c in CHECKS])
def test_checks_page_documents_check(html_dir: Path, check: Check) -> None:
    page = (html_dir / "checks.html").read_text(encoding="utf-8")
    assert f'id="{check.id.lower()}"' in page, f"no anchor for {check.id}"
    row = page.split(f'id="{check.id.lower()}"', 1)[1].split(">", 1)[1].split("</tr>", 1)[0]
    row = _words(row)
    assert row.startswith(f"{check.id.lower()} {check.severity}")
    assert _words(check.title) in row
    assert _words(check.fix) in row
