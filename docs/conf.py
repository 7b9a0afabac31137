"""Sphinx configuration for the flask-prodserve documentation."""

import sys
from importlib.metadata import version as _version
from pathlib import Path

# The local extension that generates the option reference from the option table.
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

# Project --------------------------------------------------------------

project = "flask-prodserve"
release = _version("flask-prodserve")
version = ".".join(release.split(".")[:2])

# General --------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "optiontable",
    "checktable",
]
exclude_patterns = ["_build"]
# Keep "--port" as two hyphens in prose; curly quotes and ellipses stay.
smartquotes_action = "qe"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True

# HTML -----------------------------------------------------------------

html_theme = "furo"
html_title = f"flask-prodserve {release}"
html_static_path = ["_static"]
html_show_copyright = False
