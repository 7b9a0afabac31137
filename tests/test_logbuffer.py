"""The access log's batching handler."""

from __future__ import annotations

import io
import logging
import time

from flask_prodserve.logbuffer import BatchingStreamHandler


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
