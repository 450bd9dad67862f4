#!/usr/bin/env bash
# Sets up what the benchmarks need exactly as tests/run.sh does (a virtualenv
# in .venv with the package, its test extras and mrmd-python; the npm packages
# of tests/js), then runs the benchmark suite. Extra arguments go to run.py
# (--quick, --only throughput,latency, --runtime fake, --profile, --json PATH).
set -euo pipefail
cd "$(dirname "$0")/../.."

bash tests/setup.sh

# `run.sh scale [...]`: the several-monitors benchmark (tests/benchmarks/scale.py) instead.
if [ "${1:-}" = "scale" ]; then shift; exec .venv/bin/python tests/benchmarks/scale.py "$@"; fi
# `run.sh docs1000 [--docs N]`: a thousand documents on one monitor (tests/benchmarks/docs1000.py).
if [ "${1:-}" = "docs1000" ]; then shift; exec .venv/bin/python tests/benchmarks/docs1000.py "$@"; fi

exec .venv/bin/python tests/benchmarks/run.py "$@"
