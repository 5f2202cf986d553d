#!/usr/bin/env bash
# Everything `make test` needs, the two halves at once: the .venv (scripts/setup.sh: pip, mostly
# unpacking wheels) and the system's parts one after the other (apt-get for Chromium, bubblewrap, node;
# npm for the hub's proxy), which cannot run beside each other (apt's lock) but can beside pip.
# On a clean machine this saves the shorter half's minute; on a set-up one each step says it is done.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
log=build/install-system.log
(./scripts/install_browser.sh && ./scripts/install_sandbox.sh && ./scripts/install_hub.sh) >"$log" 2>&1 &
system=$!
status=0
./scripts/setup.sh || status=$?
wait "$system" || status=$?
cat "$log"
exit "$status"
