"""An app that echoes its WSGI environ as JSON, so live tests can assert
what the server actually passed (``SERVER_SOFTWARE``, ``SCRIPT_NAME``, ...)."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator

from flask import Flask, jsonify, redirect, request, session, url_for
from flask.typing import ResponseReturnValue

app = Flask(__name__)
app.secret_key = secrets.token_hex(32)  # a placeholder would fail the start-up checks
# Toggles for live tests: an error that propagates to the server, a Host allow-list.
app.config["PROPAGATE_EXCEPTIONS"] = bool(os.environ.get("ECHO_APP_PROPAGATE"))
app.config["ECHO_APP_MARKER"] = "config-value-marker"  # must never reach a client
if os.environ.get("ECHO_APP_TRUSTED_HOSTS"):
    app.config["TRUSTED_HOSTS"] = os.environ["ECHO_APP_TRUSTED_HOSTS"].split(",")

if os.environ.get("ECHO_APP_PRODSERVE"):
    from flask_prodserve import ProdServe

    ProdServe(app, url_prefix=os.environ["ECHO_APP_PRODSERVE"])


@app.route("/")
@app.route("/echo/<path:rest>")
def echo(rest: str = "") -> ResponseReturnValue:
    environ = {k: v for k, v in request.environ.items() if isinstance(v, (str, int, bool))}
    environ["url_for_index"] = url_for("echo")
    environ["url_for_static"] = url_for("static", filename="x.css")
    environ["pid"] = os.getpid()
    return jsonify(environ)


@app.route("/redirect")
def go_home() -> ResponseReturnValue:
    return redirect(url_for("echo", _external=bool(request.args.get("external"))))


@app.route("/login")
def login() -> ResponseReturnValue:
    session["user"] = "alice"
    return "ok"


@app.route("/sleep")
def sleep() -> ResponseReturnValue:
    time.sleep(float(request.args.get("s", "1")))
    return f"slept in {os.getpid()}"


@app.route("/stream")
def stream() -> ResponseReturnValue:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"x" * 65536
            time.sleep(0.05)

    return app.response_class(chunks(), mimetype="application/octet-stream")


@app.route("/boom")
def boom() -> ResponseReturnValue:
    raise RuntimeError("secret-detail-in-exception")


@app.route("/upload", methods=["POST", "PUT"])
def upload() -> ResponseReturnValue:
    return {"size": len(request.get_data())}
