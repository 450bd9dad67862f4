#!/usr/bin/env bash
# Installs, from this repository's own files, what the tests, the demo and the
# benchmarks need: a virtualenv in .venv with the package and its test extra
# (pytest, mrmd-python, matplotlib, supervisor), and the npm packages of
# tests/js (yjs, y-websocket, the y-websocket server, and for the editor tests
# mrmd-electron's editor bundle with puppeteer-core, which downloads no browser:
# they run Debian's chromium) from their lock file. mrmd-electron's two
# dependencies that are not on the registry are empty packages in tests/js/stubs.
#
# Then the rest of the mrmd stack, under tests/.work/ (ignored by git):
#   mrmd-sync/   a copy of ../shared/vendor/mrmd-sync with its npm packages
#   mrp3/        a virtualenv with the MRP 0.3.0 runtime (../shared/vendor/mrmd-python-mrp3;
#                its package name and version clash with PyPI's mrmd-python 0.4.2) and
#                matplotlib (for figures as assets)
#   bash/        a virtualenv with mrmd-bash 0.1.2 from PyPI (starlette<0.40: newer ones
#                break its startup)
#   mrmd/        a virtualenv with the launcher mrmd 0.10.1 from PyPI (nodejs-bin pinned:
#                no other version installs)
#   mrmd-orchestrator/  a virtualenv with mrmd-orchestrator 0.2.0 from PyPI (apart: it
#                installs a `mrmd` command of its own)
# ../shared is read-only: everything is copied out before installing. Each part is
# skipped when a stamp says it was installed from the same sources, so a second run
# is quick.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
PIP_QUIET=(--quiet --disable-pip-version-check)
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install "${PIP_QUIET[@]}" -e '.[test]'
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)

SHARED=${MRMD_SHARED_DIR:-../shared}
WORK=tests/.work
mkdir -p "$WORK"

# A fingerprint of a source tree (file names and contents) and of the recipe.
fingerprint() {
    (cd "$1" && find . -type f -not -path './node_modules/*' -print0 | sort -z \
        | xargs -0 sha256sum; echo "$2") | sha256sum | cut -d' ' -f1
}

stamp_ok() {  # stamp_ok DIR FINGERPRINT
    [ -f "$1/.installed" ] && [ "$(cat "$1/.installed")" = "$2" ]
}

# -- mrmd-sync 0.3.5 -------------------------------------------------------------
if [ -d "$SHARED/vendor/mrmd-sync" ]; then
    fp=$(fingerprint "$SHARED/vendor/mrmd-sync" "npm ci --omit=dev v1")
    if ! stamp_ok "$WORK/mrmd-sync" "$fp"; then
        rm -rf "$WORK/mrmd-sync"
        mkdir -p "$WORK/mrmd-sync"
        cp -R "$SHARED/vendor/mrmd-sync/." "$WORK/mrmd-sync/"
        chmod -R u+w "$WORK/mrmd-sync"
        (cd "$WORK/mrmd-sync" && npm ci --omit=dev --no-audit --no-fund --loglevel=error)
        echo "$fp" > "$WORK/mrmd-sync/.installed"
    fi
else
    echo "warning: $SHARED/vendor/mrmd-sync not found: the mrmd-sync tests will fail" >&2
fi

# -- the MRP 0.3.0 runtime (mrmd-python, vendored) ---------------------------------
if [ -d "$SHARED/vendor/mrmd-python-mrp3" ]; then
    fp=$(fingerprint "$SHARED/vendor/mrmd-python-mrp3" "venv + pip install . matplotlib v2")
    if ! stamp_ok "$WORK/mrp3" "$fp"; then
        rm -rf "$WORK/mrp3" "$WORK/mrp3-src"
        mkdir -p "$WORK/mrp3-src"
        cp -R "$SHARED/vendor/mrmd-python-mrp3/." "$WORK/mrp3-src/"
        chmod -R u+w "$WORK/mrp3-src"
        "$PYTHON" -m venv "$WORK/mrp3"
        "$WORK/mrp3/bin/python" -m pip install "${PIP_QUIET[@]}" "$WORK/mrp3-src" matplotlib
        rm -rf "$WORK/mrp3-src"
        echo "$fp" > "$WORK/mrp3/.installed"
    fi
else
    echo "warning: $SHARED/vendor/mrmd-python-mrp3 not found: the MRP 0.3.0 tests will fail" >&2
fi

# -- mrmd-bash 0.1.2 ---------------------------------------------------------------
fp="mrmd-bash==0.1.2 starlette<0.40 v1"
if ! stamp_ok "$WORK/bash" "$fp"; then
    rm -rf "$WORK/bash"
    "$PYTHON" -m venv "$WORK/bash"
    "$WORK/bash/bin/python" -m pip install "${PIP_QUIET[@]}" "mrmd-bash==0.1.2" "starlette<0.40"
    echo "$fp" > "$WORK/bash/.installed"
fi

# -- the launchers: mrmd 0.10.1 and mrmd-orchestrator 0.2.0 ------------------------
launcher_venv() {  # launcher_venv DIR REQUIREMENT...
    local dir=$1; shift
    local fp="$* v1"
    if ! stamp_ok "$WORK/$dir" "$fp"; then
        rm -rf "$WORK/$dir"
        "$PYTHON" -m venv "$WORK/$dir"
        "$WORK/$dir/bin/python" -m pip install "${PIP_QUIET[@]}" "$@"
        echo "$fp" > "$WORK/$dir/.installed"
    fi
}
launcher_venv mrmd "mrmd==0.10.1" "nodejs-bin==18.4.0a4"
launcher_venv mrmd-orchestrator "mrmd-orchestrator==0.2.0"
