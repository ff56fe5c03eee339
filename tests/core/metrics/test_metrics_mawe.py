"""MAWE: the official warp, mask, warp error and ratio, on cases whose answer is known by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from streamingt2v_core.metrics.mawe import (
    DisFlow,
    forward_warp,
    load_raft_large,
    make_flow_backend,
    mean_flow_magnitude,
    motion_aware_warp_error,
    resize_frames,
    warp_error,
)
from streamingt2v_core.metrics.synthetic import pan_video, textured_image


def constant_flow(dx: float, dy: float = 0.0):
    def flow_fn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        flow = torch.zeros(a.shape[0], 2, *a.shape[-2:])
        flow[:, 0], flow[:, 1] = dx, dy
        return flow
    return flow_fn


def test_integer_translation_with_its_true_flow_has_zero_warp_error_and_motion_k():
    k = 3
    video = pan_video(5, 64, 64, shift=k, seed=0)  # content moves k px left per frame
    result = motion_aware_warp_error(video, constant_flow(-k), size=64)
    assert result.warp_errors == [0.0] * 4
    assert result.motions == pytest.approx([k] * 4)
    assert result.mawe == 0.0 and result.mawe_robust == 0.0
    assert result.backend == "custom" and not result.comparable_to_paper


def test_translation_masks_exactly_the_uncovered_columns():
    image = torch.arange(2 * 6 * 7, dtype=torch.float32).reshape(1, 2, 6, 7)
    warped, known = forward_warp(image, constant_flow(2)(image, image))
    # every pixel moves 2 right: columns 0 and 1 receive nobody, columns 5 and 6 fall out
    assert known[0, :, :2].any().item() is False
    assert known[0, :, 2:].all().item() is True
    assert torch.equal(warped[0, :, :, 2:], image[0, :, :, :5])
    assert torch.equal(warped[0, :, :, :2], torch.zeros(2, 6, 2))


def test_hand_computed_8x8_forward_warp_and_warp_error():
    image = torch.arange(64, dtype=torch.float32).reshape(1, 1, 8, 8)  # value = 8 y + x
    flow = torch.zeros(1, 2, 8, 8)
    flow[0, 0, 0, 0] = 1.0                            # (0,0) -> (0,1); (0,1) stays: collision
    flow[0, :, 2, 3] = torch.tensor([-1.0, -1.0])     # (2,3) -> (1,2); (1,2) stays: collision
    flow[0, 0, 7, 7] = 1.0                            # (7,7) -> (7,8): outside, dropped
    flow[0, 0, 4, 4] = 0.5                            # 4.5 rounds half to even: stays (4,4)
    flow[0, 0, 5, 5] = 1.5                            # 6.5 rounds to 6: (5,5) -> (5,6), collision
    flow[0, 1, 3, 0] = 0.49                           # 3.49 rounds to 3: stays
    warped, known = forward_warp(image, flow)

    expected = image.clone()[0, 0]
    expected_known = torch.ones(8, 8, dtype=torch.bool)
    # collisions: the later source in row-major order wins
    expected[0, 1] = 1.0    # sources (0,0)=index 0 and (0,1)=index 1 -> (0,1) wins
    expected[1, 2] = 19.0   # sources (1,2)=index 10 and (2,3)=index 19 -> (2,3) wins
    expected[5, 6] = 46.0   # sources (5,5)=index 45 and (5,6)=index 46 -> (5,6) wins
    # targets nobody lands on are unknown and zero
    for y, x in [(0, 0), (2, 3), (7, 7), (5, 5)]:
        expected[y, x] = 0.0
        expected_known[y, x] = False
    assert torch.equal(known[0], expected_known)
    assert torch.equal(warped[0, 0], expected)

    # warp error: mean over known pixels (and channels) of the squared difference
    target = image.clone()
    target[0, 0, 1, 2] = 12.0        # differs from the warped 19 by 7 -> 49
    target[0, 0, 0, 0] = 1000.0      # unknown pixel: ignored
    error = warp_error(target, warped, known)
    # by hand: known pixels are 60; (1,2): (12-19)^2 = 49; (0,1): 1-1 = 0; (5,6): 46-46 = 0
    assert error.item() == pytest.approx(49 / 60)


def test_warp_error_counts_channels_and_falls_back_when_nothing_is_known():
    image = torch.full((1, 3, 4, 4), 10.0)
    target = torch.full((1, 3, 4, 4), 13.0)
    warped, known = forward_warp(image, torch.zeros(1, 2, 4, 4))
    assert warp_error(target, warped, known).item() == pytest.approx(9.0)
    warped, known = forward_warp(image, torch.full((1, 2, 4, 4), 100.0))  # all leave the frame
    assert not known.any()
    assert warp_error(target, warped, known).item() == 0.0


def test_mean_flow_magnitude_is_the_euclidean_norm():
    flow = torch.zeros(2, 2, 3, 3)
    flow[0, 0], flow[0, 1] = 3.0, 4.0
    assert mean_flow_magnitude(flow).tolist() == [5.0, 0.0]


def test_official_mawe_is_the_mean_of_ratios_and_robust_the_ratio_of_means():
    base = textured_image(48, 80, seed=4).astype(np.int16) // 2 + 40   # 40..167: room for +10
    f0 = base[:, 20:68]
    f1 = base[:, 18:66]            # content moved 2 px right
    f2 = base[:, 14:62] + 10       # moved 4 more px right and brightened by 10 -> W = 100
    video = np.stack([f0, f1, f2]).astype(np.uint8)
    shifts = iter([2.0, 4.0])

    def flow_fn(a, b):
        return constant_flow(next(shifts))(a, b)

    result = motion_aware_warp_error(video, flow_fn, size=48, coeff=9.5)
    assert result.warp_errors == pytest.approx([0.0, 100.0])
    assert result.motions == pytest.approx([2.0, 4.0])
    assert result.ratios == pytest.approx([0.0, 100 / (9.5 * 4)])
    assert result.mawe == pytest.approx((0 + 100 / 38) / 2)
    assert result.mawe_robust == pytest.approx(50 / (9.5 * 3))
    report = result.to_report()
    assert report["mawe_official"] == pytest.approx(result.mawe)
    assert "mean over pairs" in report["mawe_official_definition"]
    assert "ratio of means" in report["mawe_robust_definition"]


def test_the_default_coefficient_is_the_official_9_5():
    """Called without ``coeff`` (as the node's default and the official ``--coeff`` default): c = 9.5, literally, so a
    changed default fails here even though every other test passes its coefficient explicitly."""
    base = textured_image(48, 80, seed=4).astype(np.int16) // 2 + 40
    video = np.stack([base[:, 20:68], base[:, 16:64] + 10]).astype(np.uint8)  # moved 4 px right, brightened by 10
    result = motion_aware_warp_error(video, constant_flow(4.0), size=48)
    assert result.coeff == 9.5
    assert result.ratios == pytest.approx([100 / (9.5 * 4)], rel=1e-6)
    assert result.mawe == pytest.approx(100 / 38, rel=1e-6)


def test_a_pair_without_motion_or_change_counts_zero_instead_of_the_official_nan():
    video = np.stack([textured_image(32, 32, seed=5)] * 2 + [textured_image(32, 32, seed=6)])
    shifts = iter([0.0, 1.0])

    def flow_fn(a, b):
        return constant_flow(next(shifts))(a, b)

    result = motion_aware_warp_error(video, flow_fn, size=32)
    assert result.warp_errors[0] == 0.0 and result.motions[0] == 0.0
    # The official mean of ratios has 0 / 0 = NaN here; a pair that neither moves nor changes is consistent: 0.
    assert result.ratios[0] == 0.0
    assert result.mawe == pytest.approx(result.ratios[1] / 2) and math.isfinite(result.mawe)
    assert math.isfinite(result.mawe_robust) and result.mawe_robust > 0
    assert result.low_motion_pairs == [0] and result.static_pairs == [0]
    assert any("neither move nor change" in n for n in result.notes)
    assert result.to_report()["mawe_official"] == pytest.approx(result.mawe)


def test_resize_matches_torchvision_bilinear_without_antialias():
    from torchvision.transforms.functional import resize

    frames = torch.from_numpy(pan_video(2, 40, 56, seed=7)).permute(0, 3, 1, 2).contiguous()
    ours = resize_frames(frames, 72)
    reference = resize(frames, [72, 72], antialias=False)
    assert reference.dtype == torch.uint8
    # Not bit-equal by construction: torchvision may resize uint8 through its own fixed-point kernel (picked by CPU
    # features), we interpolate in float32 and round. The two can round a value that lies at x.5 within the kernels'
    # round-off to neighbouring levels: at most one grey level apart, and almost every pixel identical.
    diff = (ours - reference.float()).abs()
    assert diff.max().item() <= 1.0
    assert (diff > 0).float().mean().item() <= 1e-3


def test_dis_recovers_the_shift_of_a_translated_texture_within_half_a_pixel():
    video = pan_video(2, 128, 128, shift=3, seed=8)  # content moves 3 px left
    frames = torch.from_numpy(video).permute(0, 3, 1, 2).float()
    flow = DisFlow("medium")(frames[:1], frames[1:])
    interior = flow[0, :, 16:-16, 16:-16]
    assert abs(interior[0].median().item() + 3.0) < 0.5
    assert abs(interior[1].median().item()) < 0.5
    result = motion_aware_warp_error(video, make_flow_backend("dis"), size=128)
    assert abs(result.motions[0] - 3.0) < 0.5
    assert result.backend == "opencv_dis_medium" and result.comparable_to_paper is False


def test_auto_backend_without_raft_weights_is_dis_and_raft_without_weights_fails():
    assert make_flow_backend("auto").name == "opencv_dis_medium"
    with pytest.raises(ValueError, match="raft_weights"):
        make_flow_backend("raft")
    with pytest.raises(ValueError, match="backend"):
        make_flow_backend("farneback")


@pytest.fixture(scope="module")
def raft_file(tmp_path_factory):
    from torchvision.models.optical_flow import raft_large

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("raft") / "raft_large_random.pth"
    torch.save(raft_large(weights=None, progress=False).state_dict(), path)
    return path


def test_raft_large_loads_from_a_local_file_and_runs_on_two_frames(raft_file):
    model = load_raft_large(raft_file)
    backend = make_flow_backend("auto", raft_model=model)
    assert backend.name == "raft_large" and backend.comparable_to_paper
    video = pan_video(2, 128, 128, seed=9)  # RAFT's correlation pyramid needs sides >= 128
    frames = torch.from_numpy(video).permute(0, 3, 1, 2).float()
    flow = backend.flow_fn(frames[:1], frames[1:])
    assert flow.shape == (1, 2, 128, 128) and bool(flow.isfinite().all())
    result = motion_aware_warp_error(video, backend, size=128)
    assert len(result.warp_errors) == 1 and not result.comparable_to_paper  # size != 720


def test_raft_loader_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_raft_large(tmp_path / "nope.pth")
    foreign = tmp_path / "foreign.pth"
    torch.save(torch.nn.Linear(2, 2).state_dict(), foreign)
    with pytest.raises(ValueError, match="not a torchvision RAFT-large"):
        load_raft_large(foreign)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        load_raft_large(garbage)


def test_bad_inputs_raise_clear_errors():
    one_frame = np.zeros((1, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="at least 2"):
        motion_aware_warp_error(one_frame, constant_flow(0))
    two = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="coeff"):
        motion_aware_warp_error(two, constant_flow(1), coeff=0.0)
    with pytest.raises(ValueError, match="size"):
        motion_aware_warp_error(two, constant_flow(1), size=4)
    with pytest.raises(ValueError, match=r"0, 1"):
        motion_aware_warp_error(np.full((2, 16, 16, 3), 255.0, np.float32), constant_flow(1))
    with pytest.raises(ValueError, match="flow function must return"):
        motion_aware_warp_error(two, lambda a, b: torch.zeros(1, 2, 3, 3), size=16)


def test_forward_warp_equals_a_plain_loop_over_pixels_on_random_flow():
    gen = torch.Generator().manual_seed(3)
    image = torch.rand(2, 3, 12, 10, generator=gen) * 255
    flow = torch.randn(2, 2, 12, 10, generator=gen) * 3
    warped, known = forward_warp(image, flow)
    for n in range(2):
        ref = torch.zeros(3, 12, 10)
        hit = torch.zeros(12, 10, dtype=torch.bool)
        for y in range(12):          # row-major order: later sources overwrite earlier ones
            for x in range(10):
                tx = round(x + flow[n, 0, y, x].item())   # Python's round is half-to-even too
                ty = round(y + flow[n, 1, y, x].item())
                if 0 <= tx < 10 and 0 <= ty < 12:
                    ref[:, ty, tx] = image[n, :, y, x]
                    hit[ty, tx] = True
        assert torch.equal(known[n], hit)
        assert torch.equal(warped[n], ref)
