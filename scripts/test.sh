#!/usr/bin/env bash
# Install everything the test suite needs into .venv, then run lint, types and tests.
# This is the README's test command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

echo "== ruff check"
.venv/bin/ruff check .
echo "== ruff format --check"
.venv/bin/ruff format --check .
echo "== mypy --strict"
.venv/bin/mypy --strict flask_prodserve example_app
echo "== pytest"
# pytest exits 5 when it collects no test; set -e turns that into a failure too.
.venv/bin/python -m pytest "$@"
