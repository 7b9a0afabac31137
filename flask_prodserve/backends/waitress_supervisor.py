"""A small supervising parent for waitress workers (POSIX).

The parent holds the listening socket and forks ``workers`` processes, each
running waitress on it (:mod:`.waitress_worker`); the kernel hands every new
connection to one of them, and queues connections while none accepts. The
parent serves nothing itself, and its process ID never changes (a service
manager's ``$MAINPID`` stays right). It

- replaces a worker that exits on its own (a crash, SIGKILL, the OOM killer);
- kills (SIGKILL) and replaces a worker that sends no heartbeat for
  ``timeout`` seconds: every thread stuck on the same requests, or its loop
  blocked;
- recycles a worker once it has started ``max_requests`` requests (plus up to
  ``max_requests_jitter``): the replacement serves before the old worker stops
  taking connections and finishes the requests it has;
- reloads on SIGHUP or when ``reload_file`` is touched (:meth:`Supervisor.reload`):
  the parent imports the app afresh (:meth:`.AppLoader.fresh`), then starts
  new workers one at a time; each runs worker_init and answers its own
  readiness check before an old one is stopped. New code that fails to
  import, or a new worker that fails or is not ready within ``timeout``,
  aborts the reload: the old workers keep serving, one line says why, and a
  later SIGHUP tries again. Workers started later (after a crash, or
  ``max_requests``) run the newest generation that became ready, as loaded,
  whatever is on disk by then;
- stops on SIGTERM or Ctrl+C: the workers finish their requests within
  ``graceful_timeout``; a second signal cuts them.

Hooks: on_start and on_stop run here, worker_init in every worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import selectors
import signal
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import metrics
from ..errors import ServeError
from ..reloading import OBJECT, AppLoader, Loaded, ReloadFailed, SameCode, served
from ..touchfile import INTERVAL, TouchWatcher
from . import GRACE_EXPIRED, Events, freeze_before_fork
from .waitress_worker import BEAT_EVERY, CUT, FAIL, PARENT_SIGNALS, READY, RECYCLE, work

if TYPE_CHECKING:
    import socket

    from _typeshed.wsgi import WSGIApplication

    from ..config import ServeConfig
    from ..lifecycle import Lifecycle

logger = logging.getLogger("flask_prodserve")

#: Seconds past ``graceful_timeout`` before a stopping worker is killed: it
#: cuts its own requests at ``graceful_timeout``, then needs a moment to exit.
_EXIT_MARGIN = 5.0
#: Seconds before starting again a worker that failed to start.
_RETRY_AFTER = 1.0


def supervise(
    wsgi_app: WSGIApplication,
    sock: socket.socket,
    config: ServeConfig,
    lifecycle: Lifecycle,
    events: Events,
) -> int:
    """Serve with supervised waitress workers until stopped; 0 or GRACE_EXPIRED."""
    first = Loaded(1, lifecycle.app, wsgi_app, lifecycle)
    loader = events.loader or AppLoader(OBJECT, config)
    return Supervisor(sock, config, first, loader).run(events)


@dataclass(eq=False)
class _Worker:
    pid: int
    fd: int
    generation: int
    born: float
    beat: float  # when it last wrote anything
    ready: bool = False
    recycle: bool = False  # it served its max_requests
    retiring: float = 0.0  # when it was told to stop; 0: it was not
    killed: str = ""  # why the parent killed it, already said
    failure: str = ""  # its ``fail`` message
    pending: bytes = b""


class Supervisor:
    """The parent process's state: its workers, the generation, the signals."""

    def __init__(
        self, sock: socket.socket, config: ServeConfig, first: Loaded, loader: AppLoader
    ) -> None:
        self.sock = sock
        self.config = config
        self.loader = loader
        self.loaded = first  # what a worker started now runs
        self.previous: Loaded | None = None  # while a reload is on: what to go back to
        self.last_generation = first.generation  # numbers are not given twice
        self.touched = (
            TouchWatcher(config.reload_file, lambda: None) if config.reload_file else None
        )
        self.look_at = 0.0  # when to look at reload_file next
        self.workers: dict[int, _Worker] = {}
        self.selector = selectors.DefaultSelector()
        self.signals: deque[int] = deque()
        self.stops: list[str] = []  # names of the stop signals seen
        self.stopping = False  # no new workers from now on
        self.started = False
        self.cut = False
        self.retry_at = 0.0
        self.events = Events(lambda: None, lambda name, graceful: None)
        self.wake = os.pipe()  # signal.set_wakeup_fd's: a signal wakes select()

    def run(self, events: Events) -> int:
        self.events = events
        lifecycle = self.loaded.lifecycle  # on_start and on_stop: the first generation's
        for fd in self.wake:
            os.set_blocking(fd, False)
        self.selector.register(self.wake[0], selectors.EVENT_READ)
        previous = signal.set_wakeup_fd(self.wake[1])
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in PARENT_SIGNALS}
        try:
            lifecycle.run("on_start")
            try:
                self._serve()
            finally:
                self._stop_all()
            lifecycle.run("on_stop")
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous)
            self.selector.close()
            for fd in self.wake:
                os.close(fd)
        return GRACE_EXPIRED if self.cut else 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)  # handled in the loop, not inside the handler

    def _serve(self) -> None:
        while not self.stops:
            self._step()
            if not self.started and self._all_ready():
                self.started = True
                self.events.started()

    def _step(self) -> None:
        """Wait for a message, a signal or a deadline (at most a beat), then act."""
        for key, _ in self.selector.select(BEAT_EVERY):
            if isinstance(key.data, _Worker):
                self._read(key.data)
            else:
                with contextlib.suppress(BlockingIOError):
                    while os.read(key.fd, 512):
                        pass
        while self.signals:
            self._handle(self.signals.popleft())
        self._reap()
        if not self.stopping:
            self._look_at_reload_file()
            self._check_deadlines()
            self._replace()

    def _look_at_reload_file(self) -> None:
        now = time.monotonic()
        if self.touched is not None and now >= self.look_at:
            self.look_at = now + INTERVAL
            if self.touched.changed():
                self.reload()

    def _handle(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self.reload()
        elif signum == signal.SIGTERM and self.stops:
            pass  # the same request again (GNU timeout signals the process, then its group)
        elif signum in (signal.SIGTERM, signal.SIGINT):
            first = not self.stops
            self.stopping = True
            self.stops.append(signal.Signals(signum).name)
            self.events.stopping(self.stops[-1], first)
            # The first stop lets requests finish; a second cuts them.
            self._signal_all(signal.SIGTERM if first else signal.SIGQUIT)
            self.cut = self.cut or not first
            self.sock.close()  # the workers hold their own copies until they drain

    def reload(self) -> None:
        """Start a new generation: one new worker at a time, each ready
        before an old one stops (see :meth:`_replace`)."""
        if not self.started or self.stopping:
            return  # the first generation is still starting, or all are stopping
        generation = self.last_generation + 1
        try:
            new = self.loader.fresh(generation)
        except SameCode as exc:
            self.events.reload_note(f"Reloading: {exc}.")
            new = served(self.loaded.app, self.config, self.loader.recorder, generation)
        except ReloadFailed as exc:
            serving = (self.previous or self.loaded).generation
            self.events.reload_note(f"Reload failed, generation {serving} keeps serving: {exc}")
            return
        self.last_generation = generation
        self.previous = self.previous or self.loaded
        self.loaded = new
        for worker in list(self.workers.values()):
            if not worker.ready and not worker.retiring:  # booting the code being replaced
                self._retire(worker)

    def _replaced(self, worker: _Worker) -> bool:
        """Due for replacement: recycled, or not of the generation that serves
        (older during a reload; newer after a failed one)."""
        return worker.recycle or worker.generation != self.loaded.generation

    def _all_ready(self) -> bool:
        serving = [w for w in self.workers.values() if w.ready and not w.retiring]
        return len(serving) >= self.config.workers

    def _replace(self) -> None:
        """Start workers that are missing and retire those replaced."""
        now = time.monotonic()
        running = [w for w in self.workers.values() if not w.retiring]
        fresh = [w for w in running if not self._replaced(w)]
        old = [w for w in running if self._replaced(w)]
        serving = [w for w in fresh if w.ready] + [w for w in old if w.ready]
        for worker in old:
            if worker.ready and len(serving) > self.config.workers:
                self._retire(worker)
                serving.remove(worker)
        if self.previous and not old and len(serving) >= self.config.workers:
            self.previous = None  # the reload is done
            metrics.reloaded()
        missing = self.config.workers - len(fresh)
        if missing <= 0 or now < self.retry_at:
            return
        if old:  # a swap: one new worker at a time, as long as any old one serves
            missing = 0 if any(not w.ready for w in fresh) else 1
        for _ in range(missing):
            self._spawn(now)

    def _spawn(self, now: float) -> None:
        limit = self.config.max_requests
        if limit:
            limit += random.randint(0, self.config.max_requests_jitter)
        metrics.forking(self.config.workers)
        reports, report_fd = os.pipe()
        signal.pthread_sigmask(signal.SIG_BLOCK, PARENT_SIGNALS)  # until the child has its own
        freeze_before_fork()
        try:
            pid = os.fork()
        except OSError as exc:  # out of processes or memory: try again later
            pid = -1
            logger.warning(" * Cannot start a worker: %s; trying again.", exc.strerror)
            self.retry_at = now + _RETRY_AFTER
        if pid == 0:
            try:
                self._forget(reports)
            finally:
                trial = self.previous is not None
                work(self.loaded, trial, self.sock, self.config, report_fd, limit)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, PARENT_SIGNALS)
        os.close(report_fd)
        if pid < 0:
            os.close(reports)
            return
        os.set_blocking(reports, False)
        worker = _Worker(pid, reports, self.loaded.generation, now, now)
        self.workers[pid] = worker
        self.selector.register(reports, selectors.EVENT_READ, worker)

    def _forget(self, *fds: int) -> None:
        """In a new worker: close the parent's descriptors."""
        self.selector.close()
        for fd in (*fds, *self.wake, *(w.fd for w in self.workers.values())):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _retire(self, worker: _Worker) -> None:
        """Stop a replaced worker gracefully: it takes no new connection and
        finishes those it has."""
        worker.retiring = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGTERM)

    def _read(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.fd, 4096)
        except BlockingIOError:
            return
        if not data:  # it exited (or is exiting): _reap() takes it
            self._close(worker)
            return
        worker.beat = time.monotonic()
        *lines, worker.pending = (worker.pending + data).split(b"\n")
        for line in lines:
            message, _, rest = line.decode(errors="replace").partition(" ")
            if message == READY:
                worker.ready = True
                if self.previous and worker.generation == self.loaded.generation:
                    self.events.reload_note(
                        f"Reloaded: generation {worker.generation} ready (pid {worker.pid})"
                    )
            elif message == RECYCLE:
                logger.info(" * Worker %d served its max_requests; recycling it.", worker.pid)
                worker.recycle = True
            elif message == CUT:
                self.cut = True
            elif message == FAIL:
                worker.failure = rest

    def _close(self, worker: _Worker) -> None:
        if worker.fd >= 0:
            self.selector.unregister(worker.fd)
            os.close(worker.fd)
            worker.fd = -1

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            if worker.fd >= 0:
                self._read(worker)  # what it wrote before it exited
                self._close(worker)
            metrics.process_exited(pid)
            if not (worker.retiring or self.stopping):
                self._exited(worker, _how(status))

    def _exited(self, worker: _Worker, how: str) -> None:
        """A worker ended that no one stopped: say so; _replace() starts another."""
        if worker.ready:
            if not worker.killed:
                logger.warning(" * Worker %d %s; starting a new one.", worker.pid, how)
            return
        why = worker.failure or (
            f"a new worker (pid {worker.pid}) {worker.killed or how + ' before it was ready'}"
        )
        if not self.started:
            raise ServeError(why)
        if self.previous and worker.generation == self.loaded.generation:
            self.loaded, self.previous = self.previous, None
            generation = self.loaded.generation
            self.events.reload_note(f"Reload failed, generation {generation} keeps serving: {why}")
            return
        logger.warning(" * A new worker failed to start: %s; trying again.", why)
        self.retry_at = time.monotonic() + _RETRY_AFTER

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        timeout, grace = self.config.timeout, self.config.graceful_timeout
        for worker in list(self.workers.values()):
            if worker.retiring:
                if now - worker.retiring > grace + _EXIT_MARGIN and not worker.killed:
                    self._kill(worker, signal.SIGKILL, "did not stop within the grace period")
                    self.cut = True
            elif not worker.ready:
                if now - worker.born > timeout and not worker.killed:
                    self._kill(
                        worker, signal.SIGKILL, f"was not ready within {timeout} s (timeout)"
                    )
            elif now - worker.beat > timeout and not worker.killed:
                self._read(worker)  # beats still unread (the parent was busy importing)
                if now - worker.beat <= timeout:
                    continue
                why = f"sent no heartbeat for {timeout} s (every thread busy, or its loop blocked)"
                logger.warning(
                    " * Worker %d %s; killed it (SIGKILL), starting a new one.", worker.pid, why
                )
                self._kill(worker, signal.SIGKILL, why)

    def _kill(self, worker: _Worker, sig: int, why: str) -> None:
        worker.killed = why
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, sig)

    def _signal_all(self, sig: int) -> None:
        """SIGTERM: stop gracefully; SIGQUIT: stop now (a worker still booting
        has no handler for it yet, and gets SIGKILL)."""
        for worker in self.workers.values():
            worker.retiring = worker.retiring or time.monotonic()
            to_send = signal.SIGKILL if sig == signal.SIGQUIT and not worker.ready else sig
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, to_send)

    def _stop_all(self) -> None:
        """Wait for every worker to stop; after an error, stop them at once."""
        if not self.stopping:  # startup failed: no request was promised anything
            self.stopping = True
            self._signal_all(signal.SIGKILL)
        deadline = time.monotonic() + self.config.graceful_timeout + _EXIT_MARGIN
        while self.workers:
            if time.monotonic() > deadline:
                self._signal_all(signal.SIGKILL)
                self.cut = True
                deadline = float("inf")
            self._step()


def _how(status: int) -> str:
    """``was killed by SIGKILL``, ``exited with status 1``."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"was killed by {name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"
