"""python -m streamingt2v_core memory-plan: per-stage GPU memory of the refined workflow and the largest refine size.

The numbers come from the measured activation model (memory_estimate.MEASURED, forward chunking on) and published
parameter counts, so the test checks the plan's arithmetic against them and its verdicts at known sizes.
"""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from streamingt2v_core.__main__ import main
from streamingt2v_core.memory_plan import (
    GIB,
    PARAMETERS,
    RESERVE_GIB,
    VAE_DECODE_ELEMENTS,
    largest_refine_size,
    plan_stages,
)
from streamingt2v_core.models import RefinerUNetConfig
from streamingt2v_core.models.memory_estimate import SAFETY, activation_bytes

WORKFLOW = Path(__file__).resolve().parents[2] / "workflows" / "text_to_long_video_refined.json"


def test_stages_read_the_workflow_and_add_up():
    stages = plan_stages(WORKFLOW)
    assert [s.model for s in stages] == ["base_unet3d", "extender", "refiner_unet"]
    refine = stages[-1]
    assert refine.frames == 24 and refine.width % 8 == 0 and refine.height % 8 == 0
    assert refine.weights == PARAMETERS["refiner_unet"] * 2
    shape = (2, 4, 24, refine.height // 8, refine.width // 8)
    assert refine.activations == activation_bytes("unet3d", RefinerUNetConfig.full(), shape, 2)
    assert refine.need() == max(refine.weights + refine.activations, PARAMETERS["vae"] * 2 + refine.vae_decode) \
        + RESERVE_GIB * GIB
    fp8 = plan_stages(WORKFLOW, "fp8")[-1]
    assert fp8.weights * 2 == refine.weights


def test_vae_decode_is_the_measured_peak_of_one_frame_and_one_tile():
    """The host's regular decode needs one frame's peak (its smallest batch), its tiled fallback one 64x64 tile's;
    both from the measured coefficient (bf16, x SAFETY), well under the host's own estimate (2178 x 64 elements per
    latent pixel), which would say a 720p frame needs 3.7 GiB."""
    stages = plan_stages(None)
    refine = stages[-1]
    rows, cols = refine.height // 8, refine.width // 8
    assert refine.vae_decode == int(VAE_DECODE_ELEMENTS * rows * cols * 2 * SAFETY)
    assert refine.vae_tile == int(VAE_DECODE_ELEMENTS * 64 * 64 * 2 * SAFETY)  # 74x128 > a 64x64 tile
    assert refine.vae_decode < 2178 * 64 * rows * cols * 2 / 2.5
    initial = stages[0]  # a 32x32 latent is smaller than any tile: the tile is the frame
    assert initial.vae_tile == initial.vae_decode
    # the 1280x720 frame: 90x160 latent pixels, 1.10 GiB measured in bf16 (bench/RESULTS.md), 1.26 with the margin
    frame_720 = VAE_DECODE_ELEMENTS * 90 * 160 * 2 * SAFETY / GIB
    assert 1.2 < frame_720 < 1.35


def test_720p_refine_fits_12_gib_with_chunking_and_not_8():
    assert largest_refine_size(12) == (1280, 720)
    best8 = largest_refine_size(8)
    assert best8 is not None and best8[0] < 1280
    assert largest_refine_size(2) is None


def test_command_line_prints_the_plan_and_the_verdicts():
    out = io.StringIO()
    assert main(["memory-plan", "--gpu-gib", "12", "--workflow", str(WORKFLOW)], out=out) == 0
    text = out.getvalue()
    assert "| refine | refiner_unet |" in text and "Whole pipeline: fits 12 GiB." in text
    assert "Refine at 1280x720: needs" in text and "Largest refine size that fits: 1280x720." in text


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        main(["memory-plan", "--gpu-gib", "-1"], out=io.StringIO())
    with pytest.raises(ValueError, match="weights"):
        plan_stages(None, "int4")
