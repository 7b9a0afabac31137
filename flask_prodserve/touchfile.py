"""The ``reload_file`` trigger: touching a file reloads the app.

Like Puma's ``tmp/restart.txt`` and uWSGI's ``touch-reload``, for platforms
without signals (Windows) or that only let a deploy step touch a file. A
thread polls the file's modification time; a change, or the file appearing,
calls ``on_change`` in that thread. Deleting the file does nothing.

    watcher = TouchWatcher("deploy/reload", on_change=request_reload)
    watcher.start()
    ...
    watcher.stop()
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

#: How often the file is looked at, in seconds.
INTERVAL = 0.5


def mtime(path: str) -> int | None:
    """The file's modification time in nanoseconds, None while it does not exist."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


class TouchWatcher:
    """Calls ``on_change()`` whenever ``path``'s modification time changes."""

    def __init__(self, path: str, on_change: Callable[[], object], interval: float = INTERVAL):
        self.path = path
        self.on_change = on_change
        self.interval = interval
        self.seen = mtime(path)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def changed(self) -> bool:
        """Whether the file was touched since the last look (created counts, deleted not)."""
        now = mtime(self.path)
        touched = now is not None and now != self.seen
        self.seen = now
        return touched

    def start(self) -> None:
        """Watch in a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name="reload-file", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.changed():
                self.on_change()
