#!/usr/bin/env bash
# The README's main command: set everything up, then run the full pipeline headless in the real
# ComfyUI host and print the path of the video it wrote (last line). Options: see scripts/demo.py.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
exec "$ROOT/.venv/bin/python" "$ROOT/scripts/demo.py" "$@"
