"""Metric edge cases: static and flickering videos (MAWE), videos too short to hold a cut (SCuts), a model giving
NaN (CLIP score), a RAFT file of the wrong shapes: defined values with a reason, or a clear error, never a silent NaN."""
from __future__ import annotations

import json
import math

import numpy as np
import open_clip
import pytest
import torch
from safetensors.torch import save_file

from streamingt2v_core.metrics.clip_score import clip_score, load_open_clip
from streamingt2v_core.metrics.mawe import load_raft_large, make_flow_backend, motion_aware_warp_error
from streamingt2v_core.metrics.scuts import count_scene_cuts
from streamingt2v_core.metrics.synthetic import TINY_OPEN_CLIP_CONFIG, pan_video, textured_image


def still_flow(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.zeros(a.shape[0], 2, *a.shape[-2:])


def test_a_static_video_has_mawe_zero_with_a_note_where_the_official_code_gives_nan():
    video = np.stack([textured_image(48, 48, seed=3)] * 6)
    for flow in (still_flow, make_flow_backend("dis")):  # DIS finds exactly no motion on identical frames too
        result = motion_aware_warp_error(video, flow, size=48)
        assert result.mawe == 0.0 and result.mawe_robust == 0.0
        assert result.static_pairs == [0, 1, 2, 3, 4] and result.ratios == [0.0] * 5
        assert result.notes and result.notes[0].startswith("no motion: the video is static")
        report = result.to_report()
        assert report["mawe_official"] == 0.0 and report["notes"] == result.notes
        json.dumps(report, allow_nan=False)


def test_a_pair_that_changes_without_motion_is_inf_and_says_why():
    a, b = textured_image(32, 32, seed=1), textured_image(32, 32, seed=2)
    result = motion_aware_warp_error(np.stack([a, b, b]), still_flow, size=32)
    assert result.warp_errors[0] > 0 and result.motions == [0.0, 0.0]
    assert math.isinf(result.ratios[0]) and result.ratios[1] == 0.0
    assert math.isinf(result.mawe) and math.isinf(result.mawe_robust)  # no pair moves: both are error over 0
    assert any("change without any motion" in n and "pairs 0" in n for n in result.notes)
    assert result.to_report()["mawe_official"] is None  # strict JSON: inf is written as null, the note says why


def test_moving_video_has_no_notes_and_the_official_numbers():
    video = pan_video(5, 48, 48, shift=2, seed=0)
    result = motion_aware_warp_error(video, lambda a, b: torch.full((a.shape[0], 2, 48, 48), -2.0) * torch.tensor(
        [1.0, 0.0]).view(1, 2, 1, 1), size=48)
    assert result.notes == [] and result.static_pairs == []
    assert result.mawe == pytest.approx(float(np.mean(result.ratios)))


def test_mawe_of_a_single_frame_is_a_clear_error():
    with pytest.raises(ValueError, match=r"at least 2 frame"):
        motion_aware_warp_error(np.stack([textured_image(16, 16, seed=0)]), still_flow, size=16)


@pytest.mark.parametrize("frames, note", [
    (1, "a single frame: there is no pair of frames to compare, so SCuts is 0 by construction"),
    (17, "17 frames are too few for AdaptiveDetector to find any cut (it needs at least 18"),
])
def test_scuts_of_a_video_too_short_for_a_cut_says_so(frames, note):
    video = np.stack([textured_image(32, 32, seed=i // 9) for i in range(frames)])  # a hard cut at frame 9
    result = count_scene_cuts(video)
    assert result.num_cuts == 0 and result.notes and result.notes[0].startswith(note)
    assert result.to_report()["notes"] == result.notes


def test_the_shortest_video_scuts_can_find_a_cut_in_has_no_note():
    """18 frames: a cut at frame 15 (min_scene_len) is found, so the note's threshold is the detector's own."""
    a, b = textured_image(32, 32, seed=1), textured_image(32, 32, seed=2)
    result = count_scene_cuts(np.stack([a] * 15 + [b] * 3))
    assert result.cut_frames == [15] and result.notes == []
    assert count_scene_cuts(np.stack([a] * 15 + [b] * 2)).num_cuts == 0


def test_clip_score_of_one_frame_is_that_frames_score():
    torch.manual_seed(1)
    model = open_clip.CLIP(**TINY_OPEN_CLIP_CONFIG).eval()
    from streamingt2v_core.metrics.clip_score import OpenClipBundle

    size = TINY_OPEN_CLIP_CONFIG["vision_cfg"]["image_size"]
    bundle = OpenClipBundle(model, open_clip.image_transform(size, is_train=False), open_clip.tokenize, "tiny",
                            TINY_OPEN_CLIP_CONFIG, "tiny.safetensors")
    frame = np.stack([textured_image(40, 40, seed=4)])
    result = clip_score(frame, "a texture", bundle)
    assert len(result.per_frame) == 1 and result.score == result.per_frame[0] and math.isfinite(result.score)


def test_clip_score_refuses_a_model_that_gives_nan(tmp_path):
    torch.manual_seed(1)
    model = open_clip.CLIP(**TINY_OPEN_CLIP_CONFIG).eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["visual.proj"] = torch.full_like(state["visual.proj"], float("nan"))
    path = tmp_path / "broken.safetensors"
    save_file(state, str(path), metadata={"open_clip_config": json.dumps(TINY_OPEN_CLIP_CONFIG)})
    bundle = load_open_clip(path)
    with pytest.raises(ValueError, match=r"^model: .*'broken.safetensors' gave NaN or inf image embeddings for frames "
                                         r"\[0, 1\]"):
        clip_score(np.stack([textured_image(32, 32, seed=0)] * 2), "a texture", bundle)


def test_raft_file_with_the_right_names_but_wrong_shapes_gets_a_one_line_reason(tmp_path):
    from torchvision.models.optical_flow import raft_large

    path = tmp_path / "raft_wrong.safetensors"
    save_file({k: torch.zeros(1) for k in raft_large(weights=None, progress=False).state_dict()}, str(path))
    with pytest.raises(ValueError) as err:
        load_raft_large(path)
    message = str(err.value)
    assert "\n" not in message and "does not fit RAFT-large" in message and "tensors have other shapes" in message
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a checkpoint" * 64)
    with pytest.raises(ValueError, match="cannot read RAFT weights") as err:
        load_raft_large(junk)
    assert "weights_only=False" not in str(err.value)
