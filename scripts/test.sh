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
exec "$ROOT/.venv/bin/python" -m pytest tests "$@"
