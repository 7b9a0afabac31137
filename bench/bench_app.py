"""A plain Flask app used by ``bench/run.py``.

It deliberately knows nothing about flask-prodserve: the point of the benchmark
is that ``flask serve --prod`` needs no change to user code. Import it as
``bench.bench_app:app`` from the repository root.
"""

from __future__ import annotations

import time

from flask import Flask, Response, jsonify, render_template
from jinja2 import DictLoader

app = Flask(__name__)

PAGE_TEMPLATE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{{ title }}</title></head>
<body>
<h1>{{ title }}</h1>
<table>
{% for item in items %}
  <tr class="{{ loop.cycle('odd', 'even') }}">
    <td>{{ loop.index }}</td><td>{{ item.name }}</td><td>{{ item.price }}</td>
  </tr>
{% endfor %}
</table>
<p>{{ items | length }} items</p>
</body>
</html>
"""

# An in-memory template: loaded, compiled and cached by Flask exactly like a
# file in templates/ would be (render_template_string would recompile it on
# every request and measure the Jinja compiler instead of the server).
app.jinja_loader = DictLoader({"page.html": PAGE_TEMPLATE})

ITEMS = [{"name": f"item {i}", "price": f"{i * 1.25:.2f}"} for i in range(20)]


@app.route("/")
def hello() -> str:
    return "Hello, World!"


@app.route("/json")
def json_view() -> Response:
    return jsonify(message="Hello, World!", status="ok", numbers=[1, 2, 3])


@app.route("/page")
def page() -> str:
    return render_template("page.html", title="Items", items=ITEMS)


@app.route("/sleep")
def sleep() -> str:
    time.sleep(1)
    return "ok"
