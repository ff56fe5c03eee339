"""Refiner: shared noise on overlaps, batching invariance, SDEdit start, bad input."""

import pytest
import torch

from streamingt2v_core.sampling import refine as refine_module
from streamingt2v_core.sampling.blending import draw_blend_offsets
from streamingt2v_core.sampling.plans import refiner_plan, window_overlaps
from streamingt2v_core.sampling.refine import refine_video, sdedit_start
from streamingt2v_core.sampling.samplers import derive_seed, make_generator, randn_like_from
from streamingt2v_core.sampling.schedules import refiner_sampling_sigmas, vp_coefficients

SIGMAS = refiner_sampling_sigmas(num_steps=6)


def smooth_denoiser(x, sigma):
    """A window-dependent, nonlinear stand-in for a model: mixes each frame with the window mean."""
    s2 = float(sigma) ** 2
    mean = x.mean(dim=2, keepdim=True)
    return torch.tanh((0.8 * x + 0.2 * mean) / (1.0 + s2))


def _latents(frames=56, batch=2):
    return torch.randn(batch, 4, frames, 3, 3, generator=make_generator(0))


def _record_inputs(**kwargs):
    seen = []
    out = refine_video(smooth_denoiser, _latents(), sigmas=SIGMAS, seed=7,
                       chunk_input_hook=seen.append, **kwargs)
    return out, seen


def test_shared_noise_neighbours_see_identical_overlap_inputs():
    _, seen = _record_inputs(shared_noise=True, blend="randomized")
    windows = refiner_plan(56)
    assert len(seen) == (len(SIGMAS) - 1) * len(windows)
    by_step = {}
    for c in seen:
        by_step.setdefault(c.step, {})[c.window_index] = c
    for step, chunks in by_step.items():
        for i in range(1, len(windows)):
            left, right = chunks[i - 1], chunks[i]
            (s0, e0), (s1, _) = left.window, right.window
            o = e0 - s1
            assert torch.equal(left.x[:, :, s1 - s0:], right.x[:, :, :o]), (step, i)


def test_independent_noise_differs_on_overlaps():
    _, seen = _record_inputs(shared_noise=False, blend="none")
    first = {c.window_index: c for c in seen if c.step == 0}
    left, right = first[0], first[1]
    assert not torch.allclose(left.x[:, :, 16:], right.x[:, :, :8])


def _first_step_video(official_init_scaling: bool) -> torch.Tensor:
    """The state the denoiser sees at step 0, reassembled from its windows (shared noise: one video)."""
    _, seen = _record_inputs(shared_noise=True, official_init_scaling=official_init_scaling)
    video = torch.full_like(_latents(), float("nan"))
    for c in seen:
        if c.step == 0:
            video[:, :, c.window[0]:c.window[1]] = c.x
    return video


def test_initial_inputs_are_sdedit_of_the_latents():
    latents = _latents()
    s0 = float(SIGMAS[0])
    state = _first_step_video(official_init_scaling=False)
    noise = (state - latents) / s0
    # One noise tensor for the whole video, from the seed's own stream (seed 7): x0 + s0 * eps exactly, not just
    # "standard normal" (a mean/std test within 0.1 would not see a 0.972 scaling of the state).
    expected = randn_like_from(latents, make_generator(derive_seed(7, refine_module._STREAM_INIT_NOISE)))
    torch.testing.assert_close(noise, expected, rtol=0, atol=1e-5)
    assert abs(noise.mean().item()) < 0.05 and abs(noise.std().item() - 1) < 0.05


def test_official_init_scaling_multiplies_the_start_by_0_972():
    """The official quirk: the SDEdit state times sigma_vp(t' = 599) = 0.9724, on the whole video; off by default."""
    plain = _first_step_video(official_init_scaling=False)
    official = _first_step_video(official_init_scaling=True)
    _, sigma_vp = vp_coefficients(float(SIGMAS[0]))
    assert float(sigma_vp) == pytest.approx(0.9724, abs=1e-4)
    torch.testing.assert_close(official, plain * float(sigma_vp), rtol=1e-6, atol=1e-6)
    ratio = (official.flatten() @ plain.flatten()) / (plain.flatten() @ plain.flatten())
    assert float(ratio) == pytest.approx(0.9724, abs=1e-4)


@pytest.mark.parametrize("blend", ["randomized", "linear", "none"])
@pytest.mark.parametrize("shared_noise", [True, False])
def test_max_batch_does_not_change_the_result(blend, shared_noise):
    kwargs = dict(sigmas=SIGMAS, seed=3, blend=blend, shared_noise=shared_noise)
    a = refine_video(smooth_denoiser, _latents(), max_batch=1, **kwargs)
    b = refine_video(smooth_denoiser, _latents(), max_batch=3, **kwargs)
    assert a.shape == _latents().shape
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.isfinite(a).all()


def test_denoiser_gets_batches_of_windows_and_result_is_deterministic():
    sizes = []

    def denoiser(x, sigma):
        sizes.append(x.shape[0])
        return smooth_denoiser(x, sigma)

    a = refine_video(denoiser, _latents(80), sigmas=SIGMAS, max_batch=2, seed=1)
    # 5 windows (the last end-aligned) of batch 2, two per call: 4 + 4 + 2 per step.
    assert sizes[:3] == [4, 4, 2] and len(sizes) == 3 * (len(SIGMAS) - 1)
    b = refine_video(smooth_denoiser, _latents(80), sigmas=SIGMAS, max_batch=5, seed=1)
    assert torch.allclose(a, b, atol=1e-6)
    c = refine_video(smooth_denoiser, _latents(80), sigmas=SIGMAS, max_batch=5, seed=2)
    assert not torch.allclose(a, c)


class WindowLabels:
    """A denoiser whose prediction for a window is that window's index everywhere (windows come in plan order,
    ``max_batch`` at a time, every step): the merged prediction says which window each frame was taken from."""

    def __init__(self, windows, batch=2):
        self.windows, self.batch, self.calls = windows, batch, 0

    def __call__(self, x, sigma):
        n = x.shape[0] // self.batch
        labels = [(self.calls + j) % len(self.windows) for j in range(n)]
        self.calls += n
        return torch.cat([torch.full_like(x[:self.batch], float(w)) for w in labels])


def expected_labels(windows, frames, blend, offsets=None):
    """Which window each frame is taken from, written out from the blend rule (later windows win from their
    start, or from start + the boundary's offset in randomized mode)."""
    labels = []
    for t in range(frames):
        owner = 0
        for i, (s, _e) in enumerate(windows[1:], start=1):
            skip = int(offsets[i - 1]) if blend == "randomized" else 0
            if t >= s + skip:
                owner = i
        labels.append(owner)
    return labels


def test_blend_offsets_are_drawn_again_at_every_step():
    """Randomized blending draws new offsets at every solver step (the seed's blend stream, one draw per step), so
    the seams move from step to step; offsets drawn once would put every step's seam at the same frames."""
    frames, windows = 80, refiner_plan(80)
    merged = []
    refine_video(WindowLabels(windows), _latents(frames), sigmas=SIGMAS, seed=4, blend="randomized",
                 callback=lambda d: merged.append(d["denoised"][0, 0, :, 0, 0].round().long().tolist()))
    blend_gen = make_generator(derive_seed(4, refine_module._STREAM_BLEND))
    overlaps = window_overlaps(windows)
    expected = [expected_labels(windows, frames, "randomized", draw_blend_offsets(len(overlaps), overlaps, blend_gen))
                for _ in range(len(SIGMAS) - 1)]
    assert merged == expected
    assert len({tuple(m) for m in merged}) >= 3, "the seams must move between steps"


@pytest.mark.parametrize("blend", ["randomized", "linear", "none"])
def test_short_video_is_one_window_refined_whole(blend):
    """10 frames (< chunk 24): one window of all 10 frames at every step, no boundary, so every blend mode gives
    the same video, and an exact denoiser gives back its target."""
    seen = []
    target = _latents(10)
    out = refine_video(lambda x, sigma: target.clone(), target, sigmas=SIGMAS, blend=blend, max_batch=2,
                       chunk_input_hook=seen.append)
    assert {c.window for c in seen} == {(0, 10)} and len(seen) == len(SIGMAS) - 1
    torch.testing.assert_close(out, target, rtol=0, atol=1e-6)
    results = {b: refine_video(smooth_denoiser, _latents(10), sigmas=SIGMAS, blend=b, seed=2)
               for b in ("randomized", "linear", "none")}
    assert torch.equal(results["randomized"], results["none"])  # one window: the same computation
    torch.testing.assert_close(results["linear"], results["none"], rtol=0, atol=1e-6)  # weights 1 (divides by 1)


@pytest.mark.parametrize("blend", ["randomized", "linear", "none"])
def test_end_aligned_window_overlaps_two_others(blend):
    """41 frames: windows (0, 24), (16, 40) and the end-aligned (17, 41), which overlaps both others; the merged
    prediction takes each frame from the window the blend rule says, and an exact denoiser's target comes back."""
    windows = refiner_plan(41)
    assert windows == [(0, 24), (16, 40), (17, 41)]
    merged = []
    refine_video(WindowLabels(windows), _latents(41), sigmas=SIGMAS, blend=blend, seed=5,
                 callback=lambda d: merged.append(d["denoised"][0, 0, :, 0, 0]))
    if blend == "none":
        assert merged[0].round().long().tolist() == [0] * 16 + [1] + [2] * 24
    elif blend == "randomized":
        for labels in merged:
            labels = labels.round().long().tolist()
            assert labels[:16] == [0] * 16 and labels[40] == 2 and labels == sorted(labels)
    else:  # linear: a weighted mean of the labels, 0 before the first overlap, 2 on the last frame
        assert merged[0][:16].abs().max() < 1e-6 and abs(float(merged[0][40]) - 2) < 1e-6
        assert bool((merged[0][17:40] > 0).all() and (merged[0][17:40] < 2).all())
    target = _latents(41)
    calls = {"k": 0}

    def oracle(x, sigma):
        n = x.shape[0] // 2
        out = [target[:, :, s:e] for s, e in (windows[(calls["k"] + j) % 3] for j in range(n))]
        calls["k"] += n
        return torch.cat(out)

    out = refine_video(oracle, target, sigmas=SIGMAS, blend=blend, max_batch=2)
    torch.testing.assert_close(out, target, rtol=0, atol=1e-6)


def test_callback_gets_merged_whole_video_prediction():
    """Per step: i, the step's sigmas, and the merged whole-video x0 prediction (here, the blend of window labels
    with the step's offsets)."""
    windows, steps = refiner_plan(56), []
    refine_video(WindowLabels(windows), _latents(), sigmas=SIGMAS, seed=7, blend="none",
                 callback=lambda d: steps.append((d["i"], float(d["sigma"]), float(d["sigma_next"]), d["denoised"])))
    assert [s[0] for s in steps] == list(range(len(SIGMAS) - 1))
    assert [s[1:3] for s in steps] == [(float(SIGMAS[i]), float(SIGMAS[i + 1])) for i in range(len(SIGMAS) - 1)]
    labels = torch.tensor(expected_labels(windows, 56, "none"), dtype=torch.float32)
    for _i, _s, _n, denoised in steps:
        assert denoised.shape == (2, 4, 56, 3, 3)
        assert torch.equal(denoised, labels.view(1, 1, -1, 1, 1).expand_as(denoised))


def test_exact_point_mass_denoiser_returns_the_target():
    target = _latents()

    # A denoiser that always predicts the clean latents of its window recovers them exactly.
    windows = refiner_plan(56)
    calls = {"k": 0}

    def oracle(x, sigma):
        n = x.shape[0] // target.shape[0]
        out = []
        for j in range(n):
            s, e = windows[(calls["k"] + j) % len(windows)]
            out.append(target[:, :, s:e])
        calls["k"] += n
        return torch.cat(out)

    out = refine_video(oracle, target, sigmas=SIGMAS, max_batch=2)
    assert torch.equal(out, target)


def test_sdedit_official_scaling_quirk():
    x0 = torch.ones(3)
    eps = torch.zeros(3)
    s0 = float(refiner_sampling_sigmas()[0])
    assert torch.allclose(sdedit_start(x0, eps, s0), x0)
    quirk = sdedit_start(x0, eps, s0, official_init_scaling=True)
    assert torch.allclose(quirk, torch.full((3,), 0.9724), atol=1e-4)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(blend="soft"), "blend"),
        (dict(variant="both"), "variant"),
        (dict(max_batch=0), "max_batch"),
        (dict(overlap=24), "overlap"),
        (dict(chunk=0), "chunk"),
        (dict(sigmas=torch.tensor([1.0, 2.0])), "sigmas"),
        (dict(frame_dim=0), "frame_dim"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        refine_video(smooth_denoiser, _latents(), **kwargs)


def test_non_finite_latents_rejected():
    bad = _latents()
    bad[0, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="latents"):
        refine_video(smooth_denoiser, bad, sigmas=SIGMAS)
