"""`python -m streamingt2v_core.metrics VIDEO...`: a table of SCuts, MAWE and CLIP for video files."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamingt2v_core.metrics.__main__ import main
from streamingt2v_core.metrics.frames import read_video_frames
from streamingt2v_core.metrics.synthetic import pan_video, scenes_video, write_tiny_open_clip_checkpoint, write_video

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    write_video(folder / "three_scenes.mp4", scenes_video(3, 20, 64, 64, seed=1), fps=8)
    write_video(folder / "pan.mp4", pan_video(24, 64, 64, shift=2, seed=3), fps=8)
    (folder / "pan.txt").write_text("a slow pan over a texture\n")
    clip = folder / "tiny_clip.safetensors"
    write_tiny_open_clip_checkpoint(clip)
    return folder, clip


def test_pyav_reader_returns_rgb_frames_and_fps(videos):
    folder, _ = videos
    frames, fps = read_video_frames(str(folder / "three_scenes.mp4"))
    assert frames.shape == (60, 64, 64, 3) and frames.dtype == np.uint8
    assert fps == pytest.approx(8.0)
    expected = scenes_video(3, 20, 64, 64, seed=1)
    assert np.abs(frames.astype(int) - expected).mean() < 6  # H.264 at high quality


def test_cli_prints_a_table_with_scuts_mawe_and_clip(videos, capsys, tmp_path):
    folder, clip = videos
    out_json = tmp_path / "results.json"
    rc = main([str(folder), "--size", "64", "--clip-checkpoint", str(clip), "--prompt", "fallback prompt",
               "--json", str(out_json)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    lines = printed.splitlines()
    assert lines[0] == "| video | frames | SCuts | MAWE (official) | MAWE (robust) | flow | CLIP |"
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines[2:5]}
    assert rows["three_scenes.mp4"][:2] == ["60", "2"]
    assert rows["pan.mp4"][:2] == ["24", "0"]
    assert rows["pan.mp4"][4] == "opencv_dis_medium"
    assert float(rows["pan.mp4"][2]) > 0 and float(rows["pan.mp4"][5]) != 0
    assert rows["mean of 2"][1] == "1.00"
    assert "not comparable to the paper" in printed
    results = {Path(r["video"]).name: r for r in json.loads(out_json.read_text())}
    assert results["three_scenes.mp4"]["scuts"]["cut_frames"] == [20, 40]
    assert results["pan.mp4"]["clip"]["prompt"] == "a slow pan over a texture"   # sidecar wins
    assert results["three_scenes.mp4"]["clip"]["prompt"] == "fallback prompt"


def test_cli_reports_unreadable_files_and_runs_as_a_module(videos, tmp_path):
    folder, _ = videos
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    result = subprocess.run(
        [sys.executable, "-m", "streamingt2v_core.metrics", str(broken), str(folder / "pan.mp4"),
         "--size", "64", "--no-mawe"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert "broken.mp4 (error: path: cannot open" in result.stdout
    assert "| pan.mp4 | 24 | 0 | n/a | n/a | n/a |" in result.stdout
