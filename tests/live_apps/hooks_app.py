"""An app with lifecycle hooks that record which process ran them, and a
readiness check driven by a file, for the live operability tests."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

from flask_prodserve import ProdServe

app = Flask(__name__)
prodserve = ProdServe(app)
RECORD = Path(os.environ["HOOKS_RECORD"])
FAIL = os.environ.get("HOOKS_FAIL", "")  # the stage whose hook raises, for a live test


def record(stage: str) -> None:
    with RECORD.open("a") as f:
        f.write(f"{stage} {os.getpid()}\n")
    if stage == FAIL:
        raise RuntimeError("the database refused the connection")


@prodserve.on_start
def started(app: Flask) -> None:
    record("on_start")


@prodserve.worker_init
def worker(app: Flask) -> None:
    record("worker_init")


@prodserve.on_stop
def stopped(app: Flask) -> None:
    record("on_stop")


@prodserve.ready
def database_reachable(app: Flask) -> bool:
    return Path(os.environ["HOOKS_READY_FILE"]).exists()


@app.route("/")
def index() -> ResponseReturnValue:
    raise RuntimeError("the app's / is broken on purpose")


@app.route("/pid")
def pid() -> ResponseReturnValue:
    return jsonify(pid=os.getpid())
