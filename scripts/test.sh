#!/usr/bin/env bash
# Install what is needed and run the full test suite (this is what CI runs).
# Three pytest-xdist workers on the 2-core reference machine: most tests wait on subprocesses and guests (a
# functional module's whole process tree uses about a third of a core), so a third worker cut a fresh-clone run
# from about 28 to 18 minutes. Each worker draws test ports from its own range (tests/cloud.py).
# Each module (a distributed package, one database's half of test_processes.py) runs on one worker, the longest first
# (tests/conftest.py).
# KILONOVA_TEST_WORKERS=0 runs everything in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
# --durations: every run (CI too) lists its slowest tests, where the suite's time goes.
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=30 -n "${KILONOVA_TEST_WORKERS:-3}" --dist loadgroup "$@"
