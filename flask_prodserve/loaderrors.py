"""Explain an exception raised while the app was imported, in the app's own terms.

Flask's loader reports an ImportError raised inside the app as a message
whose traceback the command cannot show in one line, and lets any other
exception escape as 30 lines through click and Flask. :func:`explain` turns
either into a few lines: the student's own file, line and code, the
exception, and the next step. The full traceback stays one flag away
(``--traceback``).

Pure: nothing here prints or exits.
"""

from __future__ import annotations

import difflib
import re
import traceback
from pathlib import Path

from flask.cli import NoAppException

from .checks import SET_SECRET_KEY
from .sourcescan import is_library, shown_path

_FULL = "'flask serve --traceback' shows the full traceback"
# Packages whose pip name differs from the module a student imports.
_PIP_NAMES = {
    "PIL": "Pillow",
    "bs4": "beautifulsoup4",
    "cv2": "opencv-python",
    "dateutil": "python-dateutil",
    "dotenv": "python-dotenv",
    "jwt": "PyJWT",
    "sklearn": "scikit-learn",
    "yaml": "PyYAML",
}
_CANNOT_IMPORT = re.compile(r"cannot import name '(\w+)'")
_ENVIRON_KEY = re.compile(r"""environ\[\s*["'](\w+)["']\s*\]""")


def explain(exc: BaseException, import_name: str | None) -> str:
    """A short message for ``exc`` raised by ``ScriptInfo.load_app()``."""
    if isinstance(exc, NoAppException):
        cause = exc.__context__
        if isinstance(cause, ImportError) and str(exc).startswith("While importing"):
            return _import_error(cause)
        first = str(exc).splitlines()[0]
        if first.startswith("Could not import") and import_name:
            return first + _nearby_modules(import_name)
        return first
    if isinstance(exc, SyntaxError):
        return _syntax_error(exc)
    return _exception(exc)


def full_traceback(exc: BaseException) -> str:
    """The real traceback: of the ImportError that Flask's message wraps, if any."""
    if isinstance(exc, NoAppException) and isinstance(exc.__context__, ImportError):
        exc = exc.__context__
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


def _frames(exc: BaseException) -> list[traceback.FrameSummary]:
    """The frames in the student's own files, or the last frame if there are none."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if not is_library(f.filename)]
    return own or frames[-1:]


def _where(frame: traceback.FrameSummary) -> str:
    return f"{shown_path(frame.filename)}, line {frame.lineno}"


def _import_error(exc: ImportError) -> str:
    frames = _frames(exc)
    where = f"{_where(frames[-1])}: " if frames else ""
    code = f" ({frames[-1].line})" if frames and frames[-1].line else ""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        missing = _CANNOT_IMPORT.match(str(exc))
        if missing and exc.path:
            name, module = missing.group(1), shown_path(exc.path)
            return (
                f"{where}{module} defines no {name!r}{code}. Fix: check the spelling, or "
                f"define {name} in {module}; {_FULL}."
            )
        return f"{where}{exc}{code}. Fix: check the names in that line; {_FULL}."
    top = exc.name.split(".")[0]
    pip = _PIP_NAMES.get(top, top)
    beside = f"next to {shown_path(frames[-1].filename)}" if frames else "in this folder"
    return (
        f"{where}no module named {exc.name!r}{code}. Fix: pip install {pip} (and add it to "
        f"requirements.txt); if {top} is a file of your own, put {top}.py {beside}; {_FULL}."
    )


def _syntax_error(exc: SyntaxError) -> str:
    where = f"{shown_path(exc.filename or '?')}, line {exc.lineno}"
    lines = [f"{where}: {type(exc).__name__}: {exc.msg}"]
    if exc.text:
        text = exc.text.rstrip("\n")
        indent = len(text) - len(text.lstrip())
        lines.append(f"    {text.strip()}")
        if exc.offset:
            lines.append("    " + " " * max(exc.offset - 1 - indent, 0) + "^")
    return "\n".join(lines)


def _exception(exc: BaseException) -> str:
    frames = _frames(exc)
    name = type(exc).__name__
    if isinstance(exc, KeyError) and frames and frames[-1].line:
        match = _ENVIRON_KEY.search(frames[-1].line)
        if match and exc.args == (match.group(1),):
            return f"{_where(frames[-1])}: {_unset_variable(match.group(1))}"
    lines = [f"{name}: {exc}, while loading the app:" if str(exc) else f"{name}, while loading:"]
    for frame in frames[-5:]:
        lines.append(f'  File "{shown_path(frame.filename)}", line {frame.lineno}, in {frame.name}')
        if frame.line:
            lines.append(f"    {frame.line}")
    lines.append(f"({_FULL}.)")
    return "\n".join(lines)


def _unset_variable(name: str) -> str:
    if name == "SECRET_KEY":
        return f"the environment variable SECRET_KEY is not set. Fix: {SET_SECRET_KEY}."
    return (
        f"the environment variable {name} is not set. Fix: set it in the shell that runs "
        f'flask: export {name}="..." (Windows PowerShell: $env:{name} = "...").'
    )


def _nearby_modules(import_name: str) -> str:
    """`` Did you mean --app app?`` from the modules in the current folder: its
    ``.py`` files and packages."""
    module = import_name.split(":")[0]
    files = {p.stem: p.name for p in Path().glob("*.py")}
    files.update({p.parent.name: p.parent.name + "/" for p in Path().glob("*/__init__.py")})
    close = difflib.get_close_matches(module, list(files), n=1)
    if close:
        return f" Did you mean --app {close[0]}?"
    if files:
        return f" Python files here: {', '.join(sorted(files.values())[:8])}."
    return " There is no .py file in this folder: cd to the folder with your app."


def one_line(exc: BaseException) -> str:
    """``ZeroDivisionError: division by zero (app.py, line 3)``: the exception
    and the innermost line of the user's own code that raised it."""
    if isinstance(exc, NoAppException) and isinstance(exc.__context__, ImportError):
        exc = exc.__context__  # Flask's "While importing ..." wraps the real error
    if isinstance(exc, SyntaxError):
        where = f"{shown_path(exc.filename or '?')}, line {exc.lineno}"
        return f"{type(exc).__name__}: {exc.msg} ({where})"
    text = str(exc).splitlines()[0] if str(exc) else ""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if not is_library(f.filename)]
    where = f" ({_where(own[-1])})" if own else ""
    return f"{type(exc).__name__}: {text}{where}" if text else f"{type(exc).__name__}{where}"
