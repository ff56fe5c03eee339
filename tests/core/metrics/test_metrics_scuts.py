"""SCuts: PySceneDetect's AdaptiveDetector on frames in memory finds exactly the synthetic cuts."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from streamingt2v_core.metrics import count_scene_cuts, to_uint8_frames
from streamingt2v_core.metrics.synthetic import pan_video, scenes_video


def test_three_distinct_scenes_give_two_cuts_at_the_scene_starts():
    video = scenes_video(num_scenes=3, frames_per_scene=20, seed=1)
    result = count_scene_cuts(video)
    assert result.num_cuts == 2
    assert result.cut_frames == [20, 40]
    # the series is per frame, and its two largest values are the cuts
    assert len(result.content_val) == len(result.adaptive_ratio) == 60
    assert sorted(np.argsort(result.content_val)[-2:].tolist()) == [20, 40]
    assert result.content_val[0] == 0.0
    assert result.detector_params["adaptive_threshold"] == 3.0  # the detector's defaults
    assert result.detector_params["min_scene_len"] == 15


def test_float_image_batch_gives_the_same_cuts_as_uint8():
    video = scenes_video(num_scenes=3, frames_per_scene=20, seed=1)
    as_image = torch.from_numpy(video).float() / 255.0  # ComfyUI IMAGE layout
    assert count_scene_cuts(as_image).cut_frames == [20, 40]


def test_smooth_pan_gives_no_cut():
    result = count_scene_cuts(pan_video(60, shift=2, seed=3))
    assert result.num_cuts == 0
    assert result.cut_frames == []


def test_detector_parameters_can_be_overridden():
    video = scenes_video(num_scenes=3, frames_per_scene=20, seed=1)
    # min_scene_len counts from the start of the video: 20 frames are too few for a scene of 25,
    # so the first cut is suppressed and the second (40 frames in) stands
    assert count_scene_cuts(video, min_scene_len=25).cut_frames == [40]


def test_command_line_minimum_scene_length_in_seconds_is_supported():
    video = scenes_video(num_scenes=3, frames_per_scene=8, seed=1)
    assert count_scene_cuts(video).cut_frames == [16]                          # 15 frames minimum
    assert count_scene_cuts(video, min_scene_len="0.6s", fps=8).cut_frames == [8, 16]  # 5 frames


def test_large_frames_are_downscaled_like_scene_manager():
    video = np.repeat(np.repeat(scenes_video(3, 16, 32, 32, seed=2), 16, axis=1), 16, axis=2)  # 512x512
    result = count_scene_cuts(video)
    assert result.downscale_factor == pytest.approx(2.0)
    assert result.cut_frames == [16, 32]


@pytest.mark.parametrize("bad, message", [
    (np.full((4, 8, 8, 3), 2.0, np.float32), "0, 1"),
    (np.full((4, 8, 8, 3), -0.5, np.float32), "0, 1"),
    (np.zeros((4, 8, 8), np.float32), r"\[T, H, W, 3\]"),
    (np.zeros((4, 8, 8, 4), np.float32), r"\[T, H, W, 3\]"),
    (np.zeros((0, 8, 8, 3), np.float32), "at least 1"),
    ([[0.0]], "torch.Tensor or numpy"),
])
def test_bad_frames_raise_a_clear_error(bad, message):
    with pytest.raises(ValueError, match=message):
        count_scene_cuts(bad)


def test_nan_frames_and_bad_fps_are_rejected():
    frames = np.zeros((3, 8, 8, 3), np.float32)
    frames[1, 2, 2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        count_scene_cuts(frames)
    with pytest.raises(ValueError, match="fps"):
        count_scene_cuts(np.zeros((3, 8, 8, 3), np.uint8), fps=0)


def test_float_frames_are_quantised_with_rounding():
    frames = torch.tensor([0.0, 0.5 / 255, 0.51 / 255, 1.0, 1.0 + 1e-4]).reshape(1, 1, 5, 1).repeat(1, 1, 1, 3)
    assert to_uint8_frames(frames)[0, 0, :, 0].tolist() == [0, 0, 1, 255, 255]
