#!/usr/bin/env bash
# Install everything the test suite needs, then run lint, types and the tests twice:
# on the newest releases of our dependencies (.venv) and on the oldest that
# pyproject.toml allows (.venv-floors, pinned by scripts/floors.py).
# This is the README's test command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
pip_install() {  # VENV ARGS...: quiet, but not silent for a minute
    local venv=$1
    shift
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}
echo "== installing the newest releases of the dependencies into .venv"
pip_install .venv --upgrade --upgrade-strategy eager -e '.[test]'
echo "== installing the oldest releases pyproject.toml allows into .venv-floors"
floors=$(mktemp)
"$python" scripts/floors.py >"$floors"
sed 's/^/   /' "$floors"
pip_install .venv-floors -c "$floors" -e '.[test]'

# tests/test_nginx.py runs a real nginx and tests/test_metrics_prometheus.py a real
# Prometheus, tests/test_socket_activation.py systemd-socket-activate: install
# Debian's package when one is missing (as root, or through
# passwordless sudo), and stop here if that is not possible.
apt_ensure() {  # COMMAND PACKAGE WHAT-NEEDS-IT
    local command=$1 package=$2 needs=$3
    if command -v "$command" >/dev/null || [ -x "/usr/sbin/$command" ] || [ -x "/usr/bin/$command" ]; then
        return 0
    fi
    echo "== installing $package"
    local sudo=()
    if [ "$(id -u)" != 0 ]; then sudo=(sudo -n); fi
    local apt_log
    apt_log=$(mktemp)
    # Debian starts an installed service (nginx on port 80, prometheus on 9090)
    # unless policy-rc.d says no: the tests start their own and must leave nothing running.
    local policy=/usr/sbin/policy-rc.d made_policy=0 installed=0
    if [ ! -e "$policy" ] && printf '#!/bin/sh\nexit 101\n' \
            | ${sudo[@]+"${sudo[@]}"} tee "$policy" >/dev/null 2>&1; then
        ${sudo[@]+"${sudo[@]}"} chmod +x "$policy"
        made_policy=1
    fi
    if { ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -q \
            && ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                --no-install-recommends "$package"; } >"$apt_log" 2>&1; then
        installed=1
    fi
    if [ "$made_policy" = 1 ]; then ${sudo[@]+"${sudo[@]}"} rm -f "$policy"; fi
    if [ "$installed" != 1 ]; then
        echo "Error: $package is missing and 'apt-get install $package' failed (needs root or passwordless sudo; log: $apt_log); $needs cannot run without it." >&2
        exit 1
    fi
}
apt_ensure nginx nginx "the nginx tests"
apt_ensure prometheus prometheus "the real-Prometheus metrics test"
# Only the tools are used (no systemd needs to run): systemd-socket-activate
# for the socket-activation tests, systemd-analyze to verify generated units.
apt_ensure systemd-socket-activate systemd "the socket-activation tests"

echo "== ruff check"
.venv/bin/ruff check .
echo "== ruff format --check"
.venv/bin/ruff format --check .
echo "== mypy --strict"
.venv/bin/mypy --strict flask_prodserve example_app
# pytest exits 5 when it collects no test; set -e turns that into a failure too.
echo "== pytest, newest releases"
.venv/bin/python -m pytest "$@"
echo "== pytest, the floors: $(tr '\n' ' ' <"$floors")"
.venv-floors/bin/python -m pytest "$@"
