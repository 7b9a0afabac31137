"""A small guestbook app that shows how to serve Flask with ``flask serve``.

Run it with the Werkzeug dev server or a production server::

    flask --app example_app run
    flask --app example_app serve --prod
"""

import os
import secrets
from collections.abc import Mapping
from typing import Any

from flask import Flask

from flask_prodserve import ProdServe

from . import db, views

prodserve = ProdServe()


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Create and configure the app; ``flask --app example_app`` finds this."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        # Set EXAMPLE_APP_SECRET_KEY in production. Without it, a random key is
        # made each time this factory runs, so every restart (reloader restarts
        # too) logs everybody out. Processes that share one app object share the
        # key: waitress threads, and gunicorn workers forked from a master that
        # created the app before forking (as `flask serve` does). Processes that
        # each call the factory themselves (e.g. plain `gunicorn` without
        # --preload) get different keys and reject each other's cookies.
        SECRET_KEY=os.environ.get("EXAMPLE_APP_SECRET_KEY") or secrets.token_hex(32),
        DATABASE=os.path.join(app.instance_path, "example_app.sqlite"),
        # Browsers won't send the cookie with cross-site POSTs: cheap CSRF defence.
        SESSION_COOKIE_SAMESITE="Lax",
        # A guestbook entry is a few hundred bytes; refuse bodies over 1 MiB
        # (flask serve answers 413 before a view runs).
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    if test_config is not None:
        app.config.from_mapping(test_config)

    # The instance folder by default; tests point DATABASE at a temporary one.
    os.makedirs(os.path.dirname(os.path.abspath(app.config["DATABASE"])), exist_ok=True)

    db.init_app(app)
    app.register_blueprint(views.bp)
    prodserve.init_app(app)
    return app
