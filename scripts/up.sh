#!/usr/bin/env bash
# Install what is needed (only when pyproject.toml or bootstrap.sh changed since the last install) and start
# the all-in-one cloud (Ctrl-C stops it). Offline after the first install: a current install starts at once,
# and a failed reinstall falls back to the one there is.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.kilonova-install
wanted=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/kilonova ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    if ./scripts/bootstrap.sh; then
        echo "$wanted" > "$stamp"
    elif [ -x .venv/bin/kilonova ]; then
        echo "up.sh: could not update the install (offline?); starting the one in .venv" >&2
    else
        exit 1
    fi
fi
exec .venv/bin/kilonova up "$@"
