#!/usr/bin/env bash
# Sets up what the benchmarks need exactly as tests/run.sh does (a virtualenv
# in .venv with the package, its test extras and mrmd-python; the npm packages
# of tests/js), then runs the benchmark suite. Extra arguments go to run.py
# (--quick, --only throughput,latency, --runtime fake, --profile, --json PATH).
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)

exec .venv/bin/python tests/benchmarks/run.py "$@"
