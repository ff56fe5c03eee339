"""The README's main command, `scripts/demo.py` (what `bash scripts/demo.sh` runs after set-up), in
a fresh process on the session's random weights at a tiny size: the first run reads clean.

Its console shows our steps, one line for what the host left out (the audio nodes, when torchaudio
is missing) instead of tracebacks, and the refined video's path as its last line. This is the one
test that runs the demo end to end, the way an artist's first run goes; it takes about a minute
on two cores.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = ["--frames", "24", "--steps", "1", "--width", "64", "--height", "64",
        "--refine-width", "64", "--refine-height", "80", "--metric-size", "64"]


@pytest.fixture(scope="module")
def demo_run(host_weights, models_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo_workdir")
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "demo.py"), "--models", str(models_dir), "--workdir", str(workdir),
         "--prompt", "a lighthouse at dusk", *TINY],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return proc, workdir


def test_the_demo_ends_with_the_refined_videos_path(demo_run):
    proc, workdir = demo_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    video = Path(last)
    assert video.is_file() and video.suffix == ".mp4", last
    assert video.resolve().is_relative_to((workdir / "output").resolve())
    report = json.loads((workdir / "output" / "streamingt2v_demo_run.json").read_text())
    assert report["workflow"] == "text_to_long_video_refined.json" and report["video"] == last
    assert "long_video_refined" in video.name  # the refined video's SaveVideo prefix, not the extension's


def test_the_demo_console_shows_our_steps_and_no_tracebacks(demo_run):
    proc, _workdir = demo_run
    console = proc.stdout + proc.stderr
    assert "Traceback" not in console, console[-4000:]
    steps = [line for line in proc.stdout.splitlines() if line.startswith("[demo] step ")]
    titles = " ".join(steps)
    for stage in ("First chunk", "Extend", "Refine", "Refined video"):
        assert stage in titles, steps
    if "torchaudio" in console:  # the host's audio nodes cannot load here: one line says so
        lines = [line for line in console.splitlines() if "torchaudio" in line]
        assert len(lines) == 1 and lines[0].startswith("[demo] host:"), lines
    assert "pip install -r requirements.txt" not in console
