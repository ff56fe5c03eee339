"""Blending: the randomized rule's exact probabilities, the crossfade, the naive overwrite."""

import math

import pytest
import torch

from streamingt2v_core.sampling.blending import (
    draw_blend_offsets,
    fuse_windows,
    linear_blend_weights,
)
from streamingt2v_core.sampling.plans import refiner_plan
from streamingt2v_core.sampling.samplers import make_generator

DRAWS = 4000


def _left_frequencies(overlap: int, variant: str) -> torch.Tensor:
    """Empirical P(overlap frame f comes from the left window), by fusing labelled windows."""
    windows = [(0, 24), (24 - overlap, 48 - overlap)]
    left = torch.zeros(1, 1, 24, 1, 1)
    right = torch.ones(1, 1, 24, 1, 1)
    gen = make_generator(0)
    count = torch.zeros(overlap)
    for _ in range(DRAWS):
        offsets = draw_blend_offsets(1, overlap, gen, variant)
        fused = fuse_windows([left, right], windows, 48 - overlap, "randomized", offsets, 2)
        count += (fused.flatten()[24 - overlap:24] == 0).float()
    return count / DRAWS


@pytest.mark.parametrize("overlap", [8, 3])
@pytest.mark.parametrize("variant", ["code", "paper"])
def test_randomized_frequencies_match_the_rule(overlap, variant):
    freq = _left_frequencies(overlap, variant)
    f = torch.arange(overlap, dtype=torch.float64)
    if variant == "code":  # r uniform in {0..O-1}: P(left) = P(r > f) = (O - 1 - f) / O
        p = (overlap - 1 - f) / overlap
    else:  # r uniform in {0..O}: P(left) = (O - f) / (O + 1) = 1 - f' / (O + 1), f' = f + 1
        p = (overlap - f) / (overlap + 1)
    tol = 5 * torch.sqrt(p * (1 - p) / DRAWS) + 1e-9  # 5 binomial standard deviations
    assert bool(((freq.double() - p).abs() <= tol).all()), (freq, p)
    if variant == "code":
        assert freq[-1] == 0  # the last overlap frame always comes from the right window
    else:
        assert freq[0] > 0 and freq[-1] > 0


def test_offsets_per_boundary_ranges_and_determinism():
    overlaps = [8, 8, 20]
    a = draw_blend_offsets(3, overlaps, make_generator(5))
    b = draw_blend_offsets(3, overlaps, make_generator(5))
    assert torch.equal(a, b) and a.dtype == torch.int64
    many = torch.stack([draw_blend_offsets(3, overlaps, make_generator(s)) for s in range(300)])
    assert many.min() == 0
    assert many[:, 0].max() == 7 and many[:, 2].max() == 19  # each in its own {0..O_b - 1}
    assert draw_blend_offsets(0, 8).numel() == 0


def test_none_mode_right_window_overwrites():
    windows = refiner_plan(80)  # 5 windows, last one end-aligned (overlap 16)
    preds = [torch.full((2, 3, 24, 1, 1), float(i)) for i in range(len(windows))]
    out = fuse_windows(preds, windows, 80, "none", None, 2)
    labels = out[0, 0, :, 0, 0]
    expected = torch.tensor([0] * 16 + [1] * 16 + [2] * 16 + [3] * 8 + [4] * 24, dtype=torch.float32)
    assert torch.equal(labels, expected)


def test_randomized_mode_cut_positions_and_frame_dim():
    windows = [(0, 24), (16, 40), (32, 56)]
    preds = [torch.full((24, 2, 2, 3), float(i)) for i in range(3)]  # [T, H, W, C] frames
    out = fuse_windows(preds, windows, 56, "randomized", torch.tensor([3, 7]), frame_dim=0)
    labels = out[:, 0, 0, 0]
    expected = [0.0] * 19 + [1.0] * 20 + [2.0] * 17
    assert labels.tolist() == expected


def test_linear_weights_form_a_partition_of_unity_on_regular_overlaps():
    windows = refiner_plan(120)
    weights = linear_blend_weights(windows, 120)
    total = torch.zeros(120, dtype=torch.float64)
    for w, (s, e) in zip(weights, windows):
        total[s:e] += w
    assert torch.allclose(total, torch.ones(120, dtype=torch.float64))
    # The crossfade of two constant windows ramps linearly over the overlap.
    preds = [torch.zeros(1, 1, 24, 1, 1), torch.ones(1, 1, 24, 1, 1)]
    out = fuse_windows(preds, [(0, 24), (16, 40)], 40, "linear", None, 2).flatten()
    assert torch.allclose(out[16:24], torch.arange(1, 9) / 9.0)
    assert bool((out[:16] == 0).all()) and bool((out[24:] == 1).all())


def test_linear_is_a_convex_combination_with_end_aligned_window():
    windows = refiner_plan(41)  # (0,24), (16,40), (17,41): three windows overlap
    gen = make_generator(1)
    preds = [torch.rand(1, 2, 24, 2, 2, generator=gen) for _ in windows]
    out = fuse_windows(preds, windows, 41, "linear", None, 2)
    lo = torch.full_like(out, math.inf)
    hi = torch.full_like(out, -math.inf)
    for p, (s, e) in zip(preds, windows):
        lo[:, :, s:e] = torch.minimum(lo[:, :, s:e], p)
        hi[:, :, s:e] = torch.maximum(hi[:, :, s:e], p)
    assert bool(((out >= lo - 1e-6) & (out <= hi + 1e-6)).all())


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(mode="blur"), "mode"),
        (dict(mode="randomized", offsets=None), "offsets"),
        (dict(mode="randomized", offsets=torch.tensor([9])), "offsets"),
        (dict(mode="randomized", offsets=torch.tensor([1, 2])), "offsets"),
        (dict(mode="none", num_frames=41), "num_frames"),
    ],
)
def test_fuse_windows_bad_input(kwargs, match):
    args = dict(predictions=[torch.zeros(1, 1, 24, 1, 1)] * 2, windows=[(0, 24), (16, 40)],
                num_frames=40, mode="none", offsets=None, frame_dim=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fuse_windows(**args)


def test_fuse_windows_rejects_wrong_window_length():
    with pytest.raises(ValueError, match="predictions\\[1\\]"):
        fuse_windows([torch.zeros(1, 1, 24, 1, 1), torch.zeros(1, 1, 20, 1, 1)],
                     [(0, 24), (16, 40)], 40, "none", None, 2)


def test_draw_offsets_bad_input():
    with pytest.raises(ValueError, match="variant"):
        draw_blend_offsets(2, 8, variant="both")
    with pytest.raises(ValueError, match="overlap"):
        draw_blend_offsets(2, [8, 8, 8])
    with pytest.raises(ValueError, match="overlap"):
        draw_blend_offsets(1, 0)
    with pytest.raises(ValueError, match="num_boundaries"):
        draw_blend_offsets(-1, 8)
