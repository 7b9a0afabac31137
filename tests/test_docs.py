"""The documentation builds without a warning, and its option reference is complete."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
