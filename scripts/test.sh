#!/usr/bin/env bash
# Install what is needed and run the full test suite (this is what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
