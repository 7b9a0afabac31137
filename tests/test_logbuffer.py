"""The access log's batching handler, and the access log's way around logging."""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from flask_prodserve.logbuffer import PLAIN, BatchingStreamHandler, direct_handler
from flask_prodserve.middleware import AccessLog


def record(message: str) -> logging.LogRecord:
    return logging.makeLogRecord({"msg": message, "levelno": logging.INFO})


def test_lines_are_written_in_one_batch_on_flush() -> None:
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, interval=60)
    handler.handle(record("one"))
    handler.handle(record("two"))
    assert stream.getvalue() == ""  # nothing written per line
    handler.flush()
    assert stream.getvalue() == "one\ntwo\n"


def test_the_background_thread_writes_within_the_interval() -> None:
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, interval=0.05)
    handler.handle(record("soon"))
    deadline = time.monotonic() + 5
    while stream.getvalue() != "soon\n":
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_full_batch_is_written_at_once() -> None:
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, interval=60, max_lines=3)
    for n in range(3):
        handler.handle(record(str(n)))
    assert stream.getvalue() == "0\n1\n2\n"


def test_close_writes_what_is_pending_and_stops_the_writer_thread() -> None:
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, interval=60)
    handler.handle(record("last"))
    assert handler.flusher is not None and handler.flusher.is_alive()
    handler.close()
    assert stream.getvalue() == "last\n"
    assert not handler.flusher.is_alive()


def test_closing_as_logging_shutdown_does_never_deadlocks() -> None:
    # logging.shutdown() holds the handler's lock while it flushes and closes
    # it, and close() waits for the writer thread, which may be flushing.
    for _ in range(200):
        handler = BatchingStreamHandler(io.StringIO(), interval=0.0001)
        handler.write_line("a")  # starts the writer thread, flushing all the time
        done = threading.Event()

        def shutdown(
            handler: BatchingStreamHandler = handler, done: threading.Event = done
        ) -> None:
            handler.acquire()
            try:
                handler.flush()
                handler.close()
            finally:
                handler.release()
            done.set()

        threading.Thread(target=shutdown, daemon=True).start()
        assert done.wait(5), "close() deadlocked with the writer thread"


def test_a_closed_stream_does_not_break_serving() -> None:
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, interval=60)
    stream.close()
    handler.handle(record("lost"))
    handler.flush()  # no exception: a request must not fail because its log line cannot be written


def test_filters_still_apply() -> None:
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, interval=60)
    handler.addFilter(lambda r: r.getMessage() != "skip")
    assert handler.handle(record("skip")) is False
    handler.handle(record("keep"))
    handler.flush()
    assert stream.getvalue() == "keep\n"


def sole_handler_logger(name: str) -> tuple[logging.Logger, BatchingStreamHandler, io.StringIO]:
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream, interval=60)
    handler.setFormatter(PLAIN)
    logger = logging.getLogger(f"test.logbuffer.{name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, handler, stream


def test_the_access_log_writes_straight_to_its_own_handler() -> None:
    logger, handler, stream = sole_handler_logger("direct")
    assert direct_handler(logger) is handler
    handler.write_line("GET / 200")
    handler.flush()
    assert stream.getvalue() == "GET / 200\n"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda lg, h: lg.addHandler(logging.NullHandler()), id="another-handler"),
        pytest.param(lambda lg, h: lg.addFilter(lambda r: True), id="logger-filter"),
        pytest.param(lambda lg, h: h.addFilter(lambda r: True), id="handler-filter"),
        pytest.param(lambda lg, h: h.setFormatter(logging.Formatter("%(asctime)s")), id="format"),
        pytest.param(lambda lg, h: h.setLevel(logging.WARNING), id="handler-level"),
        pytest.param(lambda lg, h: setattr(lg, "propagate", True), id="propagates"),
    ],
)
def test_any_logging_configuration_of_the_apps_own_goes_through_logging(
    change: Callable[[logging.Logger, BatchingStreamHandler], None],
) -> None:
    logger, handler, _ = sole_handler_logger("configured")
    change(logger, handler)
    assert direct_handler(logger) is None


def test_the_access_log_honours_a_filter_added_while_serving() -> None:
    logger, handler, stream = sole_handler_logger("filtered")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    logged = AccessLog(app, logger=logger)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/a", "SERVER_PROTOCOL": "HTTP/1.1"}
    for path in ("/a", "/b"):
        if path == "/b":
            handler.addFilter(lambda r: "/b" not in r.getMessage())
        body = logged({**environ, "PATH_INFO": path}, lambda *a: None)
        list(body)
        body.close()  # type: ignore[attr-defined]
    handler.flush()
    assert '"GET /a HTTP/1.1" 200 2' in stream.getvalue()
    assert "/b" not in stream.getvalue()
