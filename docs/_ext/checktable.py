"""Generate the list of production-readiness checks from the registry.

``.. prodserve-checks::`` writes one table of every check in
:data:`flask_prodserve.checks.CHECKS`: its ID, severity, what it finds and
the fix, at build time, so the page cannot drift from ``flask serve --check``.
"""

from __future__ import annotations

from typing import Any

from docutils.nodes import Node
from optiontable import markup
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from flask_prodserve import checks, prefixtest


def lines() -> list[str]:
    """The reST list-table of every check."""
    out = [".. list-table::", "   :header-rows: 1", "   :widths: 10 10 40 40", ""]
    out += ["   * - ID", "     - severity", "     - finds", "     - fix"]
    for check in checks.CHECKS:
        fix = check.fix[0].upper() + check.fix[1:] + "."
        out += [
            f"   * - .. _{check.id}:",
            "",
            f"       ``{check.id}``",
            f"     - {check.severity}",
            f"     - {markup(check.title)}",
            f"     - {markup(fix)}",
        ]
    return out


class ChecksDirective(SphinxDirective):
    """``.. prodserve-checks::``: the table of checks."""

    def run(self) -> list[Node]:
        for path in (checks.__file__, prefixtest.__file__, __file__):
            if path:
                self.env.note_dependency(path)
        return self.parse_text_to_nodes("\n".join(lines()))


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("prodserve-checks", ChecksDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
