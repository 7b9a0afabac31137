"""The Jinja environment the files are rendered with (templates in ``templates/``).

Autoescaping is off: these are config files, not HTML; what a file cannot
quote is refused before rendering (see :mod:`.nginx`). Block tags take their
whole line (``trim_blocks``, ``lstrip_blocks``), so a template reads like the
file it produces.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from ..sizes import nginx_size


def systemd_escape(text: str) -> str:
    """``%`` starts a specifier in unit files."""
    return text.replace("%", "%%")


def systemd_quote(word: str) -> str:
    """One word of ``ExecStart=``, where ``$`` also expands variables."""
    word = systemd_escape(word).replace("$", "$$")
    if word and not re.search(r"[\s\"'\\;]", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


_environment = Environment(
    loader=PackageLoader("flask_prodserve", "deployfiles/templates"),
    autoescape=False,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=StrictUndefined,
)
_environment.filters.update(
    json=json.dumps,
    nginx_size=nginx_size,
    regex_escape=re.escape,
    repr=repr,
    shell_join=shlex.join,
    systemd_escape=systemd_escape,
    systemd_quote=systemd_quote,
)


def render(template: str, **context: Any) -> str:
    """The text of ``templates/<template>`` with ``context``."""
    return _environment.get_template(template).render(context)
