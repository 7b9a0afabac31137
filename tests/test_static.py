"""Static files in production: names, the WhiteNoise layer through the test
client, the access log keeping the server's file wrapper, --compress-static,
the checks PS801/PS802, and live servers under a prefix."""

from __future__ import annotations

import gzip
import os
import re
import secrets
import shutil
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask
from werkzeug.datastructures import Headers
from werkzeug.test import Client

from flask_prodserve import checks, serving, staticfiles
from flask_prodserve.lifecycle import Lifecycle
from flask_prodserve.middleware import build_wsgi_app

from .helpers import PROD_BACKENDS, LiveServer, run_flask

A_YEAR = "public, max-age=31536000, immutable"
CSS = b"".join(b".rule-%d { color: #%06x; margin: %dpx; }\n" % (i, i * 997, i) for i in range(900))


@pytest.mark.parametrize(
    ("url", "fingerprinted"),
    [
        pytest.param("/static/app.3f9a1c2e.js", True, id="hex-8"),
        pytest.param("/static/app.3f9a1c2e0b12.css", True, id="django-manifest-12"),
        pytest.param("/static/vendor-4d5e6f7a8b9c0d1e2f3a.js", True, id="webpack-hyphen-20"),
        pytest.param("/static/main.HDDB6VMK.js", True, id="esbuild-base32"),
        pytest.param("/static/app.3f9a1c2e.js.map", True, id="source-map"),
        pytest.param("/static/style.css", False, id="plain"),
        pytest.param("/static/jquery-3.7.1.min.js", False, id="version-number"),
        pytest.param("/static/report-20240101.pdf", False, id="date-has-no-letter"),
        pytest.param("/static/app-download.js", False, id="word-has-no-digit"),
        pytest.param("/static/deadbeef.css", False, id="hex-word-without-digit"),
        pytest.param("/static/3f9a1c2e/app.js", False, id="hash-folder-not-name"),
        pytest.param("/static/app.3f9a1c2.js", False, id="seven-hex-too-short"),
    ],
)
def test_fingerprinted_names(url: str, fingerprinted: bool) -> None:
    assert staticfiles.is_fingerprinted(url) is fingerprinted
    # The nginx file uses the same pattern (PCRE reads it as Python does).
    assert (re.search(staticfiles.FINGERPRINT, url) is not None) is fingerprinted


def make_project(root: Path, *, blueprint: bool = True) -> Path:
    """A small app in ``root``: a static folder with a large stylesheet, a
    fingerprinted script, an image, and a blueprint with its own static folder."""
    static = root / "static"
    (static / "css").mkdir(parents=True)
    (static / "css" / "site.css").write_bytes(CSS)
    (static / "app.3f9a1c2e.js").write_text("console.log('fingerprinted');\n" * 400)
    (static / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    (root / "admin_static").mkdir()
    (root / "admin_static" / "admin.css").write_text("h1 { color: red; }\n")
    (root / "app.py").write_text(
        textwrap.dedent(
            f"""\
            import os
            from flask import Blueprint, Flask

            app = Flask(__name__)
            app.secret_key = os.environ.get("APP_KEY", "")
            app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
            app.config["SESSION_COOKIE_SAMESITE"] = "Lax"

            @app.route("/")
            def index():
                return "index"

            if {blueprint}:
                admin = Blueprint("admin", __name__, static_folder="admin_static")
                app.register_blueprint(admin, url_prefix="/admin")

            # Count the servers' fast paths, in the process that serves (gunicorn's
            # workers inherit the patch): gunicorn's sendfile, waitress's file buffer.
            import socket
            from waitress.buffers import ReadOnlyFileBasedBuffer

            FAST = []

            def counted(cls, name):
                original = getattr(cls, name)
                def count(self, *args, **kwargs):
                    FAST.append(name)
                    return original(self, *args, **kwargs)
                setattr(cls, name, count)

            counted(socket.socket, "sendfile")
            counted(ReadOnlyFileBasedBuffer, "prepare")

            @app.route("/fast-path")
            def fast_path():
                return str(len(FAST))
            """
        )
    )
    return root


def load(project: Path) -> Flask:
    """The project's app, built in this process (a fresh module each time)."""
    app = Flask("app", root_path=str(project))
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024

    @app.route("/")
    def index() -> str:
        return "index"

    admin = Blueprint("admin", "app", static_folder=str(project / "admin_static"))
    app.register_blueprint(admin, url_prefix="/admin")
    return app


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "proj")


def test_static_folders_are_found_from_the_url_map(project: Path) -> None:
    app = load(project)
    app.register_blueprint(Blueprint("nostatic", "app"), url_prefix="/x")
    found = {(f.url_path, f.folder) for f in staticfiles.static_folders(app)}
    assert found == {
        ("/static", str(project / "static")),
        ("/admin/admin_static", str(project / "admin_static")),
    }


def test_a_folder_missing_on_disk_is_left_out(tmp_path: Path) -> None:
    assert staticfiles.static_folders(Flask("app", root_path=str(tmp_path))) == []


class Served:
    """The full chain for ``app`` through Werkzeug's test client; each answer
    is read and closed (the layer opens a file per response)."""

    def __init__(self, app: Flask, **cli: Any) -> None:
        config = serving.config_for(app, {"mode": "prod", "access_log": False, **cli}, env={})
        self.client = Client(build_wsgi_app(app, config, Lifecycle(app)))

    def get(self, path: str, **headers: str) -> tuple[int, Headers, bytes]:
        resp = self.client.get(path, headers={k.replace("_", "-"): v for k, v in headers.items()})
        try:
            return resp.status_code, resp.headers, resp.get_data()
        finally:
            resp.close()


def test_served_before_the_app_under_the_prefix(project: Path) -> None:
    app = load(project)
    staticfiles.compress_folders(staticfiles.static_folders(app))
    seen: list[str] = []
    app.before_request(lambda: seen.append("app") and None)
    served = Served(app, url_prefix="/shop")
    path = "/shop/static/css/site.css"

    status, headers, body = served.get(path)
    assert (status, body) == (200, CSS)
    assert headers["Content-Type"] == "text/css; charset=utf-8"
    assert headers["Cache-Control"] == "public, max-age=60"
    assert headers["Vary"] == "Accept-Encoding"
    etag, modified = headers["ETag"], headers["Last-Modified"]
    assert etag and modified
    assert seen == []  # the Flask request cycle never ran

    for tags in (etag, "*", f'"other", {etag}', f"W/{etag}"):
        assert served.get(path, If_None_Match=tags)[0] == 304, tags
    assert served.get(path, If_None_Match='"other"')[0] == 200
    assert served.get(path, If_Modified_Since=modified)[0] == 304

    status, headers, body = served.get(path, Accept_Encoding="gzip")
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == CSS and len(body) < len(CSS) / 3
    assert served.get(path, Accept_Encoding="gzip, br")[1]["Content-Encoding"] == "br"

    status, headers, body = served.get(path, Range="bytes=10-19")
    assert (status, body) == (206, CSS[10:20])
    assert headers["Content-Range"] == f"bytes 10-19/{len(CSS)}"

    assert served.get("/shop/static/app.3f9a1c2e.js")[1]["Cache-Control"] == A_YEAR
    admin = served.get("/shop/admin/admin_static/admin.css")
    assert (admin[0], admin[2]) == (200, b"h1 { color: red; }\n")

    assert served.get("/static/css/site.css")[0] == 404  # outside the prefix
    assert served.get("/shop/static/missing.css")[0] == 404  # Flask's own answer
    assert served.get("/shop/")[2] == b"index"
    assert seen == ["app", "app"]


def test_send_file_max_age_default_sets_the_short_lifetime(project: Path) -> None:
    app = load(project)
    app.config["SEND_FILE_MAX_AGE_DEFAULT"] = 300
    _, headers, _ = Served(app).get("/static/css/site.css")
    assert headers["Cache-Control"] == "public, max-age=300"
    assert headers.get("Vary") is None  # no compressed variant yet


@pytest.mark.parametrize(
    "cli",
    [
        pytest.param({"static_files": False}, id="turned-off"),
        pytest.param({"mode": "dev"}, id="off-in-dev"),
    ],
)
def test_without_the_layer_flask_serves(project: Path, cli: dict[str, Any]) -> None:
    status, headers, _ = Served(load(project), **cli).get("/static/app.3f9a1c2e.js")
    assert status == 200
    assert headers["Cache-Control"] == "no-cache"  # Flask's own route


# -- --compress-static and the checks ------------------------------------------------


def test_compress_static_command(project: Path) -> None:
    result = run_flask(project, "--app", "app", "serve", "--compress-static")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Compressing static, admin_static:" in out
    assert re.search(r"static/css/site\.css: [\d.]+ KiB -> \.br [\d.]+ KiB, \.gz [\d.]+ KiB", out)
    assert "logo.png" not in out  # images are compressed already
    assert "admin.css" not in out  # too small to gain 5 %
    assert gzip.decompress((project / "static" / "css" / "site.css.gz").read_bytes()) == CSS
    assert (project / "static" / "css" / "site.css.br").is_file()
    source = project / "static" / "css" / "site.css"
    assert int(os.stat(f"{source}.gz").st_mtime) == int(os.stat(source).st_mtime)
    assert "Compressed 2 files." in out


def test_compress_static_without_a_static_folder(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("from flask import Flask\napp = Flask(__name__)\n")
    result = run_flask(tmp_path, "--app", "app", "serve", "--compress-static")
    assert result.returncode == 0, result.stderr
    assert "no static folder on disk: nothing to compress" in result.stdout


def static_problems(app: Flask, **cli: Any) -> dict[str, list[str]]:
    config = serving.config_for(app, {"mode": "prod", **cli}, env={})
    found: dict[str, list[str]] = {}
    for problem in checks.run_checks(app, config, fetch_pages=False):
        if problem.id.startswith("PS8"):
            found.setdefault(problem.id, []).append(problem.message)
    return found


def test_checks_report_uncompressed_and_unfingerprinted_files(project: Path) -> None:
    (project / "static" / "app.3f9a1c2e.js").unlink()
    app = load(project)
    found = static_problems(app)
    assert found["PS801"] == [
        "1 text file of 10 KiB or more has no .gz or .br variant (static/css/site.css)"
    ]
    assert found.get("PS802") is None  # 40 KiB of CSS: re-checking it is cheap
    for n in range(2):
        (project / "static" / f"more{n}.js").write_bytes(CSS)
    found = static_problems(app)
    assert found["PS802"] == [
        "The static folders hold 118 KiB of CSS and JavaScript in 4 files, none with a "
        "fingerprinted name, so each is cached for 60 s only"
    ]
    assert checks.CHECK_BY_ID["PS801"].severity is checks.WARNING
    assert checks.CHECK_BY_ID["PS802"].severity is checks.INFO

    staticfiles.compress_folders(staticfiles.static_folders(app))
    (project / "static" / "app.3f9a1c2e.js").write_text("x")
    assert static_problems(app) == {}
    (project / "static" / "app.3f9a1c2e.js").unlink()
    assert list(static_problems(app, ignore_checks="PS802")) == []
    assert static_problems(Flask("bare", root_path=str(project / "nowhere"))) == {}


def test_checks_are_quiet_when_static_files_are_off(project: Path) -> None:
    assert static_problems(load(project), static_files=False) == {}


# -- live, per backend, under a prefix ---------------------------------------------------


@pytest.fixture(scope="module")
def live_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_project(tmp_path_factory.mktemp("static") / "proj")
    result = run_flask(root, "--app", "app", "serve", "--compress-static")
    assert result.returncode == 0, result.stderr
    return root


def header_lines(log: str) -> Iterable[str]:
    return (line for line in log.splitlines() if "/shop/static/" in line)


@pytest.mark.parametrize("backend", PROD_BACKENDS)
def test_live_static_files_under_a_prefix(live_project: Path, tmp_path: Path, backend: str) -> None:
    project = tmp_path / "proj"
    shutil.copytree(live_project, project, copy_function=shutil.copy2)
    args = ["--app", "app", "serve", "--prod", "--server", backend, "--port", "0"]
    args += ["--url-prefix", "/shop", "--workers", "1"]
    server = LiveServer(args, tmp_path / "server.log", {"APP_KEY": secrets.token_hex(32)})
    try:
        server.start_in(project)
        check_live(server)
    except BaseException:
        print(server.log)
        raise
    finally:
        server.kill()


def check_live(server: LiveServer) -> None:
    path = "/shop/static/css/site.css"

    fast = int(server.request("GET", "/shop/fast-path")[2])
    status, headers, body = server.request("GET", path)
    assert (status, body) == (200, CSS)
    # With the access log on, the file went by the server's fast path.
    assert int(server.request("GET", "/shop/fast-path")[2]) == fast + 1
    assert headers["cache-control"] == "public, max-age=60"
    assert headers["content-type"] == "text/css; charset=utf-8"
    assert headers["vary"] == "Accept-Encoding"
    assert headers["etag"] and headers["last-modified"]

    status, headers304, body = server.request("GET", path, {"If-None-Match": headers["etag"]})
    assert (status, body) == (304, b"")
    assert headers304["etag"] == headers["etag"]

    status, headers, body = server.request("GET", path, {"Accept-Encoding": "gzip"})
    assert (status, headers["content-encoding"]) == (200, "gzip")
    assert gzip.decompress(body) == CSS and len(body) < len(CSS)

    status, headers, body = server.request("GET", path, {"Range": "bytes=100-199"})
    assert (status, body) == (206, CSS[100:200])

    status, headers, _ = server.request("GET", "/shop/static/app.3f9a1c2e.js")
    assert (status, headers["cache-control"]) == (200, A_YEAR)

    assert server.request("GET", "/static/css/site.css")[0] == 404
    assert server.request("GET", "/shop/admin/admin_static/admin.css")[0] == 200

    log = server.wait_for_log(f'"GET {path} HTTP/1.1" 206 100 ')
    lines = list(header_lines(log))
    assert any(f'"GET {path} HTTP/1.1" 200 {len(CSS)} ' in line for line in lines), log
    assert any(f'"GET {path} HTTP/1.1" 304 0 ' in line for line in lines), log
    assert server.terminate() == 0
