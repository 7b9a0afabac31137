"""An app that asks the server to close the connection after a response,
as :class:`~flask_prodserve.bodylimit.BodyLimit` does when it leaves a body unread."""

from __future__ import annotations

from flask import Flask, request

from flask_prodserve.bodylimit import CLOSE_CONNECTION

app = Flask(__name__)


@app.route("/close")
def close() -> str:
    request.environ[CLOSE_CONNECTION] = True
    return "closing"


@app.route("/")
def index() -> str:
    return "open"
