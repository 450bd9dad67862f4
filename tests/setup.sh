#!/usr/bin/env bash
# Installs, from this repository's own files, what the tests, the demo and the
# benchmarks need: a virtualenv in .venv with the package and its test extra
# (pytest, mrmd-python, matplotlib, supervisor), and the npm packages of
# tests/js (yjs, y-websocket, the y-websocket server) from their lock file.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
