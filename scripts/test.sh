#!/usr/bin/env bash
# The README's test command: set everything up (venv, host, browser), then run the whole suite:
# core unit tests, workflows executed in the real ComfyUI host, and the real-browser test.
#
#   bash scripts/test.sh                        the whole suite (what CI runs) in two processes side by side
#   bash scripts/test.sh [pytest args]          the whole suite with these arguments, in one process
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
PY="$ROOT/.venv/bin/python"
if [ ${#ARGS[@]} -gt 0 ]; then
  # a developer's selection (paths, -k, ...): one process, browser tests last (Playwright's sync API keeps an event
  # loop running in the main thread)
  exec "$PY" -m pytest tests/core tests/host tests/browser "${ARGS[@]}"
fi
# The whole suite (what CI runs) in two processes side by side, one thread of torch each. Much of a test's time is
# Python (the host's executor, the run store, servers starting), which one process cannot spread over two cores; two
# single-threaded processes use both (measured in bench/RESULTS.md). One process runs the core tests and the
# self-contained host modules below (torch.compile tracing, the GPU benchmark's dry run, the real-server restarts:
# they balance the two), the other the rest of the host tests and then the browser tests (browser last). Each test
# module passes alone, so any split is valid. PYTEST_ADDOPTS reaches both. The first log is printed at the end.
SIDE_HOST_MODULES=(
  tests/host/test_forward_chunking_host.py
  tests/host/test_torch_compile.py
  tests/host/test_gpu_bench.py
  tests/host/test_run_store_server.py
  tests/host/test_extend_video_model_server.py
)
IGNORED=()
for module in "${SIDE_HOST_MODULES[@]}"; do IGNORED+=("--ignore=$module"); done
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
CORE_LOG="$(mktemp "${TMPDIR:-/tmp}/streamingt2v_core_tests.XXXXXX")"
"$PY" -m pytest tests/core "${SIDE_HOST_MODULES[@]}" >"$CORE_LOG" 2>&1 &
CORE_PID=$!
HOST_STATUS=0
"$PY" -m pytest tests/host tests/browser "${IGNORED[@]}" || HOST_STATUS=$?
CORE_STATUS=0
wait "$CORE_PID" || CORE_STATUS=$?
echo
echo "============ tests/core + ${#SIDE_HOST_MODULES[@]} host modules (ran alongside, exit status $CORE_STATUS) ============"
cat "$CORE_LOG"
rm -f "$CORE_LOG"
echo "test.sh: tests/core + side host modules exit status $CORE_STATUS; the other host tests + tests/browser exit status $HOST_STATUS"
if [ "$CORE_STATUS" -ne 0 ]; then exit "$CORE_STATUS"; fi
exit "$HOST_STATUS"
