"""Colour-drift correction: removes the drift a chunk introduces, keeps a change the prompt asks for."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from streamingt2v_core.color import (
    COLOR_MATCH_MODES,
    color_matched_sampler,
    lab_statistics,
    lab_to_rgb,
    match_chunk_color,
    match_lab_statistics,
    rgb_to_lab,
)
from streamingt2v_core.metrics.synthetic_drift import DriftingChunkSampler, loop_pan_video, offset_lab
from streamingt2v_core.sampling.extension import extend_video

DRIFT = (2.0, 1.5, -1.0)  # Lab units per chunk: delta E 2.7, just above noticeable


def muted_pan(num_frames: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 pan with values in about [51, 204], so offsets of a few Lab units stay in gamut."""
    return np.rint(loop_pan_video(num_frames, size, size, shift=1, seed=seed) * 0.6 + 51).astype(np.uint8)


def mean_lab(frames) -> np.ndarray:
    return np.asarray(lab_statistics(frames).mean)


def test_lab_round_trip_and_statistics_of_a_flat_colour():
    frames = np.full((2, 4, 4, 3), [0.25, 0.5, 0.75], np.float32)
    np.testing.assert_allclose(lab_to_rgb(rgb_to_lab(frames)), frames, atol=3e-4)
    stats = lab_statistics(frames)
    assert stats.std == pytest.approx((0, 0, 0), abs=1e-3)
    assert stats.mean[0] == pytest.approx(rgb_to_lab(frames)[0, 0, 0, 0], abs=1e-4)


def test_matching_statistics_undoes_a_lab_offset_and_gain():
    original = muted_pan(4)
    lab = rgb_to_lab(original.astype(np.float32) / 255)
    mean = lab.reshape(-1, 3).mean(0)
    shifted_lab = (lab - mean) * np.array([0.9, 1.1, 1.0], np.float32) + mean + np.array([4, -3, 2], np.float32)
    shifted = lab_to_rgb(shifted_lab)
    restored = match_lab_statistics(shifted, lab_statistics(shifted), lab_statistics(original))
    assert np.abs(restored - original / 255.0).mean() < 2e-3


def test_off_returns_the_chunk_itself():
    chunk = torch.rand(16, 8, 8, 3)
    assert match_chunk_color(chunk, "off") is chunk
    sampler = DriftingChunkSampler(np.zeros((40, 8, 8, 3)))
    assert color_matched_sampler(sampler, "off") is sampler


def test_overlap_removes_the_chunks_drift_and_keeps_the_conditioning_frames():
    truth = muted_pan(32).astype(np.float32) / 255
    cond = torch.from_numpy(truth[8:16])
    chunk = DriftingChunkSampler(truth, DRIFT)(1, cond, cond[0], seed=0)
    assert np.linalg.norm(mean_lab(chunk[8:]) - mean_lab(truth[16:24])) > 2.5  # drifted
    corrected = match_chunk_color(chunk, "overlap", cond_frames=cond)
    assert torch.equal(corrected[:8], chunk[:8])
    assert np.linalg.norm(mean_lab(corrected[8:]) - mean_lab(truth[16:24])) < 0.3


def test_overlap_keeps_a_change_the_prompt_asks_for():
    base = muted_pan(32)
    change = np.zeros((32, 3), np.float32)
    change[16:, 2] = 10.0  # the new frames are meant to be much warmer (b* + 10)
    truth = offset_lab(base, change).astype(np.float32) / 255
    cond = torch.from_numpy(truth[8:16])
    chunk = DriftingChunkSampler(truth, DRIFT)(1, cond, cond[0], seed=0)
    corrected = match_chunk_color(chunk, "overlap", cond_frames=cond)
    kept = mean_lab(corrected[8:]) - mean_lab(truth[8:16])
    assert kept[2] == pytest.approx(10.0, abs=0.5)
    # anchor mode pulls the new frames back to the anchor chunk's colours: the change is gone
    anchored = match_chunk_color(chunk, "anchor", reference=lab_statistics(truth[:16]))
    assert abs((mean_lab(anchored[8:]) - mean_lab(truth[:16]))[2]) < 0.3


def test_overlap_refuses_a_sampler_that_returns_the_known_frames():
    cond = torch.rand(8, 8, 8, 3)
    chunk = torch.cat([cond, torch.rand(8, 8, 8, 3)])
    with pytest.raises(ValueError, match=r"chunk_sampler: color_match='overlap' .*re-generated frames 0..7"):
        match_chunk_color(chunk, "overlap", cond_frames=cond)


def test_bad_arguments_name_the_input():
    chunk = torch.rand(16, 8, 8, 3)
    with pytest.raises(ValueError, match="color_match: must be one of"):
        match_chunk_color(chunk, "lab")
    with pytest.raises(ValueError, match="cond_frames: color_match='overlap' needs the 8 known"):
        match_chunk_color(chunk, "overlap")
    with pytest.raises(ValueError, match="reference: color_match='anchor'"):
        match_chunk_color(chunk, "anchor")
    with pytest.raises(ValueError, match="reference_frames"):
        color_matched_sampler(lambda *a: chunk, "anchor")
    with pytest.raises(ValueError, match=r"chunk: must be \[T > 8"):
        match_chunk_color(chunk[:8], "anchor", reference=lab_statistics(chunk))
    bad = chunk.clone()
    bad[12] = float("nan")
    with pytest.raises(ValueError, match="chunk: holds NaN"):
        match_chunk_color(bad, "anchor", reference=lab_statistics(chunk))
    assert COLOR_MATCH_MODES == ("off", "overlap", "anchor")


def run_extension(truth: np.ndarray, mode: str, total: int, drift=DRIFT, ramp=False) -> torch.Tensor:
    sampler = DriftingChunkSampler(truth, drift, ramp=ramp, noise=0.002)
    first = torch.from_numpy(truth[:16])
    return extend_video(first, color_matched_sampler(sampler, mode, reference_frames=first), total, seed=3,
                        storage_dtype=torch.float32)


def residual_drift(video: torch.Tensor, truth: np.ndarray, start: int, end: int) -> float:
    return float(np.linalg.norm(mean_lab(video[start:end]) - mean_lab(truth[start:end])))


def test_through_the_extension_loop_overlap_stops_the_drift_from_accumulating():
    truth = muted_pan(72 + 8).astype(np.float32) / 255
    off = run_extension(truth, "off", 72)
    overlap = run_extension(truth, "overlap", 72)
    # 7 chunks of drift 2.7 each pile up without correction
    assert residual_drift(off, truth, 64, 72) == pytest.approx(7 * np.linalg.norm(DRIFT), rel=0.15)
    assert residual_drift(overlap, truth, 64, 72) < 0.5
    assert residual_drift(run_extension(truth, "anchor", 72), truth, 64, 72) < 0.5


def test_the_wrapped_sampler_is_a_pure_function_of_its_inputs():
    # what keeps a resumed run bit-identical: same inputs, same corrected chunk
    truth = muted_pan(40).astype(np.float32) / 255
    wrapped = color_matched_sampler(DriftingChunkSampler(truth, DRIFT, noise=0.01), "overlap")
    cond = torch.from_numpy(truth[8:16])
    assert torch.equal(wrapped(1, cond, cond[0], 5), wrapped(1, cond, cond[0], 5))


def reference_rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """The CIE formulas in float64, whole-array numpy: the reference the fast float32 path is held to."""
    from streamingt2v_core.color import _EPSILON, _KAPPA, _RGB_TO_XYZN

    rgb = rgb.astype(np.float64)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((np.maximum(rgb, 0) + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZN.T
    f = np.where(xyz > _EPSILON, np.cbrt(np.maximum(xyz, _EPSILON)), (_KAPPA * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def test_float32_blockwise_conversions_agree_with_a_float64_reference(monkeypatch):
    import streamingt2v_core.color as color

    g = np.random.default_rng(0)
    rgb = np.concatenate([g.random((3, 37, 41, 3)), np.full((1, 37, 41, 3), [0.0, 0.04045, 1.0])]).astype(np.float32)
    lab64 = reference_rgb_to_lab(rgb)
    monkeypatch.setattr(color, "_BLOCK_PIXELS", 1000)  # many blocks, one partial
    lab = rgb_to_lab(rgb)
    assert lab.dtype == np.float32 and np.abs(lab - lab64).max() < 2e-3  # Lab units; delta E 1 is visible
    np.testing.assert_allclose(lab_to_rgb(lab64.astype(np.float32)), rgb, atol=2e-5)
    # block boundaries only move which values go through torch's vectorised or scalar pow (last-bit
    # differences); a fixed block size gives the same bytes run to run (tested below)
    monkeypatch.setattr(color, "_BLOCK_PIXELS", 1 << 18)
    assert np.abs(rgb_to_lab(rgb) - lab).max() < 1e-4


def test_statistics_on_a_strided_sample_agree_with_all_pixels():
    # one 832x480 frame of a textured pan (400k pixels); the correction samples at most 2^18 of a chunk's
    truth = loop_pan_video(1, 480, 832, shift=1, seed=4).astype(np.float32) / 255
    full = lab_statistics(truth)
    sampled = lab_statistics(truth, max_pixels=1 << 16)  # every 7th pixel
    assert np.abs(np.subtract(full.mean, sampled.mean)).max() < 0.1  # Lab units
    assert np.abs(np.subtract(full.std, sampled.std)).max() < 0.1
    lab = reference_rgb_to_lab(truth).reshape(-1, 3)
    np.testing.assert_allclose(full.mean, lab.mean(0), atol=2e-3)
    np.testing.assert_allclose(full.std, lab.std(0), atol=2e-3)
    assert lab_statistics(truth, max_pixels=1 << 20) == full  # few enough pixels: all of them


def test_the_correction_applies_to_every_pixel_and_is_the_same_bytes_each_run():
    g = torch.Generator().manual_seed(1)
    chunk = torch.rand(12, 100, 90, 3, generator=g) * 0.6 + 0.2
    cond = chunk[:8] * 0.9 + 0.05
    first = match_chunk_color(chunk, "overlap", cond_frames=cond)
    assert torch.equal(first, match_chunk_color(chunk, "overlap", cond_frames=cond))
    stats = lab_statistics(chunk[:8]), lab_statistics(cond)
    expected = match_lab_statistics(chunk[8:], *stats)  # the map on every pixel, statistics of all pixels
    assert np.abs(first[8:].numpy() - expected).max() < 1e-3
