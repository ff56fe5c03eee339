"""Run each test module in a process of its own and print a table: does every module pass alone?

A module that passes in the full suite but fails alone depends on state an earlier module left behind (a booted
host, a loaded model, a file in the models folder). Not run in CI (each process pays the host's start-up); run it
after changing fixtures or the host harness:

    .venv/bin/python scripts/check_test_isolation.py                       # every tests/host module
    .venv/bin/python scripts/check_test_isolation.py tests/core/sampling/test_refine.py tests/host/test_x.py
    .venv/bin/python scripts/check_test_isolation.py --timeout 900 -- -k "not slow"   # extra pytest arguments

Columns: module, outcome (pytest's exit code and summary line), wall seconds, peak RSS of the process (GB).
Exit status 1 when any module failed alone.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_alone(module: str, extra: list[str], timeout: float) -> tuple[int, str, float, float]:
    """(exit code, pytest's last line, wall seconds, peak RSS in GB) of `pytest module` in a fresh process."""
    cmd = [sys.executable, "-m", "pytest", module, "-q", "-p", "no:cacheprovider", *extra]
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
        # os.wait4 (not Popen.wait) reaps the child and returns its own resource use: its peak RSS
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > timeout:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                log.write(f"\ntimed out after {timeout:.0f} s")
                break
            time.sleep(0.5)
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        lines = [ln for ln in log.read().strip().splitlines() if ln.strip()]
    summary = lines[-1] if lines else "(no output)"
    return proc.returncode, summary, time.monotonic() - start, usage.ru_maxrss / 1024 ** 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help="test files (default: every tests/host/test_*.py)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per module (default 1200)")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: passed to pytest")
    args = parser.parse_args(argv)
    modules = args.modules or sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "tests" / "host").glob("test_*.py"))
    extra = [a for a in args.pytest_args if a != "--"]
    width = max(len(m) for m in modules)
    print(f"{'module':<{width}}  {'rc':>3}  {'wall s':>7}  {'RSS GB':>6}  pytest's summary", flush=True)
    failed = []
    for module in modules:
        rc, summary, wall, rss = run_alone(module, extra, args.timeout)
        if rc not in (0, 5):  # 5: nothing collected (e.g. every test deselected by -k)
            failed.append(module)
        print(f"{module:<{width}}  {rc:>3}  {wall:>7.1f}  {rss:>6.2f}  {summary}", flush=True)
    print(f"\n{len(modules) - len(failed)} of {len(modules)} modules pass alone"
          + (f"; failing alone: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
