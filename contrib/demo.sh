#!/usr/bin/env bash
# One command on a fresh machine: install what the demo needs (a virtualenv
# with mrmd-monitor and mrmd-python, the npm packages for the browser peers and
# the y-websocket server), then run contrib/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)

exec .venv/bin/python contrib/demo.py
