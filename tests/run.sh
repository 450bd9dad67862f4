#!/usr/bin/env bash
# Sets up everything the test suite needs from this repository's own files
# (a virtualenv with the package, pytest and mrmd-python; the npm packages for
# the browser peers and the y-websocket server), then runs the suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)

exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
