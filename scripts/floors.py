"""Print the lowest versions pyproject.toml allows for each runtime dependency
(and the metrics extra), as pip constraints (``flask==3.1``): the floors CI
tests on.

A floor that the suite does not pass on is a false promise to users who pin
an older release; running the suite on exactly these makes it a red CI.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

_FLOOR = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9][^,;\s]*)")


#: Extras whose floors are tested too: they are what their features run on.
#: (brotli only compresses files ahead of time, and its oldest releases have
#: no wheels for the Pythons we support.)
TESTED_EXTRAS = ("metrics",)


def floors(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    requirements = [*project["dependencies"], *(r for e in TESTED_EXTRAS for r in extras[e])]
    pins = []
    for requirement in requirements:
        match = _FLOOR.match(requirement)
        if match is None:
            sys.exit(f"Error: {requirement!r} in {pyproject} has no '>=' floor to test.")
        pins.append(f"{match[1]}=={match[2]}")
    return pins


if __name__ == "__main__":
    print("\n".join(floors(Path(__file__).resolve().parent.parent / "pyproject.toml")))
