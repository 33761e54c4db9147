#!/usr/bin/env bash
# Install what is needed and start the all-in-one cloud (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
exec .venv/bin/kilonova up "$@"
