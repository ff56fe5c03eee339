"""bench/gpu.sh, the one-command full-size GPU benchmark, exercised at CPU size so it never rots before a GPU runs it.

The dry run is the slowest test of the suite (about 100 CPU-seconds: every part's code at the tiny presets, the host
booted once); it is the only run the GPU benchmark gets on CI machines.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.gpu_full import FAULT_ENV, LIMIT_ENV, PARTS  # noqa: E402


def test_dry_run_runs_every_part_and_appends_the_tables(tmp_path):
    results, work = tmp_path / "dry.md", tmp_path / "work"
    real_results = (REPO / "bench" / "RESULTS.md").read_bytes()
    proc = subprocess.run(["bash", "bench/gpu.sh", "--dry-run", "--results", str(results), "--work", str(work)],
                          cwd=REPO, capture_output=True, text=True, timeout=1200)
    text = results.read_text() if results.exists() else ""
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:], text[-4000:])
    for part in PARTS:
        assert f"### {part.title}" in text
    assert text.count("Part ok after") == len(PARTS), text
    assert "### Summary: the issue's goals" in text and "1200-frame plan estimated" in text
    assert (REPO / "bench" / "RESULTS.md").read_bytes() == real_results  # a dry run never writes the real results

    models = json.loads((work / "models.json").read_text())["rows"]
    assert [r["case"] for r in models] == ["extender CFG", "base UNet3D CFG", "refiner CFG", "refiner one branch"]
    # what our MODELs tell the host covers what a forward really allocated
    assert all(r["ratio"] >= 1.0 and r["attention_calls"] > 0 for r in models), models
    refine = json.loads((work / "refine.json").read_text())
    assert [r["windows_per_call"] for r in refine["batching"]["rows"]] == [1, 2, 4]
    stages = json.loads((work / "pipeline.json").read_text())["stages"]
    assert [s["stage"] for s in stages][-1] == "Refine (24 frames)" and not any(s["error"] for s in stages)


def test_a_failing_and_a_hanging_part_keep_the_other_tables(tmp_path):
    """Isolated parts (as on a GPU): one hangs past its limit, one raises; the third still runs and reports."""
    results, work = tmp_path / "faults.md", tmp_path / "work"
    env = dict(os.environ, **{FAULT_ENV: "models:hang,compile:raise", LIMIT_ENV: "models:8"})
    proc = subprocess.run([sys.executable, "bench/gpu_full.py", "--dry-run", "--isolate", "yes", "--parts",
                           "models,compile,profile", "--results", str(results), "--work", str(work)],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    text = results.read_text()
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Part stopped at its 8 s limit" in text
    assert "Part failed (exit 1)" in text and "asked part compile to fail" in text
    assert "Part ok after" in text and "| refiner CFG |" in text  # the profile part's table
    assert "Parts: models stopped at its 8 s limit, profile ok, compile failed (exit 1)" in text


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA GPU is visible")
def test_without_cuda_gpu_sh_says_so_in_one_line():
    proc = subprocess.run(["bash", "bench/gpu.sh"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "no CUDA GPU" in lines[0], proc.stdout
