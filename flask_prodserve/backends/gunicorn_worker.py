"""A gunicorn worker that slow clients cannot starve.

gunicorn's threaded worker (gthread) gives a connection to a thread as soon
as a byte arrives, and the thread then blocks until the request line and
headers are in: fifty clients sending a header line every few seconds hold
every thread (slowloris). :class:`GatedWorker` reads each request head in
its event loop instead, without blocking, and gives only a complete one to a
thread, which parses and answers it with gunicorn's own HTTP parser and
response (the bytes read so far come first; see :mod:`.gunicorn_answer`).
A head that takes longer than ``header_timeout`` gets a 408, one larger
than ``max_header_size`` a 431, ambiguous framing a 400 (see
:mod:`.headgate`).

The worker stands on gunicorn's documented worker base class; the few
undocumented names of gunicorn's HTTP layer it uses are listed, with the
versions tested, in :mod:`.gunicorn_names`.

A worker accepts a new connection only while it holds no more connections
than the least loaded worker (:mod:`.balance`): the others, sharing the
listening socket, take the rest, instead of one worker taking a whole burst
and queueing it behind its busy threads while another idles. A worker that
may not accept looks again every :data:`REBALANCE`; when connections have
waited in the listener's queue for :data:`OVERDUE` (the least loaded worker
is stuck), it takes one anyway.

Balanced connections are not balanced requests: a client that keeps
connections sends each request on the one idle last, which the worker that
answered last holds, and a request that comes while that worker is busy
would wait although another idles. So on Linux a connection answered and
kept alive is shared with the other workers (:mod:`.sharing`): each watches
it, the kernel wakes one that waits, and a worker claims the connection
before it reads a request and releases it once the response is sent.

Complete requests wait in the worker's own queue and are answered in the
order they came, one at a time while they are quick (:data:`RUNNING`), by
the thread that runs the event loop itself, as a sync worker would: no
hand-off between threads. When a request runs longer than :data:`PATIENCE`
(waiting on a database, say), a watchdog gives the event loop to a free
thread, and the request stops counting: slow requests run side by side, up
to ``threads``, and the loop keeps reading, accepting and sending the
heartbeat. The threads take turns at the loop (leader and followers); the
main thread only waits, for gunicorn's signal handlers run in it.

On SIGTERM (or a first SIGINT) the worker takes the connections the kernel
has already queued (those clients are owed an answer), closes its listener,
finishes what is in flight, and exits before the grace period ends; what it
had to cut is reported to the master through ``report_fd``.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import os
import queue
import resource
import select
import selectors
import signal
import socket
import threading
import time
from functools import partial
from typing import Any

from gunicorn.workers.base import Worker

from ..bodylimit import BodyTooLarge
from .balance import should_accept
from .gunicorn_answer import Answering
from .gunicorn_names import cache_date_header
from .headgate import (
    ERRORS,
    PASS,
    REASONS,
    ChunkedFraming,
    GateLimits,
    chunked_body,
    head_end,
    head_verdict,
)
from .rungate import next_start
from .sharing import Selector, Shares

_READ_SIZE = 64 * 1024
#: How long a refused or finished connection is read (what arrives is
#: discarded) before it is closed: closing with unread bytes would reset the
#: connection and could destroy the response before the client reads it.
_LINGER = 2.0
#: How often (seconds) a worker that may not accept looks at the others'
#: counts again: they change without waking it.
REBALANCE = 0.01
#: How long (seconds) connections may wait in the listener's queue while no
#: worker takes them before one that may not accept takes one anyway.
OVERDUE = 0.1
#: How many requests a worker runs at once while they are quick: its threads
#: share one GIL, so more at once only makes each slower, in an order no one
#: chose. Measured in turn (A B B A, quiet 2-CPU machine, 4 workers x 8
#: threads, wrk -c32) against running up to ``threads`` at once, with
#: hand-offs to threads: two at a time gave p99 11-14 ms against 20-25 on
#: ``/``, 25-27 against 41-43 on a template page. Once the loop's own thread
#: answered them, one at a time did better than two (2 workers x 8: p99 7-11
#: ms against 10-17, requests/s 6-21 % higher; docs/servers.rst, "Tail
#: latency").
RUNNING = 1
#: How long (seconds) a running request counts against :data:`RUNNING`, and
#: holds the event loop's thread: one that runs longer is probably waiting
#: (a database, ``time.sleep``), and must not hold the others up.
PATIENCE = 0.002
#: The watchdog stops looking after this long with no request answered in
#: the loop's thread (it is woken when one is).
_WATCH_IDLE = 0.05
#: How often (seconds) the event loop tells the master it is alive, at most
#: (gunicorn's ``timeout`` counts in seconds).
_NOTIFY_EVERY = 0.1
#: How long (seconds) a worker leaves a shared connection alone that another
#: worker has claimed (it reads a request's body, say) before it looks again.
_PARK = 0.002
#: A stopping worker gives connections still sending their head this long.
_STOP_LINGER = 2.0
#: It exits this long before the master's grace period ends (the master
#: would kill it then, and say "SIGKILL! Perhaps out of memory?").
_GRACE_MARGIN = 0.5


class Conn:
    """A client connection, with what the event loop has read of its next request."""

    def __init__(self, sock: socket.socket, client: Any, server: Any) -> None:
        self.sock = sock
        self.client = client
        self.server = server
        self.head = bytearray()
        self.checked = 0  # how much of head was searched for its end
        self.deadline = 0.0
        self.lingering = False  # answered for the last time: closing
        self.served = False  # answered a request already (kept alive since)
        self.framing: ChunkedFraming | None = None  # the current request's chunked body
        self.cell = -1  # its cell once shared with the other workers (see .sharing)
        self.claimed = False  # this worker holds its claim
        self.counted = True  # in this worker's count (not a copy another worker gave it)
        self.given: set[int] = set()  # the workers (process IDs) given a copy of it
        self.given_at = -1  # the board's changes when it was last given

    @property
    def ip(self) -> str:
        return str(self.client[0] if isinstance(self.client, tuple) else self.client)


class GatedWorker(Answering, Worker):
    """A gunicorn worker with the behaviour of the module's docstring."""

    limits = GateLimits()
    report_fd = -1  # where to write b"cut" when stopping had to cut requests

    def init_process(self) -> None:
        self.limits = getattr(self.app, "gate_limits", self.limits)
        self.report_fd = getattr(self.app, "report_fd", -1)
        self.stopping = False  # told to stop, not just recycled (max_requests)
        self.board = getattr(self.app, "board", None)
        self.slot: int | None = getattr(self, "board_slot", None)  # set by the master's pre_fork
        self.shares: Shares | None = getattr(self.app, "shares", None)
        if self.slot is None:
            self.shares = None  # no slot, no inbox: the worker keeps its connections
        # Where the copies other workers give it arrive (a worker a reload
        # starts past the inboxes made has none: it only gives).
        self.inbox = (
            None if self.shares is None or self.slot is None else self.shares.inbox(self.slot)
        )
        self.selector: selectors.BaseSelector = (
            selectors.DefaultSelector() if self.shares is None else Selector()
        )
        self.shared = itertools.count()  # connections this worker shared so far
        self.copies = 0  # copies of other workers' connections it holds
        # Read once: gunicorn's cfg looks each name up anew, and these are
        # read for every request.
        self.keepalive = float(self.cfg.keepalive)
        self.max_open = int(self.cfg.worker_connections)
        self.max_line = int(self.cfg.limit_request_line) or 8190
        # Copies take file descriptors: leave room for the worker's own.
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.max_copies = self.max_open
        if nofile != resource.RLIM_INFINITY:
            self.max_copies = min(self.max_copies, nofile // 4)
        self.parked: dict[Conn, None] = {}  # shared, claimed by another worker: not watched
        self.unpark_at = 0.0
        self.waiting: dict[Conn, None] = {}  # reading a head, idle, or lingering
        self.deadlines: list[tuple[float, int, Conn]] = []  # a heap; stale entries skipped
        self.returned: queue.SimpleQueue[tuple[Conn, bool]] = queue.SimpleQueue()
        self.tasks: queue.SimpleQueue[Conn | None] = queue.SimpleQueue()  # None: lead
        self.dispatched: list[Conn] = []  # chosen by _dispatch, not handed out yet
        self.baton = threading.Lock()  # who runs the event loop: see _answer_inline
        self.inline: Conn | None = None  # what the loop's thread is answering itself
        self.inline_seq = 0
        self.watching = threading.Event()  # the watchdog polls while it is set
        self.finished = threading.Event()  # the event loop has stopped
        self.crashed = False
        self.next_notify = 0.0
        self.ready: collections.deque[Conn] = collections.deque()  # complete heads, in order
        self.running: dict[Conn, float] = {}  # given to a thread and not back yet: when
        self.open = 0
        self.listening = False
        self.queued_since: float | None = None
        self.order = itertools.count()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        if self.board is not None and self.slot is not None:
            self.board.claim(self.slot)
        cache_date_header()
        super().init_process()

    # -- signals ---------------------------------------------------------------

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        self.stopping = True
        self._wake()

    def handle_quit(self, sig: int, frame: Any) -> None:
        # Ctrl+C reaches every process of the group: the first one stops
        # gracefully, as SIGTERM does (and as the master then asks); a second
        # stops at once.
        if sig == signal.SIGINT and not self.stopping:
            self.handle_exit(sig, frame)
        else:
            super().handle_quit(sig, frame)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError: a wake-up is pending already
            os.write(self.wake_w, b"x")

    # -- the event loop --------------------------------------------------------

    def run(self) -> None:
        self.threads = int(self.cfg.threads)
        self.selector.register(self.wake_r, selectors.EVENT_READ, self._woken)
        if self.inbox is not None:
            self.selector.register(self.inbox, selectors.EVENT_READ, self._take_copy)
        for listener in self.sockets:
            listener.setblocking(False)
        # One thread more than may answer requests at once: the loop always
        # has a thread, even when every other one answers a slow request.
        for _ in range(self.threads + 1):
            threading.Thread(target=self._thread_main, daemon=True).start()
        threading.Thread(target=self._watch, daemon=True).start()
        self.tasks.put(None)
        # The main thread only waits: gunicorn's signal handlers run in it.
        while not self.finished.wait(1.0):
            pass
        if self.crashed:
            raise RuntimeError("the worker's event loop failed (logged above)")

    def _lead(self) -> None:
        """Run the event loop in this thread, answering a request itself when
        it dispatches one, until another thread takes the loop over (the
        request took too long) or the worker stops."""
        while self.alive:
            mine = self._tick(self._may_accept())
            if mine is not None and not self._answer_inline(mine):
                return
            if os.getppid() != self.ppid:
                self.log.info("Parent changed, shutting down: %s", self)
                break
        self._stop()
        self.finished.set()

    def _tick(self, accepting: bool) -> Conn | None:
        """One turn of the event loop; the request this thread is to answer."""
        if time.monotonic() >= self.next_notify:  # a system call: not every turn
            self.notify()
            self.next_notify = time.monotonic() + _NOTIFY_EVERY
        self._listen(accepting)
        now = time.monotonic()
        timeout = 1.0 if accepting else REBALANCE
        if self.deadlines:
            timeout = max(0.0, min(timeout, self.deadlines[0][0] - now))
        due = self._next_dispatch(now)
        if due is not None:
            timeout = max(0.0, min(timeout, due - now))
        if self.dispatched:
            timeout = 0.0
        if self.parked:
            timeout = max(0.0, min(timeout, self.unpark_at - now))
        for key, _ in self.selector.select(timeout):
            key.data(key.fileobj)
            if self.dispatched and self.shares is not None:
                # Answer it first: what else is ready is reported again next
                # turn, unless a worker that waits takes it meanwhile.
                break
        self._take_returned()
        now = time.monotonic()
        self._dispatch(now)
        self._expire(now)
        if self.parked and now >= self.unpark_at:
            self._unpark()
        if not accepting and self.alive:
            self._admit_overdue()
        return self._hand_out(inline=True)

    def _hand_out(self, inline: bool) -> Conn | None:
        """Give the dispatched requests to free threads, but the first to
        the loop's own thread when ``inline``; that one is returned."""
        if not self.dispatched:
            return None
        mine = self.dispatched.pop(0) if inline else None
        for conn in self.dispatched:
            self.tasks.put(conn)
        self.dispatched.clear()
        return mine

    def _woken(self, _: object) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.wake_r, 4096)

    def _may_accept(self) -> bool:
        if self.open >= self.max_open:
            return False
        if self.board is None or self.slot is None:
            return True
        return should_accept(self.open, self.board.others(self.slot))

    def _count(self, change: int) -> None:
        self.open += change
        if self.board is not None and self.slot is not None:
            self.board.post(self.slot, self.open)

    def _listen(self, on: bool) -> None:
        if on == self.listening:
            return
        for listener in self.sockets:
            if on:
                self.selector.register(listener, selectors.EVENT_READ, self._accept)
            else:
                self.selector.unregister(listener)
        self.listening = on
        self.queued_since = None

    def _admit_overdue(self) -> None:
        """Accept one connection if some have waited in the listener's queue
        for :data:`OVERDUE` while no thread was free."""
        try:
            queued = bool(select.select(self.sockets, [], [], 0)[0])
        except (OSError, ValueError):  # a listener closed by a stop meanwhile
            queued = False
        now = time.monotonic()
        if not queued or self.queued_since is None:
            self.queued_since = now if queued else None
        elif now - self.queued_since >= OVERDUE:
            self.queued_since = now
            any(self._accept(listener) for listener in self.sockets)

    def _accept(self, listener: Any) -> bool:
        """Accept one connection if one is queued; whether one was."""
        try:
            sock, client = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return False
        sock.setblocking(False)
        conn = Conn(sock, client, listener.getsockname())
        self._count(+1)
        self._wait(conn, self.limits.header_timeout)
        return True

    def _wait(self, conn: Conn, seconds: float) -> None:
        """Watch ``conn`` for bytes, until ``seconds`` from now."""
        now = time.monotonic()
        if conn not in self.waiting:
            self.waiting[conn] = None
            watch = partial(self._readable, conn)
            if conn.cell >= 0 and not conn.lingering:  # one worker is woken (see .sharing)
                assert isinstance(self.selector, Selector)
                self.selector.register(conn.sock, selectors.EVENT_READ, watch, exclusive=True)
            else:
                self.selector.register(conn.sock, selectors.EVENT_READ, watch)
        self._deadline(conn, now + seconds)

    def _deadline(self, conn: Conn, when: float) -> None:
        conn.deadline = when
        heapq.heappush(self.deadlines, (when, next(self.order), conn))

    def _readable(self, conn: Conn, _: object) -> None:
        if conn.cell >= 0 and not conn.claimed and not self._claim(conn):
            return
        try:
            data = conn.sock.recv(_READ_SIZE)
        except BlockingIOError:
            if conn.claimed and not conn.head:
                self._release(conn)  # another worker read it before this one claimed it
            return
        except OSError:
            data = b""  # reset: as good as closed
        if not data or conn.lingering:
            if not data:
                self._close(conn)  # closed, before a complete head or while lingering
            return
        if not conn.head:  # its first byte: the head must be complete in time
            self._deadline(conn, time.monotonic() + self.limits.header_timeout)
        conn.head += data
        self._judge(conn)

    def _judge(self, conn: Conn) -> None:
        verdict = head_verdict(conn.head, conn.checked, self.limits.max_header_size, self.max_line)
        conn.checked = len(conn.head)
        if verdict is None:
            return
        self._unwatch(conn)
        if verdict == PASS:
            verdict = self._check_body_start(conn)
        if verdict == PASS:
            self.ready.append(conn)
            self._dispatch(time.monotonic())
        else:
            self._refuse(conn, verdict)

    def _check_body_start(self, conn: Conn) -> int:
        """Follow a chunked body's framing from the bytes already read: PASS,
        or the status to refuse it with before any thread sees it."""
        end = head_end(conn.head)
        if not chunked_body(bytes(conn.head[:end])):
            conn.framing = None
            return PASS
        conn.framing = ChunkedFraming(self.limits.max_body_size)
        try:
            conn.framing.feed(bytes(conn.head[end:]))
        except BodyTooLarge:
            return 413
        except ValueError:
            return 400
        return PASS

    def _unwatch(self, conn: Conn) -> None:
        if self.waiting.pop(conn, 0) is None:
            self.selector.unregister(conn.sock)

    def _refuse(self, conn: Conn, status: int) -> None:
        log = self.log.debug if status == 408 else self.log.warning  # 408s can come by the dozen
        log("Invalid request from ip=%s: %s", conn.ip, REASONS[status])
        try:
            conn.sock.send(ERRORS[status])  # a few hundred bytes: the socket buffer takes them
        except OSError:
            self._close(conn)
            return
        self._linger(conn)

    def _linger(self, conn: Conn) -> None:
        """Close after the client has read what was sent, or after :data:`_LINGER`.

        Closing while unread bytes wait would make the kernel reset the
        connection, and the client could lose the response (RFC 9112, 9.6).
        """
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.lingering = True
        conn.head, conn.checked = bytearray(), 0
        self._wait(conn, _LINGER)

    def _close(self, conn: Conn, everywhere: bool = True) -> None:
        """Close ``conn``; a shared one in the other workers too unless
        told otherwise: shutting it down wakes every worker watching it, and
        each closes its copy."""
        self._unwatch(conn)
        self.parked.pop(conn, None)
        if conn.cell >= 0 and everywhere and (conn.claimed or self._seize(conn)):
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        if conn.claimed:
            self._release(conn)
        if conn.counted:
            self._count(-1)
        else:
            self.copies -= 1
        conn.sock.close()

    def _expire(self, now: float) -> None:
        while self.deadlines and self.deadlines[0][0] <= now:
            when, _, conn = heapq.heappop(self.deadlines)
            if conn.deadline != when or conn not in self.waiting:
                continue  # moved, or no longer waiting
            if conn.head and not conn.lingering:
                self._unwatch(conn)
                self._refuse(conn, 408)
            elif conn.cell >= 0 and not conn.lingering and self._answered_since(conn, now):
                continue  # another worker answered on it since: idle for less
            else:
                self._close(conn)  # idle, or done lingering

    def _dispatch(self, now: float) -> None:
        """Give complete requests to threads, in the order they came, while
        fewer than :data:`RUNNING` of those in threads started within
        :data:`PATIENCE`."""
        while self.ready and len(self.running) < self.threads:
            if next_start(self.running.values(), now, RUNNING, PATIENCE) > now:
                return
            conn = self.ready.popleft()
            self.running[conn] = now
            self.dispatched.append(conn)

    def _next_dispatch(self, now: float) -> float | None:
        """When :meth:`_dispatch` may give the next request to a thread."""
        if not self.ready or len(self.running) >= self.threads:
            return None
        return next_start(self.running.values(), now, RUNNING, PATIENCE)

    def _take_returned(self) -> None:
        """Connections the other threads are done with."""
        while True:
            try:
                conn, keep = self.returned.get_nowait()
            except queue.Empty:
                return
            self._take_back(conn, keep)

    def _take_back(self, conn: Conn, keep: bool) -> None:
        """A connection whose request was answered: kept, or closed."""
        del self.running[conn]
        if not (keep and self.alive):
            self._linger(conn)
            return
        conn.served = True
        conn.sock.setblocking(False)
        self._share(conn)
        self._wait(conn, self.keepalive)
        if conn.counted and conn.cell >= 0:  # after this worker watches it (see .sharing)
            self._give(conn)
        if conn.head:  # the client sent its next request already
            self._deadline(conn, time.monotonic() + self.limits.header_timeout)
            self._judge(conn)
        elif conn.claimed:
            self._release(conn)

    # -- kept-alive connections shared by every worker (see .sharing) ----------

    def _share(self, conn: Conn) -> None:
        """Note an answer on ``conn``, giving it a cell on its first if it is
        to be shared."""
        shares, slot = self.shares, self.slot
        if shares is None or slot is None:
            return
        if conn.cell < 0:
            if conn.sock.family == socket.AF_UNIX:
                return  # a proxy on this machine: it keeps no connection alive
            conn.cell = shares.cell(slot, next(self.shared))
        shares.answered(conn.cell)

    def _give(self, conn: Conn) -> None:
        """Give copies of a connection this worker accepted to the workers
        that came up since it last did (all of them, the first time)."""
        assert self.shares is not None and self.board is not None and self.slot is not None
        changes = self.board.changes
        if changes != conn.given_at and self.shares.give(
            conn.sock, conn.cell, self.slot, conn.given
        ):
            conn.given_at = changes

    def _take_copy(self, _: object) -> None:
        """Watch a copy of a connection another worker shared."""
        assert self.shares is not None and self.slot is not None
        taken = self.shares.take(self.slot)
        if taken is None:
            return
        sock, cell = taken
        try:
            client, local = sock.getpeername(), sock.getsockname()
        except OSError:  # the client left meanwhile
            sock.close()
            return
        if self.copies >= self.max_copies:
            sock.close()  # its worker still has it
            return
        sock.setblocking(False)
        # The listener's address, as for a connection this worker accepts
        # (it differs from the connection's own when bound to 0.0.0.0).
        ports = (listener.getsockname() for listener in self.sockets)
        server = next((address for address in ports if address[1:2] == local[1:2]), local)
        conn = Conn(sock, client, server)
        conn.served, conn.cell, conn.counted = True, cell, False
        self.copies += 1
        self._wait(conn, self.keepalive)

    def _claim(self, conn: Conn) -> bool:
        """Claim a shared connection before reading its next request. If
        another worker holds the claim (reading a request or answering it),
        stop watching the connection for :data:`_PARK`, or its bytes would
        wake this worker again and again."""
        if self._seize(conn):
            return True
        self._unwatch(conn)
        self.parked[conn] = None
        if len(self.parked) == 1:
            self.unpark_at = time.monotonic() + _PARK
        return False

    def _seize(self, conn: Conn) -> bool:
        """Claim ``conn`` if no worker holds it (none is reading or answering)."""
        assert self.shares is not None
        conn.claimed = self.shares.claim(conn.cell)
        return conn.claimed

    def _answered(self, conn: Conn) -> bool:
        """Answer ``conn`` (in any thread); whether it is kept. A kept shared
        connection's claim is released as soon as the response is sent: the
        client's next request often follows at once, and the worker that
        waits must be able to take it (see :meth:`_claim`)."""
        keep = self._answer(conn)
        if keep and conn.claimed and not conn.head:  # nothing of the next one read yet
            self._release(conn)
        return keep

    def _release(self, conn: Conn) -> None:
        assert self.shares is not None
        self.shares.release(conn.cell)
        conn.claimed = False

    def _unpark(self) -> None:
        parked, self.parked = self.parked, {}
        for conn in parked:
            self._wait(conn, self.keepalive)

    def _answered_since(self, conn: Conn, now: float) -> bool:
        """Whether another worker answered on shared ``conn`` within the
        keep-alive time; if so, its idle deadline moves on."""
        assert self.shares is not None
        until = self.shares.idle_until(conn.cell, self.keepalive)
        if until <= now:
            return False
        self._deadline(conn, until)
        return True

    # -- answering in the loop's own thread ------------------------------------

    def _answer_inline(self, conn: Conn) -> bool:
        """Answer ``conn`` in the thread that runs the loop; whether this
        thread still runs it afterwards.

        Giving a request to another thread and taking the connection back
        costs more than answering a quick request (measured head to head on
        a quiet 2-CPU machine, wrk -c1 on ``/``: 362 us a request with the
        hand-off, 269 us without; at half of gunicorn -w 2's rate, open loop,
        p50 0.45-0.63 ms against 0.29-0.45; see docs/servers.rst). A slow
        request must not stop the loop, though: the watchdog (:meth:`_watch`)
        hands the loop to a free thread when one runs past :data:`PATIENCE`.
        """
        with self.baton:
            self.inline_seq += 1
            self.inline = conn
        if not self.watching.is_set():  # set() takes a lock even when it is
            self.watching.set()
        keep = self._answered(conn)
        with self.baton:
            leads = self.inline is conn  # else the watchdog gave the loop away
            if leads:
                self.inline = None
        if leads:
            self._take_back(conn, keep)
        else:
            self.returned.put((conn, keep))
            self._wake()
        return leads

    def _watch(self) -> None:
        """The watchdog: while requests are answered in the loop's thread,
        look every :data:`PATIENCE`, and give the loop to a free thread when
        the same request is still being answered."""
        idle = 0.0
        while True:
            self.watching.wait()
            seq = self.inline_seq
            time.sleep(PATIENCE)
            with self.baton:
                if self.inline is not None and self.inline_seq == seq:
                    self.inline = None  # its thread sees it is no longer the loop's
                    self.tasks.put(None)
            idle = idle + PATIENCE if self.inline_seq == seq else 0.0
            if idle >= _WATCH_IDLE:  # nothing answered inline lately: sleep until then
                idle = 0.0
                self.watching.clear()
                if self.inline is not None:  # it started just now
                    self.watching.set()

    # -- stopping --------------------------------------------------------------

    def _stop(self) -> None:
        """Finish what is owed within the grace period (see the module)."""
        end = time.monotonic() + max(self.cfg.graceful_timeout - _GRACE_MARGIN, 0.0)
        self._listen(False)
        if self.inbox is not None:
            self.selector.unregister(self.inbox)
        for conn in list(self.parked):
            self._close(conn, everywhere=False)  # another worker holds it
        for listener in self.sockets:
            # Only when the whole server stops: a recycled worker leaves the
            # queued connections to the other workers.
            while self.stopping and self._accept(listener):
                pass
            listener.close()
        for conn in list(self.waiting):
            if not (conn.head or conn.lingering):
                self._readable(conn, None)  # what a queued client has sent already
        linger = time.monotonic() + _STOP_LINGER
        for conn in list(self.waiting):
            # A new connection's request may still be on its way (the client
            # connected a moment ago): it is owed an answer too.
            if conn.head or conn.lingering or not conn.served:
                self._deadline(conn, min(conn.deadline, linger))
            else:
                self._close(conn, everywhere=False)  # idle: nothing is owed; others may go on
        while (self.running or self.ready or self.waiting) and time.monotonic() < end:
            self.notify()
            for key, _ in self.selector.select(min(0.1, max(end - time.monotonic(), 0))):
                key.data(key.fileobj)
            self._take_returned()
            self._dispatch(time.monotonic())
            self._hand_out(inline=False)
            self._expire(time.monotonic())
        if (self.running or self.ready) and self.report_fd >= 0:
            os.write(self.report_fd, b"cut\n")

    # -- in a worker thread ----------------------------------------------------

    def _thread_main(self) -> None:
        while True:
            conn = self.tasks.get()
            if conn is None:
                try:
                    self._lead()
                except BaseException:
                    self.crashed = True
                    self.finished.set()
                    raise
                continue
            keep = self._answered(conn)
            self.returned.put((conn, keep))
            self._wake()
