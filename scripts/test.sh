#!/usr/bin/env bash
# The README's test command: set everything up (venv, host, browser), then run the whole suite:
# core unit tests, workflows executed in the real ComfyUI host, and the real-browser test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
if [ -f "$ROOT/scripts/install_browser.sh" ]; then
  bash "$ROOT/scripts/install_browser.sh"
fi
cd "$ROOT"
# browser tests last: Playwright's sync API keeps an event loop running in the main thread
exec "$ROOT/.venv/bin/python" -m pytest tests/core tests/host tests/browser "$@"
