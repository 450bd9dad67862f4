#!/usr/bin/env bash
# Sets up everything the test suite needs from this repository's own files
# (a virtualenv with the package, pytest and mrmd-python; the npm packages for
# the browser peers and the y-websocket server; and, from ../shared/vendor,
# mrmd-sync and the MRP 0.3.0 runtime, plus mrmd-bash: see tests/setup.sh),
# then runs the suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# The service tests drive Debian's start-stop-daemon (package dpkg) and check
# the systemd unit with systemd-analyze (package systemd); the status page is
# checked, and the real mrmd editor runs (tests/e2e/test_editor.py), in a
# headless chromium: install whichever is missing, on a machine with apt-get
# where we are root.
missing=""
PATH="$PATH:/usr/sbin:/sbin" command -v start-stop-daemon >/dev/null 2>&1 || missing="$missing dpkg"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing$missing for the service, status page and editor tests" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends $missing >/dev/null; } \
        || echo "warning: could not install$missing" >&2
fi

bash tests/setup.sh

# Two workers, one test file each at a time (a file's shared servers stay in
# one process): most end-to-end tests wait on peers, not on the CPU.
exec .venv/bin/python -m pytest -p no:cacheprovider -n 2 --dist loadfile "$@"
