"""Serve an app object under a real server in a forked process, for tests.

:class:`ProdServer` is what the ``prod_server`` pytest fixture
(:mod:`flask_prodserve.pytest_plugin`) gives a test. The app already exists
in the test process (the project's ``app`` fixture made it), so the server
runs in a fork of that process, in its own process group, and serves it
exactly as ``flask serve --prod`` would: same resolver, same checks, same
middleware, same banner. A fork is needed rather than a thread: gunicorn
forks its own workers and a server that hangs or crashes must not take
the test run with it. POSIX only (Windows has no ``fork``).

The child writes everything it prints to a log file, reports its URL
through a pipe once the server has accepted its settings, and stops on
SIGTERM like the real command. A second pipe, the lifeline, is held open by
the test process: if that process dies without stopping the server (a
``kill -9``, pytest-timeout's thread method), the child sees it close and
stops itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import select
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from . import serving
from .config import Layer, check_names

if TYPE_CHECKING:
    from flask import Flask

    from .config import ServeConfig

#: Seconds a server has to announce its URL (checks, imports and binding).
START_DEADLINE = 60.0
#: Seconds a server has to stop after SIGTERM before its group is killed.
STOP_DEADLINE = 30.0

# Lifeline write ends held by this process: a forked server closes the others'.
_lifelines: set[int] = set()


class ServerDidNotStart(Exception):
    """The server exited or stayed silent before announcing its URL; the
    message carries its output."""


def resolve(app: Flask, name: str, options: Mapping[str, Any]) -> ServeConfig:
    """The settings ``flask serve --prod --server NAME`` would use for ``app``
    (``name`` ``"dev"``: ``--dev --no-reload``; ``"auto"``: no ``--server``),
    on an ephemeral loopback port, with ``options`` (from the marker) above
    the environment and the app's config."""
    check_names(options, Layer.EXTENSION)
    fixture = "the prod_server fixture"
    forced: dict[str, Any] = {"host": "127.0.0.1", "port": 0}
    if name == "dev":
        forced.update(mode="dev", reload=False)  # a reloader would re-run pytest
    else:
        forced["mode"] = "prod"
        if name != "auto":
            forced["server"] = name
    labels = {key: f"@pytest.mark.prod_server({key}=...)" for key in options}
    labels.update(dict.fromkeys(forced, fixture))
    return serving.config_for(app, {**options, **forced}, cli_labels=labels)


class ProdServer:
    """A server process serving the test's app; see the ``prod_server`` fixture."""

    def __init__(self, config: ServeConfig, log: Path) -> None:
        #: The resolved settings (``config.server`` is the server that runs).
        self.config = config
        #: The file the server's output goes to: banner, access log, errors.
        self.log = log
        #: The base URL with the prefix and no trailing slash:
        #: ``http://127.0.0.1:PORT/app``; append paths such as ``/login``.
        self.url = ""
        #: The address it listens on, ``127.0.0.1``.
        self.host = ""
        #: The port the system picked.
        self.port = 0
        #: The server's process ID, also its process group's.
        self.pid = 0
        #: The exit status, once stopped.
        self.returncode: int | None = None
        self._lifeline = -1

    def start(self, app: Flask, deadline: float = START_DEADLINE) -> ProdServer:
        """Fork, serve ``app`` in the child, and return once it announced its URL."""
        urls_read, urls_write = os.pipe()
        life_read, life_write = os.pipe()
        log_fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()  # or the child would write the parent's buffered output again
        with warnings.catch_warnings():
            # Python 3.12+ warns when a process with threads forks (pytest-xdist's
            # workers have some). The child runs only the serve path and ends in
            # os._exit; logging's locks are renewed after a fork by logging itself.
            warnings.filterwarnings("ignore", ".*fork.*", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            os.close(urls_read)
            os.close(life_write)
            _child(app, self.config, log_fd, urls_write, life_read)
        self.pid = pid
        self._lifeline = life_write
        _lifelines.add(life_write)
        for fd in (urls_write, life_read, log_fd):
            os.close(fd)
        try:
            text, timed_out = _read_until_eof(urls_read, deadline)
        except BaseException:  # Ctrl+C, pytest-timeout: no server may outlive this
            self.stop()
            raise
        finally:
            os.close(urls_read)
        if not text:
            status = self.stop()
            what = (
                f"did not start within {deadline:g} s"
                if timed_out
                else f"exited with status {status} before serving"
            )
            raise ServerDidNotStart(f"{self.describe()} {what}; its output:\n{self.read_log()}")
        self.url = text.split()[0].rstrip("/")
        hostport = self.url.split("//", 1)[1].split("/", 1)[0]
        host, _, port = hostport.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        return self

    def describe(self) -> str:
        """``the gunicorn server (pid 1234)``."""
        return f"the {self.config.server} server (pid {self.pid})"

    def read_log(self) -> str:
        """Everything the server has written so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10) -> str:
        """The log once ``text`` is in it (access lines are written in batches,
        up to 0.2 s after the response); AssertionError after ``timeout``."""
        end = time.monotonic() + timeout
        while text not in (log := self.read_log()):
            if time.monotonic() > end:
                raise AssertionError(f"{text!r} not in the server log within {timeout:g} s:\n{log}")
            time.sleep(0.05)
        return log

    @property
    def running(self) -> bool:
        """Whether the server process is still running (it exits on a fatal error)."""
        if self.returncode is not None or not self.pid:
            return False
        if not hasattr(os, "waitid"):  # pragma: no cover - not on Linux
            return True
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:  # reaped already: the test process ignores SIGCHLD
            return False

    def stop(self, deadline: float = STOP_DEADLINE) -> int:
        """SIGTERM, as a process manager would; kill the whole process group
        if it has not exited after ``deadline`` seconds. Returns the exit
        status (negative: killed by that signal; 0 when the test process
        ignores SIGCHLD, so the status is lost). Safe to call twice."""
        if self.returncode is not None or not self.pid:
            return self.returncode or 0
        status = None
        try:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            status = _wait_exited(self.pid, deadline)
        finally:
            # The exited leader is not reaped yet, so its group ID cannot have
            # been reused: anything left in the group (a stray worker) dies.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            if status is None:
                with contextlib.suppress(ChildProcessError):  # SIGCHLD ignored: reaped
                    status = os.waitpid(self.pid, 0)[1]
            self.returncode = 0 if status is None else os.waitstatus_to_exitcode(status)
            _lifelines.discard(self._lifeline)
            os.close(self._lifeline)
        return self.returncode


def _read_until_eof(fd: int, deadline: float) -> tuple[str, bool]:
    """What the child wrote up to an empty line or closing its end, and
    whether time ran out."""
    end = time.monotonic() + deadline
    data = b""
    while (remaining := end - time.monotonic()) > 0:
        if select.select([fd], [], [], remaining)[0]:
            chunk = os.read(fd, 4096)
            data += chunk
            if not chunk or data.endswith(b"\n\n"):
                return data.decode(errors="replace").strip(), False
    return data.decode(errors="replace"), True


def _wait_exited(pid: int, deadline: float) -> int | None:
    """Wait up to ``deadline`` seconds for ``pid`` to exit, leaving it unreaped
    (``None``); where ``os.waitid`` is missing, reap it and return its status."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if not hasattr(os, "waitid"):  # pragma: no cover - not on Linux
            reaped, status = os.waitpid(pid, os.WNOHANG)
            if reaped:
                return status
        else:
            try:
                if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    return None
            except ChildProcessError:  # reaped already: the test process ignores SIGCHLD
                return None
        time.sleep(0.02)
    return None


def _child(
    app: Flask, config: ServeConfig, log_fd: int, urls_fd: int, lifeline_fd: int
) -> NoReturn:
    """The forked server process: never returns into pytest."""
    status = 1
    try:
        os.setsid()  # its own process group, out of reach of the terminal's Ctrl+C
        for fd in _lifelines:
            os.close(fd)  # other servers' lifelines belong to the test process
        _redirect_output(log_fd)
        _reset_process_state()
        _watch_lifeline(lifeline_fd)

        def announced(urls: list[str]) -> None:
            # An empty line ends the list: waitress's workers, forked before
            # the announcement, hold this pipe open too.
            os.write(urls_fd, "\n".join(urls).encode() + b"\n\n")
            os.close(urls_fd)  # before gunicorn forks: its workers must not hold it

        from .cli import _serve

        # A fresh context: none of the test's pushed app or request contexts.
        status = contextvars.Context().run(_serve, app, config, announced)
    except SystemExit as exc:  # a gunicorn worker exiting, or sys.exit in a hook
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            logging.shutdown()  # what the interpreter does at exit: flush the access log
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)  # not pytest's atexit handlers, not its finalizers


def _redirect_output(log_fd: int) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(devnull)
    os.close(log_fd)
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout, sys.stderr = (
        open(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        for fd in (1, 2)
    )


def _reset_process_state() -> None:
    """Undo what pytest set up in this process, so the server runs as in
    ``flask serve``: pytest's log capture (records would vanish into it),
    its warning filters (``error`` would break gunicorn's fork on Python
    3.12+), the access log handler of an in-process serve, and signals."""
    from .logbuffer import BatchingStreamHandler
    from .middleware import access_logger

    logging.root.handlers.clear()  # warnings and errors reach stderr, as with no config
    for handler in list(access_logger.handlers):
        if isinstance(handler, BatchingStreamHandler):  # set up by a serve in the test process
            access_logger.removeHandler(handler)
    warnings.resetwarnings()
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.simplefilter("ignore", category)  # the interpreter's defaults
    # Until the backend installs its own handlers, a stop is a Ctrl+C, which
    # the serve path treats as a stop while starting (the fixture may stop a
    # server the moment it announced its URL).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    for sig in (signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, signal.SIG_DFL)


def _watch_lifeline(fd: int) -> None:
    """Stop (SIGTERM, gracefully) once the test process is gone."""

    def watch() -> None:
        with contextlib.suppress(OSError):
            os.read(fd, 1)  # returns b"" when the test process closed or lost it
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="prod_server lifeline", daemon=True).start()
