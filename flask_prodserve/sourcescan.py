"""Read the app's own Python source for what only the source shows.

The checks use this to find, by file and line: root-relative URLs written by
hand (``redirect("/")``), module-level dicts, lists and sets that views change
(each worker process has its own copy), the use of ``session`` or ``flash``,
the files the app loads its config from, and string constants (to spot a
secret key written into the code). Files are parsed with :mod:`ast`; nothing
is imported or run.

"The app's own source" is every ``.py`` file under ``app.root_path`` and the
instance folder, apart from virtual environments, installed packages and
folders that are projects of their own (a ``.git``, ``pyproject.toml`` or
``setup.py`` in them): an ``app.py`` in a folder that holds other projects
(a home folder, ``/tmp``) must not be warned about their code.
"""

from __future__ import annotations

import ast
import os
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

_MAX_FILES = 300  # a bound for a project folder that holds much more than the app
_SKIPPED_DIRS = {"node_modules", "__pycache__", "site-packages", "dist-packages", "tests"}
_PROJECT_MARKERS = (".git", "pyproject.toml", "setup.py")
_ROUTE_DECORATORS = {"route", "get", "post", "put", "patch", "delete"}
_MUTABLE_CALLS = {"dict", "list", "set", "defaultdict", "OrderedDict", "Counter", "deque"}
_MUTATORS = {
    "append", "extend", "insert", "remove", "pop", "clear", "update", "add",
    "discard", "setdefault", "popitem", "sort", "reverse", "appendleft",
}  # fmt: skip
_KIND = {ast.Dict: "dict", ast.List: "list", ast.Set: "set", ast.DictComp: "dict"}


@dataclass(frozen=True)
class Spot:
    """A place in a file: ``app.py, line 12``, with what was found there."""

    file: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.file}, line {self.line}"


@dataclass(frozen=True)
class SharedState:
    """A module-level mutable value that a view changes."""

    name: str
    kind: str
    spot: Spot
    views: tuple[str, ...]


@dataclass
class SourceScan:
    """What the app's Python files show."""

    redirects: list[Spot] = field(default_factory=list)  # text: the URL
    strings: list[Spot] = field(default_factory=list)  # text: a str constant
    shared_state: list[SharedState] = field(default_factory=list)
    session_uses: list[Spot] = field(default_factory=list)  # text: session or flash
    config_files: list[str] = field(default_factory=list)


def shown_path(filename: str) -> str:
    """``filename`` relative to the current folder when it is inside it."""
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive on Windows
        return filename
    return filename if relative.startswith("..") else relative


@cache
def _library_dirs() -> tuple[str, ...]:
    """Python's own library, installed packages, and this package."""
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return (*dirs, str(Path(__file__).resolve().parent))


def is_library(filename: str) -> bool:
    """Whether ``filename`` belongs to Python, an installed package or this one."""
    if filename.startswith("<"):
        return True
    path = os.path.abspath(filename)
    parts = set(Path(path).parts)
    return any(path.startswith(d + os.sep) for d in _library_dirs()) or bool(
        parts & {"site-packages", "dist-packages"}
    )


def app_files(app: Flask, suffixes: tuple[str, ...] = (".py",)) -> list[Path]:
    """The app's own files with these suffixes, sorted."""
    found: list[Path] = []
    for top in dict.fromkeys([app.root_path, app.instance_path]):
        if not os.path.isdir(top) or is_library(top):
            continue
        for folder, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not _skipped(Path(folder, d)))
            paths = [Path(folder, f) for f in sorted(files) if f.endswith(suffixes)]
            found += [p for p in paths if not is_library(str(p))]
            if len(found) > _MAX_FILES:
                return found[:_MAX_FILES]
    return found


def _skipped(folder: Path) -> bool:
    hidden = folder.name.startswith(".")
    if hidden or folder.name in _SKIPPED_DIRS or (folder / "pyvenv.cfg").exists():
        return True
    return any((folder / marker).exists() for marker in _PROJECT_MARKERS)


def scan(app: Flask) -> SourceScan:
    """Scan every Python file of the app; a file that does not parse is skipped
    (importing the app would have failed on it first)."""
    result = SourceScan()
    for path in app_files(app):
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue
        _scan_module(tree, shown_path(str(path)), result)
    return result


def _scan_module(tree: ast.Module, file: str, result: SourceScan) -> None:
    flask_names = _names_from_flask(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            result.strings.append(Spot(file, node.lineno, node.value))
        elif isinstance(node, ast.Call):
            _scan_call(node, file, result)
        elif isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Load):
            used = node.id if isinstance(node, ast.Name) else _flask_attribute(node)
            if used in flask_names:
                result.session_uses.append(Spot(file, node.lineno, used))
    result.shared_state += _shared_state(tree, file)


def _names_from_flask(tree: ast.Module) -> set[str]:
    """``session`` and ``flash`` as the module imports them from flask."""
    names = {"flask.session", "flask.flash"}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "flask":
            names |= {a.asname or a.name for a in node.names if a.name in ("session", "flash")}
    return names


def _flask_attribute(node: ast.Attribute) -> str:
    base = node.value
    return f"flask.{node.attr}" if isinstance(base, ast.Name) and base.id == "flask" else ""


def _scan_call(node: ast.Call, file: str, result: SourceScan) -> None:
    func = node.func
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
    first = node.args[0] if node.args else None
    text = first.value if isinstance(first, ast.Constant) else None
    if not isinstance(text, str):
        return
    if name == "redirect" and text.startswith("/") and not text.startswith("//"):
        result.redirects.append(Spot(file, node.lineno, text))
    elif name in ("from_pyfile", "from_object") and isinstance(func, ast.Attribute):
        on_config = isinstance(func.value, ast.Attribute) and func.value.attr == "config"
        if on_config:
            result.config_files.append(text if name == "from_pyfile" else f"{text}.py")


def _shared_state(tree: ast.Module, file: str) -> Iterator[SharedState]:
    module_level = dict(_module_level_names(tree))
    changed: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_view(node):
            for name in _changed_names(node, module_level):
                changed.setdefault(name, []).append(node.name)
    for name, views in changed.items():
        kind, line = module_level[name]
        yield SharedState(name, kind, Spot(file, line, name), tuple(views))


def _module_level_names(tree: ast.Module) -> Iterator[tuple[str, tuple[str, int]]]:
    """``(name, (kind, line))`` of each module-level variable; the kind is ``dict``,
    ``list``, ``set``... for a mutable container, ``variable`` for anything else."""
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        value = getattr(node, "value", None)
        kind = _KIND.get(type(value), "variable")
        if isinstance(value, ast.Call) and isinstance(value.func, (ast.Name, ast.Attribute)):
            called = value.func.id if isinstance(value.func, ast.Name) else value.func.attr
            kind = called if called in _MUTABLE_CALLS else "variable"
        for target in targets:
            if isinstance(target, ast.Name):
                yield target.id, (kind, node.lineno)


def _is_view(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for decorator in func.decorator_list:
        called = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(called, ast.Attribute) and called.attr in _ROUTE_DECORATORS:
            return True
    return False


def _changed_names(
    func: ast.FunctionDef | ast.AsyncFunctionDef, names: dict[str, tuple[str, int]]
) -> set[str]:
    """Which module-level ``names`` the function changes: any it assigns after
    ``global``, and the containers it changes in place."""
    declared = {n for g in ast.walk(func) if isinstance(g, ast.Global) for n in g.names}
    local = {
        n.id
        for n in ast.walk(func)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store) and n.id not in declared
    }
    assigned: set[str] = set()
    changed: set[str] = set()
    for node in ast.walk(func):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id in declared:
            assigned.add(node.id)  # `global X` then `X = ...` or `X += ...`
        elif isinstance(node, (ast.Subscript, ast.Attribute)) and not isinstance(
            node.ctx, ast.Load
        ):
            changed.add(_base_name(node.value))  # X[k] = v, del X[k]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") in _MUTATORS:
            changed.add(_base_name(node.func.value))  # type: ignore[attr-defined]  # X.add(v)
    containers = {n for n, (kind, _) in names.items() if kind != "variable"}
    return (assigned & set(names)) | ((changed & containers) - local)


def _base_name(node: ast.expr) -> str:
    """``X`` for ``X``, ``X[k]``, ``X.attr[k]``: the variable a chain starts from."""
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else ""
