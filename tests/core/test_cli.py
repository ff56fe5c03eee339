"""``python -m streamingt2v_core``: inspect files and presets, print official key lists, convert checkpoints."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from streamingt2v_core.__main__ import main
from streamingt2v_core.models.loading import load_model
from streamingt2v_core.models.tiny_checkpoints import write_tiny_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[2]


# The official checkpoints' key lists, copied into the repository (tests/data/official_keys).
KEYS_DIR = Path(__file__).resolve().parents[1] / "data" / "official_keys"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamingt2v_core", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "part,tsv",
    [
        ("base_model", "streaming_t2v_base_model.tsv"),
        ("cam", "streaming_t2v_cam.tsv"),
        ("resampler", "streaming_t2v_resampler.tsv"),
        ("refiner", "ms_vid2vid_xl_unet.tsv"),  # our UNet3D through the LDM key map: the refiner map's contract
    ],
)
def test_keys_of_full_preset_equal_official_lists_exactly(part: str, tsv: str) -> None:
    out = io.StringIO()
    assert main(["inspect", "--preset", "full", "--keys", part], out=out) == 0
    expected = (KEYS_DIR / tsv).read_text()
    got = out.getvalue()
    if got != expected:  # show the first differing lines rather than two 1700-line blobs
        got_lines, expected_lines = set(got.splitlines()), set(expected.splitlines())
        pytest.fail(
            f"--keys {part} differs from {tsv}: only ours {sorted(got_lines - expected_lines)[:5]}, "
            f"only official {sorted(expected_lines - got_lines)[:5]}"
        )


def test_cli_inspect_file_reports_format_parts_dtypes_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "streaming_t2v.ckpt"
    write_tiny_checkpoint(path, "extender", "official")
    result = _cli("inspect", str(path))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "format: official_streaming_t2v_ckpt (container: torch_zip)" in text
    assert "kind: extender" in text and "config: preset:tiny" in text
    for part in ("base_model", "cam", "resampler"):
        assert f"  {part} " in text
    assert "float32 x" in text and "parameters" in text
    assert "skipped parts (present, not loaded)" in text
    for part in ("image_encoder", "text_encoder", "vae", "optimizer"):
        assert f"  {part} " in text


def test_cli_inspect_preset_counts() -> None:
    result = _cli("inspect", "--preset", "full")
    assert result.returncode == 0, result.stderr
    # Published sizes (official key study): base 1,480,478,804 (incl. 68,867,200 merger and 377,744 APM params),
    # CAM 621,981,664, resampler 22,299,904; ModelScope UNet3D = MS-Vid2Vid-XL UNet = 1,411,233,860.
    for number in ("1,480,478,804", "68,867,200", "377,744", "621,981,664", "22,299,904", "2,124,760,372"):
        assert number in result.stdout
    for kind in ("base_unet3d", "extender", "refiner_unet"):
        assert f"{kind} (full preset" in result.stdout
    assert result.stdout.count("1,411,233,860") == 4  # unet + total rows of base_unet3d and refiner_unet


def test_cli_convert_then_load(tmp_path: Path) -> None:
    src = tmp_path / "non_ema_0035000.pth"
    expected = write_tiny_checkpoint(src, "refiner_unet", "ms_vid2vid_xl", seed=2)
    dst = tmp_path / "refiner_bf16.safetensors"
    result = _cli("convert", str(src), str(dst), "--dtype", "bf16")
    assert result.returncode == 0, result.stderr
    assert "ms_vid2vid_xl" in result.stdout and "as bf16" in result.stdout
    loaded = load_model(dst)
    assert (loaded.kind, loaded.format) == ("refiner_unet", "converted_safetensors")
    state = loaded.model.state_dict()
    assert all(torch.equal(state[k], v.to(torch.bfloat16)) for k, v in expected.items())
    assert not list(tmp_path.glob("*.partial"))


def test_cli_errors_are_reported_with_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    notes = tmp_path / "notes.ckpt"
    notes.write_text("not a checkpoint\n")
    result = _cli("inspect", str(notes))
    assert result.returncode == 2 and "not a checkpoint" in result.stderr
    ref = tmp_path / "ref.pth"
    write_tiny_checkpoint(ref, "refiner_unet", "ms_vid2vid")
    capsys.readouterr()
    status = main(["convert", str(ref), str(tmp_path / "out.safetensors"), "--dtype", "fp16", "--kind", "extender"])
    assert status == 2 and "kind mismatch" in capsys.readouterr().err
    assert not list(tmp_path.glob("out.safetensors*"))
    with pytest.raises(SystemExit):
        main(["inspect"])
    assert "PATH" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["inspect", str(ref), "--keys", "cam"])
    assert "--keys needs --preset" in capsys.readouterr().err
