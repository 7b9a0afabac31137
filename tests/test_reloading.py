"""Importing the app afresh for a reload (flask_prodserve.reloading), in-process."""

from __future__ import annotations

import os
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.cli import ScriptInfo
from werkzeug.test import Client

from flask_prodserve import reloading
from flask_prodserve.middleware import AccessLog
from flask_prodserve.serving import config_for
from flask_prodserve.swapping import InProcessReloader, SwappableApp
from flask_prodserve.touchfile import TouchWatcher

APP = """\
from flask import Flask
import {name}_helper

app = Flask(__name__)

@app.get("/")
def index():
    return {name}_helper.VERSION
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """An app module and a helper module of the user's, in a folder on sys.path."""
    name = f"reload_app_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(APP.format(name=name))
    (tmp_path / f"{name}_helper.py").write_text('VERSION = "one"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path, name
    for module in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[module]


def _loader(name: str) -> tuple[reloading.AppLoader, reloading.Loaded]:
    app, source = reloading.load(ScriptInfo(name, set_debug_flag=False))
    config = config_for(app, {"mode": "prod", "server": "waitress"}, env={})
    loader = reloading.AppLoader(source, config)
    return loader, loader.first(app)


def _body(loaded: reloading.Loaded) -> str:
    return Client(loaded.wsgi_app).get("/").get_data(as_text=True)


def test_user_modules_are_the_files_outside_libraries(tmp_path: Path) -> None:
    mine = types.ModuleType("mine")
    mine.__file__ = str(tmp_path / "mine.py")
    modules = [
        ("mine", mine),
        ("json", sys.modules["json"]),  # the standard library
        ("flask", sys.modules["flask"]),  # an installed package
        ("flask_prodserve.reloading", reloading),  # ours
        ("builtin", sys),  # no file at all
        ("namespace", types.ModuleType("namespace")),
    ]
    assert reloading.user_modules(modules) == ["mine"]


def test_fresh_imports_the_code_on_disk_now(project: tuple[Path, str]) -> None:
    folder, name = project
    loader, first = _loader(name)
    assert loader.modules() == {name, f"{name}_helper"}
    assert (first.generation, _body(first)) == (1, "one")
    (folder / f"{name}_helper.py").write_text('VERSION = "two"\n')
    second = loader.fresh(2)
    assert (second.generation, _body(second)) == (2, "two")
    assert _body(first) == "one"  # the old generation keeps its own code
    assert second.app is not first.app


def test_new_user_modules_are_purged_at_the_next_reload(project: tuple[Path, str]) -> None:
    folder, name = project
    loader, _ = _loader(name)
    (folder / "extra_mod_for_reload.py").write_text('VERSION = "three"\n')
    (folder / f"{name}_helper.py").write_text("from extra_mod_for_reload import VERSION\n")
    assert _body(loader.fresh(2)) == "three"
    (folder / "extra_mod_for_reload.py").write_text('VERSION = "four"\n')
    try:
        assert _body(loader.fresh(3)) == "four"
    finally:
        sys.modules.pop("extra_mod_for_reload", None)


def test_a_failed_import_is_one_line_with_file_and_line(project: tuple[Path, str]) -> None:
    folder, name = project
    loader, _ = _loader(name)
    (folder / f"{name}_helper.py").write_text('VERSION = "x"\nraise RuntimeError("boom")\n')
    with pytest.raises(reloading.ReloadFailed) as failed:
        loader.fresh(2)
    message = str(failed.value)
    assert "\n" not in message
    assert f"RuntimeError: boom ({name}_helper.py, line 2)" in message
    (folder / f"{name}_helper.py").write_text('VERSION = "fixed"\n')
    assert _body(loader.fresh(2)) == "fixed"  # a later reload can try again


def test_a_syntax_error_names_file_and_line(project: tuple[Path, str]) -> None:
    folder, name = project
    loader, _ = _loader(name)
    (folder / f"{name}.py").write_text("def broken(:\n")
    with pytest.raises(reloading.ReloadFailed, match=rf"SyntaxError: .* \({name}.py, line 1\)"):
        loader.fresh(2)


def test_an_app_object_cannot_be_imported_again(project: tuple[Path, str]) -> None:
    _, name = project
    loader, _ = _loader(name)
    same = reloading.AppLoader(reloading.OBJECT, loader.config)
    assert not same.reimports
    with pytest.raises(reloading.SameCode, match="restarts the workers with the same code"):
        same.fresh(2)


def test_the_access_log_names_the_generation(project: tuple[Path, str]) -> None:
    _, name = project
    loader, _ = _loader(name)
    wsgi_app = loader.fresh(7).wsgi_app

    layer = wsgi_app
    while not isinstance(layer, AccessLog):
        layer = layer.app  # type: ignore[attr-defined]
    assert layer.generation == 7


def test_touch_watcher_sees_creation_and_changes_not_deletion(tmp_path: Path) -> None:
    path = tmp_path / "reload.txt"
    watcher = TouchWatcher(str(path), on_change=lambda: None)
    assert not watcher.changed()  # missing, and still missing
    path.touch()
    assert watcher.changed()  # created: a deploy step that only touches
    assert not watcher.changed()
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))
    assert watcher.changed()
    path.unlink()
    assert not watcher.changed()


def test_touch_watcher_thread_calls_back_until_stopped(tmp_path: Path) -> None:
    path = tmp_path / "reload.txt"
    calls = threading.Semaphore(0)
    watcher = TouchWatcher(str(path), on_change=calls.release, interval=0.01)
    watcher.start()
    try:
        path.touch()
        assert calls.acquire(timeout=10)
    finally:
        watcher.stop()
    assert watcher._thread is not None and not watcher._thread.is_alive()
    path.write_text("again")
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))
    assert not calls.acquire(timeout=0.1)  # stopped: no more calls


def test_in_process_reload_swaps_only_a_ready_generation(project: tuple[Path, str]) -> None:
    folder, name = project
    loader, first = _loader(name)
    app = SwappableApp(first)
    notes: list[str] = []
    reloader = InProcessReloader(app, loader, loader.config, notes.append)
    (folder / f"{name}_helper.py").write_text('VERSION = "two"\n')
    assert reloader.reload()
    assert Client(app).get("/").get_data(as_text=True) == "two"
    assert notes[-1] == f"Reloaded: generation 2 ready (pid {os.getpid()})"
    (folder / f"{name}_helper.py").write_text("VERSION = 3 / 0\n")
    assert not reloader.reload()
    assert notes[-1].startswith("Reload failed, generation 2 keeps serving: the new code failed")
    assert "ZeroDivisionError: division by zero" in notes[-1]
    assert Client(app).get("/").get_data(as_text=True) == "two"
