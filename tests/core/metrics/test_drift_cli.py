"""`python -m streamingt2v_core.metrics --drift`: the Drift & Seams columns on video files."""
from __future__ import annotations

import json

import pytest

from streamingt2v_core.metrics.__main__ import main
from streamingt2v_core.metrics.synthetic import write_video
from streamingt2v_core.metrics.synthetic_drift import drift_video, jump_video, loop_pan_video


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("drift_videos")
    write_video(folder / "clean.mp4", loop_pan_video(48), fps=8)
    write_video(folder / "jump.mp4", jump_video(48, join_frame=32), fps=8)
    write_video(folder / "drift.mp4", drift_video(48, lab_step=(0.0, 0.4, 0.0)), fps=8)
    return folder


def rows_of(printed: str) -> tuple[list[str], dict[str, list[str]]]:
    lines = printed.splitlines()
    header = [c.strip() for c in lines[0].split("|")[1:-1]]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines[2:]}
    return header, rows


def test_drift_columns_find_the_jump_and_the_drift(videos, capsys, tmp_path):
    out_json = tmp_path / "drift.json"
    rc = main([str(videos), "--no-mawe", "--drift", "--json", str(out_json)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    header, rows = rows_of(printed)
    assert header[6:] == ["seam score", "worst join", "joins out", "dE last chunk", "dE per chunk"]
    assert rows["clean.mp4"][7] == "none (0/4)" and float(rows["clean.mp4"][8]) < 0.5
    assert rows["jump.mp4"][6].startswith("32 (x") and rows["jump.mp4"][7] == "32 (1/4)"
    assert rows["drift.mp4"][7] == "none (0/4)"
    assert float(rows["drift.mp4"][9]) == pytest.approx(3.2, abs=0.3)  # H.264 keeps the drift
    results = {r["video"].rsplit("/", 1)[-1]: r for r in json.loads(out_json.read_text())}
    assert results["jump.mp4"]["drift"]["flagged_joins"] == [32]
    assert len(results["drift.mp4"]["drift"]["chunks"]) == 5


def test_refiner_plan_and_a_too_short_video_are_reported(videos, capsys, tmp_path):
    short = tmp_path / "short.mp4"
    write_video(short, loop_pan_video(12), fps=8)
    rc = main([str(short), str(videos / "clean.mp4"), "--no-mawe", "--no-scuts", "--drift", "--drift-plan", "refiner"])
    printed = capsys.readouterr().out
    assert rc == 1
    assert "short.mp4 (error: video: the refiner plan has a seam only after its first window of 24 frames" in printed
    _, rows = rows_of(printed)
    assert rows["clean.mp4"][7] == "none (0/2)"  # 48 frames: windows [0,24) [16,40) [24,48)


def test_without_drift_the_table_is_unchanged(videos, capsys):
    assert main([str(videos / "clean.mp4"), "--no-mawe"]) == 0
    header, _ = rows_of(capsys.readouterr().out)
    assert header == ["video", "frames", "SCuts", "MAWE (official)", "MAWE (robust)", "flow"]
