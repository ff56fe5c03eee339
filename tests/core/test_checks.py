"""streamingt2v_core.checks: NaN/inf scans, value ranges and the sampler-step check, against torch's own isfinite."""
from __future__ import annotations

import pytest
import torch

from streamingt2v_core.checks import (FiniteWatch, NonFiniteError, all_finite, check_frames_finite, describe_indices,
                                      frames_value_range, nonfinite_frames, nonfinite_parameters, unit_range)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_all_finite_agrees_with_torch_isfinite(dtype):
    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        t = torch.randn(3, 5, 7, generator=g).to(dtype)
        if trial % 3 == 1:
            t.view(-1)[int(torch.randint(0, t.numel(), (1,), generator=g))] = float("nan")
        if trial % 3 == 2:
            t.view(-1)[int(torch.randint(0, t.numel(), (1,), generator=g))] = float("-inf")
        assert all_finite(t) == bool(torch.isfinite(t).all())
    assert all_finite(torch.zeros(0)) and all_finite(torch.ones(3, dtype=torch.int64))


def test_huge_finite_values_whose_sum_overflows_are_still_finite():
    t = torch.full((1000,), 3e38)  # the float32 sum overflows to inf; the values are finite
    assert all_finite(t)
    t[7] = float("inf")
    assert not all_finite(t)


def test_nonfinite_frames_finds_exactly_the_bad_frames_across_blocks():
    frames = torch.rand(150, 4, 4, 3)  # more than one block of 64
    bad = [0, 63, 64, 65, 149]
    for i in bad:
        frames[i, 1, 2, 0] = float("nan") if i % 2 else float("inf")
    assert nonfinite_frames(frames) == bad
    latent = torch.zeros(1, 4, 20, 2, 2)
    latent[0, 2, 7] = float("nan")
    assert nonfinite_frames(latent, dim=2) == [7]
    assert nonfinite_frames(torch.rand(5, 2, 2, 3)) == []


def test_describe_indices_merges_runs_and_shortens_long_lists():
    assert describe_indices([3, 4, 5, 9]) == "3-5, 9"
    assert describe_indices([1]) == "1"
    assert describe_indices(list(range(0, 40, 2)), limit=3) == "0, 2, 4, ... (20 in all)"


def test_check_frames_finite_names_the_input_and_the_frames():
    frames = torch.rand(16, 8, 8, 3)
    check_frames_finite(frames, "first_chunk", "why")  # finite: nothing happens
    frames[3, 0, 0, 0] = float("nan")
    frames[5, 0, 0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match=r"^first_chunk: frames 3, 5 of 16 hold NaN or inf values .*; why$") as err:
        check_frames_finite(frames, "first_chunk", "why")
    assert err.value.input_name == "first_chunk" and err.value.frames == [3, 5]
    with pytest.raises(NonFiniteError, match=r"^anchor: frame 0 holds"):
        check_frames_finite(torch.full((1, 2, 2, 3), float("nan")), "anchor", "why")
    with pytest.raises(NonFiniteError, match=r"^images: every frame holds"):
        check_frames_finite(torch.full((4, 2, 2, 3), float("nan")), "images", "why")


def test_value_range_and_clamping():
    frames = torch.rand(10, 4, 4, 3)
    lo, hi = frames_value_range(frames)
    assert lo == float(frames.min()) and hi == float(frames.max())
    same, note = unit_range(frames, "first_chunk")
    assert same is frames and note is None
    frames[2, 0, 0, 0], frames[4, 1, 1, 1] = -0.1, 1.25
    clamped, note = unit_range(frames, "first_chunk")
    assert float(clamped.min()) >= 0 and float(clamped.max()) <= 1
    assert note.startswith("first_chunk: 2 values from -0.1 to 1.25 were outside [0, 1]")
    assert float(frames.max()) == 1.25  # the input is not changed
    with pytest.raises(ValueError, match=r"^first_chunk: .*looks like 0\.\.255"):
        unit_range(frames * 255, "first_chunk")
    with pytest.raises(ValueError, match=r"^anchor: .*looks like \[-1, 1\]"):
        unit_range(frames * 2 - 1, "anchor")


def test_nonfinite_parameters_names_the_bad_tensors():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    assert nonfinite_parameters(net) == []
    with torch.no_grad():
        net[0].bias[1] = float("nan")
    net[1].running_var.fill_(float("inf"))
    assert nonfinite_parameters(net) == ["0.bias", "1.running_var"]


def test_finite_watch_stops_at_the_first_bad_step_and_names_the_frames():
    watch = FiniteWatch(30, input_name="model", what="the refined latent", advice="try bf16",
                        describe=lambda frames: f"windows {frames[0] // 8}")
    x = torch.zeros(1, 4, 24, 2, 2)
    for step in range(3):
        watch(step, x, x)
    x0 = x.clone()
    x0[0, 1, 17] = float("nan")
    with pytest.raises(NonFiniteError, match=r"^model: the refined latent went NaN or inf at step 4 of 30 in latent "
                                             r"frames 17 of 24, windows 2; try bf16$") as err:
        watch(3, x0, x)
    assert (err.value.step, err.value.total_steps, err.value.frames) == (4, 30, [17])
    assert watch.checked == 4
