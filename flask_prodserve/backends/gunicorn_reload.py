"""Reload new code under gunicorn, one worker at a time, gated on readiness.

gunicorn's own SIGHUP does not fit ``flask serve``: the app is loaded in the
master, so its new workers would run the old code; it starts every new
worker at once and stops the old ones without waiting for the new ones to be
ready; and a new worker that fails to boot halts the whole server. So the
master's SIGHUP (and the ``reload_file`` trigger) runs this instead, in a
thread of the master, on gunicorn's documented signals:

1. the master imports the app afresh (:meth:`.AppLoader.fresh`), while no
   worker forks (``pre_fork`` waits); if that fails, one line says why and
   nothing else happens;
2. for each worker: ``SIGTTIN`` (one more worker), which forks with the new
   code, runs ``worker_init`` and answers its own health check in-process
   before it accepts a connection, then reports ``ready`` through the report
   pipe; only then ``SIGTTOU`` (one fewer: gunicorn stops the *oldest*, which
   finishes its requests within ``graceful_timeout``);
3. if a new worker reports ``unready`` or stays silent for ``timeout``
   seconds, the master goes back to the previous generation, the new worker
   is told to stop (exit status 0, so the master does not halt), gunicorn
   starts a replacement with the previous code, and ``SIGTTOU`` returns to
   the configured count: the old code keeps serving, and a later SIGHUP can
   try again.

Workers that gunicorn starts later (after a crash, or ``max_requests``) fork
from the master, which holds the newest generation that loaded and became
ready. The master's PID never changes.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from gunicorn.arbiter import Arbiter

from .. import metrics
from ..lifecycle import HookFailed
from ..loaderrors import one_line
from ..reloading import AppLoader, Loaded, ReloadFailed, SameCode, answers, served
from ..touchfile import TouchWatcher
from .gunicorn_names import reload_unsupported

if TYPE_CHECKING:
    from ..config import ServeConfig
    from . import Events


class Reports:
    """Lines the workers write to the master through the report pipe.

    ``boot``, ``ready`` and ``unready`` lines are for the reload in progress;
    the others (a failed hook, requests cut) are kept for the end of the run.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.kept: list[str] = []
        self._partial = b""
        self._lock = threading.Lock()

    def read(self, timeout: float) -> list[str]:
        """The lines that came within ``timeout`` seconds (all that are waiting)."""
        if timeout > 0:
            select.select([self.fd], [], [], timeout)
        with self._lock:
            data = self._partial
            try:
                while chunk := os.read(self.fd, 65536):
                    data += chunk
            except BlockingIOError:
                pass
            *lines, self._partial = data.split(b"\n")
        decoded = [line.decode(errors="replace") for line in lines]
        self.kept += [line for line in decoded if line.split(" ", 1)[0] not in _PROGRESS]
        return [line for line in decoded if line.split(" ", 1)[0] in _PROGRESS]

    def rest(self) -> list[str]:
        """Everything else, once the server has stopped."""
        self.read(0)
        if self._partial:
            self.kept.append(self._partial.decode(errors="replace"))
            self._partial = b""
        return self.kept


_PROGRESS = ("boot", "ready", "unready")


def write(fd: int, *words: object) -> None:
    """One report line (short enough to be written at once: a pipe write of
    at most 4 KiB is atomic)."""
    os.write(fd, (" ".join(str(w) for w in words)[:4000] + "\n").encode())


class Reloader:
    """The master's side of a reload (see the module docstring)."""

    def __init__(
        self,
        loader: AppLoader,
        first: Loaded,
        config: ServeConfig,
        events: Events,
        reports: Reports,
    ) -> None:
        self.loader = loader
        # What a worker forked now runs, and whether it is on trial (reports
        # ready/unready): one attribute, so that a fork never sees half a change.
        self.forking: tuple[Loaded, bool] = (first, False)
        self.last_generation = first.generation
        self.config = config
        self.events = events
        self.reports = reports
        self.fork_lock = threading.Lock()  # held while importing: no fork meanwhile
        self.requested = threading.Event()
        self.stopped = threading.Event()
        self.master = os.getpid()
        self.watcher: TouchWatcher | None = None

    @property
    def current(self) -> Loaded:
        return self.forking[0]

    # -- in the master's main thread -------------------------------------------

    def start(self) -> None:
        """Take over SIGHUP, and watch ``reload_file`` (from ``when_ready``)."""
        signal.signal(signal.SIGHUP, self._on_hup)
        threading.Thread(target=self._run, name="reload", daemon=True).start()
        if self.config.reload_file:
            self.watcher = TouchWatcher(self.config.reload_file, self.request)
            self.watcher.start()

    def _on_hup(self, signum: int, frame: Any) -> None:
        if os.getpid() == self.master:  # not a worker between fork and its own handlers
            self.request()

    def request(self) -> None:
        """Ask for a reload (several at once make one)."""
        self.requested.set()

    def pre_fork(self) -> None:
        """Wait for an import in progress: a fork would copy it half done."""
        with self.fork_lock:
            pass

    def stop(self) -> None:
        self.stopped.set()
        self.requested.set()
        if self.watcher is not None:
            self.watcher.stop()

    # -- in the reload thread --------------------------------------------------

    def _run(self) -> None:
        while True:
            self.requested.wait()
            self.requested.clear()
            if self.stopped.is_set():
                return
            self.reload()

    def reload(self) -> None:
        """One reload, all workers, or nothing."""
        previous = self.current
        generation = self.last_generation + 1
        unsupported = reload_unsupported()
        if unsupported:
            self._failed(previous, unsupported)
            return
        try:
            with self.fork_lock:
                new = self.loader.fresh(generation)
        except SameCode as exc:
            self._note(f"Reloading: {exc}.")
            new = served(previous.app, self.config, self.loader.recorder, generation)
        except ReloadFailed as exc:
            self._failed(previous, str(exc))
            return
        self.last_generation = generation  # its code ran: its number is not given again
        self._switch(new, trial=True)
        started: list[int] = []  # the new workers so far
        for _ in range(self.config.workers):
            if self.stopped.is_set():
                return
            problem = self._one_more(generation, started)
            if problem:
                self._back_to(previous, started, problem)
                return
            os.kill(self.master, signal.SIGTTOU)  # gunicorn stops the oldest worker
        self._switch(new, trial=False)
        metrics.reloaded()

    def _note(self, line: str) -> None:
        # Not while the main thread forks: a child would inherit stdout's
        # lock held by this thread, and block on its first write.
        with self.fork_lock:
            self.events.reload_note(line)

    def _failed(self, kept: Loaded, why: str) -> None:
        self._note(f"Reload failed, generation {kept.generation} keeps serving: {why}")

    def _switch(self, loaded: Loaded, *, trial: bool) -> None:
        self.forking = (loaded, trial)

    def _one_more(self, generation: int, started: list[int]) -> str:
        """Start one worker of ``generation`` (its PID goes to ``started``);
        "" once it is ready, else why not."""
        self.reports.read(0)  # reports of earlier workers are no longer awaited
        os.kill(self.master, signal.SIGTTIN)
        deadline = time.monotonic() + self.config.timeout
        pid = None
        while (left := deadline - time.monotonic()) > 0 and not self.stopped.is_set():
            for line in self.reports.read(min(left, 0.5)):
                kind, worker, gen, *why = line.split(" ", 3)
                if int(gen) != generation:
                    continue
                if kind == "boot" and pid is None:
                    pid = int(worker)
                    started.append(pid)
                elif kind == "ready":
                    self._note(f"Reloaded: generation {gen} ready (pid {worker})")
                    return ""
                elif kind == "unready":
                    return f"a new worker (pid {worker}) was not ready: {' '.join(why)}"
        return f"a new worker was not ready within {self.config.timeout} s (timeout)"

    def _back_to(self, previous: Loaded, started: list[int], problem: str) -> None:
        """Undo a reload that failed: workers forked from now on run
        ``previous``; the new workers are stopped (gracefully) and gunicorn
        replaces them; once the replacements are ready, ``SIGTTOU`` returns to
        the configured count."""
        self._switch(previous, trial=False)
        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self._wait_ready(previous.generation, len(started))
        os.kill(self.master, signal.SIGTTOU)
        self._failed(previous, problem)

    def _wait_ready(self, generation: int, count: int) -> None:
        """Until ``count`` workers of ``generation`` are ready (or ``timeout``)."""
        deadline = time.monotonic() + self.config.timeout
        while count > 0 and (left := deadline - time.monotonic()) > 0:
            for line in self.reports.read(min(left, 0.5)):
                kind, _, gen, *_ = line.split(" ", 3)
                count -= kind == "ready" and int(gen) == generation


def worker_ready(reloader: Reloader, report_fd: int, worker: Any) -> None:
    """In a new worker (``post_worker_init``): run the worker_init hooks and report.

    A worker on trial must also answer (:func:`answers`); if it fails, it
    says why and waits to be stopped, then exits 0 (gunicorn's boot error
    status would halt the master). Outside a reload, a failed hook stops the
    server, as it always has.
    """
    loaded, on_trial = reloader.forking
    if on_trial:
        write(report_fd, "boot", os.getpid(), loaded.generation)
    try:
        loaded.lifecycle.run("worker_init")
        problem = answers(loaded, worker.wsgi, reloader.config.health_path) if on_trial else ""
    except HookFailed as exc:
        if not on_trial:
            write(report_fd, "hook", exc)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)  # gunicorn stops: "Worker failed to boot."
        problem = str(exc)
    except Exception as exc:  # the app's health check raised
        problem = one_line(exc)
    if not problem:
        metrics.worker_started()
        write(report_fd, "ready", os.getpid(), loaded.generation)
        return
    write(report_fd, "unready", os.getpid(), loaded.generation, problem)
    _wait_to_be_stopped(worker, reloader.config.timeout)
    sys.exit(0)


def _wait_to_be_stopped(worker: Any, seconds: float) -> None:
    end = time.monotonic() + seconds
    while worker.alive and time.monotonic() < end:
        time.sleep(0.05)
