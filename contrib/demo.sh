#!/usr/bin/env bash
# One command on a fresh machine: install what the demo needs (a virtualenv
# with mrmd-monitor and mrmd-python, the npm packages for the browser peers and
# the y-websocket server), then run contrib/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/setup.sh

exec .venv/bin/python contrib/demo.py
