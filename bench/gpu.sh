#!/usr/bin/env bash
# Every full-size GPU benchmark in one command (issue #17): bash bench/gpu.sh
#
# Runs bench/gpu_full.py within 8 minutes (set-up included) on one H100/H200-class GPU and appends dated tables
# with the device name to bench/RESULTS.md. Without a CUDA GPU it says so in one line and exits with status 2.
#   bash bench/gpu.sh --dry-run     the same parts at CPU size (tiny presets), results in a temp file; CI runs it
#   extra arguments go to bench/gpu_full.py (--parts models,profile  --results FILE  --budget S)
#
# What the GPU machine needs (it sets itself up from the repo):
#   - a Python with a CUDA build of PyTorch: ./.venv from scripts/setup.sh (torch 2.14.1+cu130 from PyPI, driver
#     >= 580) if the machine can reach PyPI, else any python3 whose torch sees the GPU (e.g. an image with PyTorch);
#   - for the host parts (extend, refine, pipeline): the ComfyUI host source in .host/ComfyUI (scripts/setup.sh puts
#     it there) and its requirements; on an offline machine, run bench/gpu_prepare.sh on a networked one first and
#     bring .host/ComfyUI and .whl/ along (installed here into a private folder, nothing system-wide).
# Parts that cannot run are listed as skipped with the reason; the others still run and keep their tables.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUDGET="${STREAMINGT2V_GPU_BUDGET_S:-480}"
DRY=0
for arg in "$@"; do [ "$arg" = "--dry-run" ] && DRY=1; done
say() { echo "[gpu.sh] $*" >&2; }

has_torch() { "$1" -c "import torch" >/dev/null 2>&1; }
has_cuda() { "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; }

candidates=()
[ -x "$ROOT/.venv/bin/python" ] && candidates+=("$ROOT/.venv/bin/python")
for name in python3 python; do command -v "$name" >/dev/null 2>&1 && candidates+=("$(command -v "$name")"); done

PY=""
for py in "${candidates[@]}"; do
  if [ "$DRY" = 1 ]; then has_torch "$py" && { PY="$py"; break; }
  else has_cuda "$py" && { PY="$py"; break; }
  fi
done
if [ -z "$PY" ] && [ "$DRY" = 0 ] && [ ! -x "$ROOT/.venv/bin/python" ]; then
  say "no Python with CUDA PyTorch found; trying scripts/setup.sh (needs PyPI)"
  if timeout 300 bash "$ROOT/scripts/setup.sh" >&2 && has_cuda "$ROOT/.venv/bin/python"; then PY="$ROOT/.venv/bin/python"; fi
fi
if [ -z "$PY" ]; then
  if [ "$DRY" = 1 ]; then echo "bench/gpu.sh: no Python with PyTorch found (run scripts/setup.sh)"; exit 2; fi
  echo "bench/gpu.sh: no CUDA GPU: no Python here has a PyTorch that sees one (torch.cuda.is_available() is False); use --dry-run for the CPU-size check"
  exit 2
fi

# Wheels carried to an offline machine (bench/gpu_prepare.sh): install into a private folder.
if [ "$DRY" = 0 ] && compgen -G "$ROOT/.whl/*.whl" >/dev/null; then
  SITE="${TMPDIR:-/tmp}/streamingt2v_gpu_site"
  if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$ROOT"/.whl/*.whl >&2; then
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  else
    say "could not install the wheels in .whl/; the host parts may be skipped"
  fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

left=$((BUDGET - SECONDS - 5))
if [ "$DRY" = 1 ]; then left=$((left > 600 ? left : 600)); fi
say "python $PY; $left s for the parts"
exec "$PY" "$ROOT/bench/gpu_full.py" --budget "$left" "$@"
