"""Generate the configuration reference from the option table.

``.. prodserve-options::`` writes one ``.. option::`` entry per item of
:data:`flask_prodserve.config.OPTIONS`: the flag, the environment variable,
the ``app.config`` key, what values it accepts, its default and its help text.

``.. prodserve-defaults::`` writes a table of the value each option takes
when nothing sets it, in a few typical situations, by running the real
resolver (:func:`flask_prodserve.config.resolve`).

Both run at build time, so the reference cannot drift from ``flask serve``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import click
from docutils.nodes import Node
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from flask_prodserve import config, converters
from flask_prodserve.config import OPTIONS, Facts, Option

# Situations for the defaults table: (column heading, what it means, env, facts).
SITUATIONS: tuple[tuple[str, str, Mapping[str, str], Facts], ...] = (
    (
        "development",
        "``flask --debug serve``",
        {},
        Facts(debug=True, platform="linux", cpus=4, gunicorn_importable=True),
    ),
    (
        "Linux, macOS",
        "``flask serve`` on Linux or macOS with 4 usable CPUs",
        {},
        Facts(debug=False, platform="linux", cpus=4, gunicorn_importable=True),
    ),
    (
        "Windows",
        "``flask serve`` on Windows",
        {},
        Facts(debug=False, platform="win32", cpus=4, gunicorn_importable=False),
    ),
    (
        "PaaS",
        "``flask serve`` on Linux with ``PORT=10000`` and ``WEB_CONCURRENCY=3`` set",
        {"PORT": "10000", "WEB_CONCURRENCY": "3"},
        Facts(debug=False, platform="linux", cpus=4, gunicorn_importable=True),
    ),
)

# Tokens in help text shown as code: 'quoted examples', --flags, $VARIABLES.
_CODE = re.compile(r"(?<!\w)'[^'\s][^']*'(?!\w)|--[a-z][a-z-]*|\$[A-Z][A-Z_]*")
# Characters after which (or before which) inline markup may start (or end).
_OPEN = set(" \t'\"([{<-/:")
_CLOSE = set(" \t'\")]}>-/:.,;!?")


def _escape(text: str) -> str:
    return re.sub(r"([\\`*_|])", r"\\\1", text)


def markup(text: str) -> str:
    """Help text as reStructuredText: special characters escaped, flags,
    variables and quoted examples shown as code."""
    parts: list[str] = []
    end = 0
    for match in _CODE.finditer(text):
        parts.append(_escape(text[end : match.start()]))
        code = f"``{match.group().strip(chr(39))}``"
        if match.start() and text[match.start() - 1] not in _OPEN:
            code = "\\ " + code
        if match.end() < len(text) and text[match.end()] not in _CLOSE:
            code += "\\ "
        parts.append(code)
        end = match.end()
    parts.append(_escape(text[end:]))
    return "".join(parts)


def signature(option: Option) -> str:
    """What follows ``.. option::``, in ``flask serve --help`` style."""
    if option.is_flag:
        return f"{option.flag}, --no-{option.flag[2:]}"
    if option.choices:
        return f"{option.flag} {{{','.join(option.choices)}}}"
    value = option.metavar or "VALUE"
    return (
        f"{option.short} {value}, {option.flag} {value}"
        if option.short
        else f"{option.flag} {value}"
    )


_NOT_A_VALUE = object()


def accepts(option: Option) -> str:
    """What values the option takes, from its converter."""
    if option.choices:
        return "one of " + ", ".join(f"``{choice}``" for choice in option.choices)
    if option.is_flag:
        return (
            f"the flag ``{option.flag}`` or ``--no-{option.flag[2:]}``; in the environment "
            "and ``app.config``, true or false (also 1/0, yes/no, on/off)"
        )
    parse = getattr(option.type, "parse", None)  # our own converters (converters.Parsed)
    doc = getattr(parse, "__doc__", None)
    if getattr(parse, "__module__", None) == converters.__name__ and doc:
        text = " ".join(doc.strip().split("\n\n")[0].split()).rstrip(".")
        first_word = text.split(" ", 1)[0]
        # "An address" -> "an address", "A URL" -> "a URL"; "URL ..." stays.
        if len(first_word) == 1 or not first_word.isupper():
            text = text[0].lower() + text[1:]
        return text
    try:
        option.type.convert(_NOT_A_VALUE, None, None)
    except click.BadParameter as exc:
        return _escape(exc.message.removeprefix("expected "))
    return "any text"


def shown(value: Any) -> str:
    """A value as ``--print-config`` shows it, as code."""
    return "(none)" if value == "" else f"``{value}``"


def defaults(*, resolved: bool = True) -> dict[str, list[Any]]:
    """Each option's value in each of :data:`SITUATIONS`, from the real resolver:
    the value it resolves to, or (``resolved=False``) the option's own default
    before ``auto`` is settled."""
    table: dict[str, list[Any]] = {option.name: [] for option in OPTIONS}
    for _, _, env, facts in SITUATIONS:
        result = config.resolve(cli={}, env=env, config={}, extension={}, facts=facts)
        values = {name: value for name, value, _ in result.rows()}
        for option in OPTIONS:
            value = values[option.name] if resolved else option.default(values, env, facts)[0]
            table[option.name].append(value)
    return table


def entry(option: Option, values: list[Any]) -> list[str]:
    """The reST lines for one option; ``values`` are its unresolved defaults."""
    if all(value == values[0] for value in values):
        default = shown(values[0])
    else:
        default = "depends on the situation, see :ref:`defaults`"
    return [
        ".. index::",
        f"   pair: environment variable; {option.env}",
        f"   pair: config key; {option.config_key}",
        "",
        f".. option:: {signature(option)}",
        "",
        f"   {markup(option.help)}",
        "",
        f"   - Environment variable: ``{option.env}``",
        f"   - Config key: ``{option.config_key}``",
        f"   - Python: ``ProdServe({option.name}=...)``, ``serve(app, {option.name}=...)``",
        f"   - Accepts: {accepts(option)}",
        f"   - Default: {default}",
        "",
    ]


class _TableDirective(SphinxDirective):
    """Base: the option table is read at build time, so rebuild when it changes."""

    def run(self) -> list[Node]:
        for path in (config.__file__, converters.__file__, __file__):
            if path:
                self.env.note_dependency(path)
        return self.parse_text_to_nodes("\n".join(self.lines()))

    def lines(self) -> list[str]:
        raise NotImplementedError


class OptionsDirective(_TableDirective):
    """``.. prodserve-options::``: one entry per option."""

    def lines(self) -> list[str]:
        values = defaults(resolved=False)
        lines = [".. program:: flask serve", ""]
        for option in OPTIONS:
            lines += entry(option, values[option.name])
        return lines


class DefaultsDirective(_TableDirective):
    """``.. prodserve-defaults::``: each option's default in typical situations."""

    def lines(self) -> list[str]:
        values = defaults()
        lines = [f"- **{title}**: {meaning}" for title, meaning, _, _ in SITUATIONS]
        lines += ["", ".. list-table::", "   :header-rows: 1", "", "   * - option"]
        lines += [f"     - {title}" for title, _, _, _ in SITUATIONS]
        for option in OPTIONS:
            lines.append(f"   * - :option:`{option.name} <flask serve {option.flag}>`")
            lines += [f"     - {shown(value)}" for value in values[option.name]]
        return lines


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("prodserve-options", OptionsDirective)
    app.add_directive("prodserve-defaults", DefaultsDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
