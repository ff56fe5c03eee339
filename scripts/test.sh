#!/usr/bin/env bash
# The README's test command: set everything up (venv, host, browser), then run the whole suite:
# core unit tests, workflows executed in the real ComfyUI host, and the real-browser test.
#
#   bash scripts/test.sh [pytest args]          the whole suite (what CI runs)
#   bash scripts/test.sh --quick [pytest args]  the inner-loop tier (<= 3 min on 2 cores): the core tests not marked
#                                               slow plus the host tests marked quick (tests/host/conftest.py lists
#                                               them); no browser
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QUICK=0
ARGS=()
for arg in "$@"; do
  if [ "$arg" = "--quick" ]; then QUICK=1; else ARGS+=("$arg"); fi
done
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
if [ "$QUICK" = 1 ]; then
  exec "$ROOT/.venv/bin/python" -m pytest tests/core tests/host -m "quick or not (host or browser or slow)" \
    ${ARGS[@]+"${ARGS[@]}"}
fi
if [ -f "$ROOT/scripts/install_browser.sh" ]; then
  bash "$ROOT/scripts/install_browser.sh"
fi
# browser tests last: Playwright's sync API keeps an event loop running in the main thread
exec "$ROOT/.venv/bin/python" -m pytest tests/core tests/host tests/browser ${ARGS[@]+"${ARGS[@]}"}
