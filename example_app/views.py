"""Routes: the guestbook, register/login/logout, an account page and a JSON API."""

import functools
import os
import sqlite3
from collections.abc import Callable
from typing import ParamSpec

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from werkzeug.security import check_password_hash, generate_password_hash

from .db import get_db

bp = Blueprint("main", __name__)
P = ParamSpec("P")

# Redirect after a POST with 303 so the browser follows up with a GET and a
# reload doesn't submit the form again (POST/redirect/GET).
SEE_OTHER = 303


def login_required(
    view: Callable[P, ResponseReturnValue],
) -> Callable[P, ResponseReturnValue]:
    """Send visitors who aren't logged in to the login page."""

    @functools.wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
        if "user_id" not in session:
            flash("Please log in to see that page.")
            # url_for, never "/login": it adds the prefix the app is mounted under.
            return redirect(url_for("main.login"))
        return view(*args, **kwargs)

    return wrapped


def log_in(user_id: int, username: str) -> None:
    """Start a fresh session for this user."""
    session.clear()
    session["user_id"] = user_id
    session["username"] = username


@bp.route("/", methods=["GET", "POST"])
def index() -> ResponseReturnValue:
    """Show the guestbook; a POST signs it and redirects back here."""
    db = get_db()
    if request.method == "POST":
        body = request.form.get("message", "").strip()
        if not 1 <= len(body) <= 500:
            flash("Please write a message of 1 to 500 characters.")
        else:
            db.execute(
                "INSERT INTO messages (user_id, body) VALUES (?, ?)",
                (session.get("user_id"), body),
            )
            db.commit()
            flash("Thanks for signing the guestbook!")
        return redirect(url_for("main.index"), SEE_OTHER)

    messages = db.execute(
        "SELECT COALESCE(username, 'anonymous') AS author, body, created"
        " FROM messages LEFT JOIN users ON users.id = messages.user_id"
        " ORDER BY messages.id DESC LIMIT 50"
    ).fetchall()
    return render_template("index.html", messages=messages)


@bp.route("/register", methods=["GET", "POST"])
def register() -> ResponseReturnValue:
    """Create an account and log straight in."""
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        if not username or not password:
            flash("Please choose a username and a password.")
            return render_template("register.html"), 400
        db = get_db()
        try:
            cursor = db.execute(
                "INSERT INTO users (username, hash) VALUES (?, ?)",
                (username, generate_password_hash(password)),
            )
            db.commit()
        except sqlite3.IntegrityError:  # the UNIQUE constraint: name taken
            flash(f"Sorry, {username} is taken.")
            return render_template("register.html"), 400
        assert cursor.lastrowid is not None
        log_in(cursor.lastrowid, username)
        flash(f"Welcome, {username}!")
        return redirect(url_for("main.account"), SEE_OTHER)
    return render_template("register.html")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Check a username and password against the users table."""
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        user = (
            get_db()
            .execute("SELECT id, hash FROM users WHERE username = ?", (username,))
            .fetchone()
        )
        if user is None or not check_password_hash(user["hash"], request.form.get("password", "")):
            flash("Invalid username or password.")
            return render_template("login.html"), 400
        log_in(user["id"], username)
        flash(f"Welcome back, {username}!")
        return redirect(url_for("main.account"), SEE_OTHER)
    return render_template("login.html")


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Forget the user. POST only, so a link on another site can't log you out."""
    session.clear()
    flash("You are logged out.")
    return redirect(url_for("main.index"), SEE_OTHER)


@bp.route("/account")
@login_required
def account() -> ResponseReturnValue:
    """List the logged-in user's own messages."""
    messages = (
        get_db()
        .execute(
            "SELECT body, created FROM messages WHERE user_id = ? ORDER BY id DESC",
            (session["user_id"],),
        )
        .fetchall()
    )
    return render_template("account.html", messages=messages)


@bp.route("/api/stats")
def stats() -> ResponseReturnValue:
    """Counts as JSON, plus which process answered (to see gunicorn's workers)."""
    row = (
        get_db()
        .execute(
            "SELECT (SELECT COUNT(*) FROM users) AS users,"
            " (SELECT COUNT(*) FROM messages) AS messages"
        )
        .fetchone()
    )
    return {"users": row["users"], "messages": row["messages"], "pid": os.getpid()}
