#!/usr/bin/env bash
# Prepare, on a machine that reaches PyPI, what bench/gpu.sh needs on an offline GPU machine whose Python already
# has a CUDA PyTorch (e.g. an image with PyTorch, Python 3.12): wheels of the host's requirements that such an image
# lacks, in .whl/ (git-ignored through .git/info/exclude), and the ComfyUI host in .host/ComfyUI (scripts/setup.sh).
#   bash bench/gpu_prepare.sh [PYTHON_VERSION]      (default 3.12)
# Then bring the repo with .host/ComfyUI and .whl/ to the GPU machine and run: bash bench/gpu.sh
# (with this workplace's device tool: run(command="bash bench/gpu.sh", carry=[".host/ComfyUI", ".whl"]);
# together about 62 MiB, under the tool's 64 MiB).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYV="${1:-3.12}"
[ -f "$ROOT/.host/ComfyUI/main.py" ] || bash "$ROOT/scripts/setup.sh"
PY="$ROOT/.venv/bin/python"
mkdir -p "$ROOT/.whl" "$ROOT/.git/info"
grep -qx "/.whl/" "$ROOT/.git/info/exclude" 2>/dev/null || echo "/.whl/" >> "$ROOT/.git/info/exclude"
# The versions this repo is tested with; what an image with PyTorch usually lacks of the host's requirements.
want=()
for pkg in av torchsde trampoline; do
  ver="$("$PY" -m pip show "$pkg" 2>/dev/null | sed -n 's/^Version: //p')"
  want+=("$pkg${ver:+==$ver}")
done
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version "$PYV" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$ROOT/.whl" "${want[@]}"
du -sh "$ROOT/.whl" "$ROOT/.host/ComfyUI" >&2
echo "ready: carry .host/ComfyUI and .whl/ with the repo, then run: bash bench/gpu.sh"
