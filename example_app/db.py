"""SQLite helpers: one connection per request, kept on ``flask.g``."""

import sqlite3

from flask import Flask, current_app, g

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    user_id INTEGER REFERENCES users (id),  -- NULL for anonymous messages
    body TEXT NOT NULL,
    created TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
"""


def get_db() -> sqlite3.Connection:
    """Return this request's connection, opening it on first use."""
    conn: sqlite3.Connection | None = g.get("db")
    if conn is None:
        # A connection must never be shared between gunicorn's forked workers
        # or waitress's threads, so each request opens its own.
        conn = sqlite3.connect(current_app.config["DATABASE"])
        conn.row_factory = sqlite3.Row
        # Idempotent and cheap, so a fresh clone needs no "init-db" step.
        conn.executescript(SCHEMA)
        g.db = conn
    return conn


def close_db(exc: BaseException | None = None) -> None:
    """Close the connection, if this request opened one."""
    conn: sqlite3.Connection | None = g.pop("db", None)
    if conn is not None:
        conn.close()


def init_app(app: Flask) -> None:
    """Close the connection when the app context ends (after every request)."""
    app.teardown_appcontext(close_db)
