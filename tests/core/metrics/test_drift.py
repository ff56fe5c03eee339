"""Drift & Seams on synthetic videos whose joins and colour drift are known."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from streamingt2v_core.color import rgb_to_lab
from streamingt2v_core.metrics.drift import (
    chunk_windows,
    clip_sample_frames,
    join_pairs,
    measure_drift_and_seams,
)
from streamingt2v_core.metrics.plot import plot_drift_and_seams
from streamingt2v_core.metrics.synthetic_drift import drift_video, jump_video, loop_pan_video, offset_lab
from streamingt2v_core.sampling.synthetic import seam_score

RED = np.array([214, 39, 40])


def test_cielab_matches_the_published_values():
    # CIE L*a*b* (D65) of sRGB primaries and mid grey, as tabulated by colour science references
    # (e.g. Bruce Lindbloom's calculator): red (53.24, 80.09, 67.20), blue (32.30, 79.19, -107.86).
    rgb = np.array([[[[1, 0, 0], [0, 0, 1], [0.5, 0.5, 0.5], [1, 1, 1]]]], np.float32)
    lab = rgb_to_lab(rgb)[0, 0]
    np.testing.assert_allclose(lab[0], [53.24, 80.09, 67.20], atol=0.01)
    np.testing.assert_allclose(lab[1], [32.30, 79.19, -107.86], atol=0.01)
    np.testing.assert_allclose(lab[2], [53.39, 0, 0], atol=0.01)
    np.testing.assert_allclose(lab[3], [100, 0, 0], atol=0.01)


def test_clean_video_has_no_seam_and_no_drift():
    result = measure_drift_and_seams(loop_pan_video(48))
    assert [j.frame for j in result.joins] == [16, 24, 32, 40]
    assert result.seam_score == pytest.approx(1.0, abs=0.01)
    assert all(j.ratio == pytest.approx(1.0, abs=0.02) for j in result.joins)
    assert result.flagged_joins == []
    assert result.final_delta_e < 0.05 and result.drift_per_chunk < 0.05
    assert result.notes == [] and result.nonfinite_frames == []


def test_a_colour_jump_at_a_known_join_is_found_and_only_there():
    result = measure_drift_and_seams(jump_video(48, join_frame=32, lab_offset=(12, 0, 0)))
    assert [j.frame for j in result.flagged_joins] == [32]
    assert result.worst_join.frame == 32 and result.worst_join.ratio > 2.0
    assert "ratio" in result.flagged_joins[0].reason
    # the chunks after the jump sit 12 L units (minus a little gamut clipping) from the anchor
    deltas = [c.delta_e for c in result.chunks]
    assert deltas[:3] == pytest.approx([0, 0, 0], abs=0.05)
    assert deltas[3] == pytest.approx(12, abs=0.5) and deltas[4] == pytest.approx(12, abs=0.5)
    assert result.chunks[3].delta_lab[0] == pytest.approx(12, abs=0.5)


def test_a_stutter_without_colour_change_is_found():
    result = measure_drift_and_seams(jump_video(48, join_frame=24, lab_offset=(0, 0, 0), skip_frames=5))
    assert [j.frame for j in result.flagged_joins] == [24]
    assert result.max_delta_e < 0.05  # the colours did not move


def test_a_moderate_jump_stands_out_among_many_clean_joins_but_not_among_two():
    many = measure_drift_and_seams(jump_video(80, join_frame=48, lab_offset=(6, 0, 0)))
    (flagged,) = many.flagged_joins
    assert flagged.frame == 48 and 1.25 <= flagged.ratio < 2.0
    assert "outlier" in flagged.reason and flagged.robust_z >= 3.5
    two = measure_drift_and_seams(jump_video(32, join_frame=24, lab_offset=(6, 0, 0)))
    assert len(two.joins) == 2 and two.flagged_joins == []  # no robust rule with 2 joins
    assert math.isnan(two.joins[1].robust_z)


def test_every_join_jumping_is_caught_by_the_absolute_rule():
    frames = loop_pan_video(48)
    offsets = np.zeros((48, 3), np.float32)
    for start, step in ((16, 12.0), (24, -12.0), (32, 12.0), (40, -12.0)):
        offsets[start:, 0] += step  # L jumps up and down at every join
    result = measure_drift_and_seams(offset_lab(frames, offsets))
    assert [j.frame for j in result.flagged_joins] == [16, 24, 32, 40]


def test_steady_colour_drift_is_measured_per_chunk_without_flagging_joins():
    step = np.array([0.0, 0.4, 0.0])  # +0.4 a* per frame: 3.2 delta E per 8-frame chunk
    result = measure_drift_and_seams(drift_video(48, lab_step=step))
    assert result.flagged_joins == []
    assert result.drift_per_chunk == pytest.approx(3.2, abs=0.15)
    deltas = [c.delta_e for c in result.chunks]
    assert all(b > a for a, b in zip(deltas, deltas[1:]))
    # chunk k >= 1 centres on frame 16 + 8 (k - 1) + 3.5, the anchor chunk on 7.5
    for k in range(1, 5):
        assert deltas[k] == pytest.approx(0.4 * (16 + 8 * (k - 1) + 3.5 - 7.5), abs=0.3)
    assert result.chunks[4].delta_lab[1] > 0  # towards red (a* up)
    assert result.frame_delta_e[47] > result.frame_delta_e[24] > result.frame_delta_e[8]


@pytest.mark.parametrize("plan", ["extension", "refiner"])
def test_seam_score_is_the_seam_benchmarks_definition(plan):
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 1, (70, 8, 8, 3)).astype(np.float32)
    frames[::3] *= 0.5  # uneven changes so the pair selection matters
    result = measure_drift_and_seams(torch.from_numpy(frames), plan)
    windows = chunk_windows(plan, 70)
    expected = seam_score(torch.from_numpy(frames), windows, frame_dim=0)
    assert result.seam_score == pytest.approx(expected, rel=1e-9)
    if plan == "refiner":
        assert windows == [(0, 24), (16, 40), (32, 56), (46, 70)]
        assert join_pairs(windows) == [(15, 23), (31, 39), (45, 55)]


def test_float_and_uint8_frames_give_the_same_numbers():
    video = jump_video(40, join_frame=24)
    as_uint8 = measure_drift_and_seams(video)
    as_float = measure_drift_and_seams(torch.from_numpy(video).float() / 255.0)
    assert as_float.seam_score == pytest.approx(as_uint8.seam_score, rel=1e-6)
    assert as_float.final_delta_e == pytest.approx(as_uint8.final_delta_e, abs=1e-3)


def test_a_video_of_one_chunk_is_refused_naming_the_input():
    with pytest.raises(ValueError, match=r"images: .*at least 2 chunks .*more than 16 frames.*got 16"):
        measure_drift_and_seams(loop_pan_video(16), name="images")
    with pytest.raises(ValueError, match=r"images: .*refiner.*more than 24 frames.*got 20"):
        measure_drift_and_seams(loop_pan_video(20), "refiner", name="images")
    with pytest.raises(ValueError, match="chunk_plan"):
        measure_drift_and_seams(loop_pan_video(40), "scenes")


def test_a_plan_that_does_not_divide_the_video_is_measured_and_said():
    result = measure_drift_and_seams(loop_pan_video(45))
    assert result.windows[-1] == (40, 45)
    assert any("last chunk: 5 frame(s)" in note for note in result.notes)
    custom = measure_drift_and_seams(loop_pan_video(45), first_chunk=24, new_frames_per_chunk=16)
    assert custom.windows == [(0, 24), (24, 40), (40, 45)]


def test_bad_frames_get_clear_errors():
    with pytest.raises(ValueError, match=r"images: must be \[T, H, W, 3\]"):
        measure_drift_and_seams(np.zeros((40, 8, 8)), name="images")
    with pytest.raises(ValueError, match=r"images: must hold float values in \[0, 1\]"):
        measure_drift_and_seams(np.full((40, 8, 8, 3), 2.0, np.float32), name="images")
    with pytest.raises(ValueError, match="dtype"):
        measure_drift_and_seams(np.zeros((40, 8, 8, 3), np.int32), name="images")


def test_nan_frames_are_left_out_and_reported():
    frames = torch.from_numpy(jump_video(48, join_frame=32)).float() / 255.0
    frames[20] = float("nan")  # inside chunk 1
    frames[40] = float("nan")  # the first frame of chunk 4: its join cannot be scored
    result = measure_drift_and_seams(frames, name="images")
    assert result.nonfinite_frames == [20, 40]
    assert any("2 frame(s) hold NaN" in note for note in result.notes)
    assert [j.frame for j in result.flagged_joins] == [32]
    assert math.isnan(result.joins[3].ratio) and any("frame 40" in note for note in result.notes)
    assert result.chunks[1].valid_frames == 7 and result.chunks[1].delta_e < 0.05
    assert math.isnan(result.pair_change[19]) and math.isnan(result.pair_change[20])
    text = json.dumps(result.to_report(), allow_nan=False)  # strict JSON: NaN became null
    assert json.loads(text)["joins"][3]["ratio"] is None


def test_a_still_video_with_one_jump_uses_the_floor():
    frames = np.full((32, 8, 8, 3), 100, np.uint8)
    frames[24:] = 110  # nothing moves; one step of 10 grey levels at the second join
    result = measure_drift_and_seams(frames)
    assert [j.frame for j in result.flagged_joins] == [24]
    assert result.joins[1].ratio == pytest.approx((10 / 255 + 0.5 / 255) / (0.5 / 255), rel=1e-6)
    assert result.seam_score == pytest.approx(((0 + 10 / 255) / 2 + 0.5 / 255) / (0.5 / 255), rel=1e-6)
    assert any("nothing changes inside the chunks" in note for note in result.notes)


def test_all_nan_video_says_what_it_could_not_compute():
    frames = torch.full((24, 8, 8, 3), float("nan"))
    result = measure_drift_and_seams(frames)
    assert len(result.nonfinite_frames) == 24
    assert math.isnan(result.seam_score) and math.isnan(result.final_delta_e)
    assert any("anchor chunk" in note for note in result.notes)
    json.dumps(result.to_report(), allow_nan=False)


def synthetic_embeddings(num_frames: int, turn_per_frame: float, dim: int = 16) -> np.ndarray:
    """Unit vectors rotating away from e0 at a known angle per frame: cos(frame t, frame 0) = cos(t a)."""
    angles = np.arange(num_frames) * turn_per_frame
    emb = np.zeros((num_frames, dim))
    emb[:, 0], emb[:, 1] = np.cos(angles), np.sin(angles)
    return emb * 3.0  # not unit length: the cosine must normalise


def test_embeddings_give_the_similarity_to_the_anchor_frame_per_frame_and_chunk():
    emb = synthetic_embeddings(48, 0.01)
    result = measure_drift_and_seams(loop_pan_video(48), embeddings=torch.from_numpy(emb))
    assert result.has_clip and result.clip_frames == list(range(48))
    np.testing.assert_allclose(result.clip_similarity, np.cos(np.arange(48) * 0.01), atol=1e-9)
    assert result.chunks[2].clip_similarity == pytest.approx(np.cos(np.arange(24, 32) * 0.01).mean(), abs=1e-9)
    assert result.clip_drift_per_chunk < 0
    report = result.to_report()
    assert report["clip"]["frames"] == list(range(48))


def test_embeddings_of_a_subset_of_frames_and_an_explicit_anchor():
    frames = clip_sample_frames(chunk_windows("extension", 48), per_chunk=1)
    assert frames == [0, 15, 23, 31, 39, 47]
    assert clip_sample_frames(chunk_windows("extension", 48), per_chunk=8)[:9] == [0, 1, 3, 5, 7, 9, 11, 13, 15]
    assert clip_sample_frames(chunk_windows("extension", 48), per_chunk=8)[9:] == list(range(16, 48))
    assert 15 not in clip_sample_frames(chunk_windows("extension", 48), per_chunk=1, skip=[15])
    all_emb = synthetic_embeddings(48, 0.02)
    result = measure_drift_and_seams(loop_pan_video(48), embeddings=all_emb[frames], embedded_frames=frames)
    assert result.clip_frames == frames
    # chunk 0 holds the anchor frame itself (similarity 1) and frame 15
    expected = [(1 + np.cos(15 * 0.02)) / 2] + list(np.cos(np.array(frames[2:]) * 0.02))
    assert [c.clip_similarity for c in result.chunks] == pytest.approx(expected)
    anchor = synthetic_embeddings(48, 0.02)[47]
    shifted = measure_drift_and_seams(loop_pan_video(48), embeddings=all_emb[frames[1:]],
                                      embedded_frames=frames[1:], anchor_embedding=anchor)
    assert shifted.clip_similarity[-1] == pytest.approx(1.0)


def test_embeddings_that_do_not_fit_get_clear_errors():
    video = loop_pan_video(40)
    emb = synthetic_embeddings(40, 0.01)
    with pytest.raises(ValueError, match=r"embeddings: must be \[N, D\]"):
        measure_drift_and_seams(video, embeddings=emb[0])
    with pytest.raises(ValueError, match="embedded_frames: one frame index per embedding row"):
        measure_drift_and_seams(video, embeddings=emb[:5])
    with pytest.raises(ValueError, match="embedded_frames: must include frame 0"):
        measure_drift_and_seams(video, embeddings=emb[1:3], embedded_frames=[1, 2])
    with pytest.raises(ValueError, match="anchor_embedding: must have the embeddings' size 16, got 8"):
        measure_drift_and_seams(video, embeddings=emb, anchor_embedding=np.ones(8))
    bad = emb.copy()
    bad[7] = np.nan
    with pytest.raises(ValueError, match=r"embeddings: rows for frames \[7\]"):
        measure_drift_and_seams(video, embeddings=bad)
    with pytest.raises(ValueError, match="distinct frame indices"):
        measure_drift_and_seams(video, embeddings=emb[:2], embedded_frames=[0, 40])


def test_the_plot_has_a_panel_per_measure_and_marks_the_join_that_stands_out():
    result = measure_drift_and_seams(jump_video(48, join_frame=32))
    image = plot_drift_and_seams(result, width=800, panel_height=240)
    assert image.shape == (480, 800, 3) and image.dtype == np.uint8
    seams_panel = image[40:200]  # inside the first panel's plot area
    red = np.nonzero((seams_panel == RED).all(axis=-1).any(axis=0))[0]
    left, right = 72, 800 - 16
    expected = left + (31.5 + 0.5) / 48 * (right - left)
    assert red.size and red.min() >= expected - 2 and red.max() <= expected + 2
    with_clip = measure_drift_and_seams(jump_video(48, join_frame=32), embeddings=synthetic_embeddings(48, 0.01))
    assert plot_drift_and_seams(with_clip, width=800, panel_height=240).shape == (720, 800, 3)
