"""Refiner: shared noise on overlaps, batching invariance, SDEdit start, bad input."""

import pytest
import torch

from streamingt2v_core.sampling.plans import refiner_plan
from streamingt2v_core.sampling.refine import refine_video, sdedit_start
from streamingt2v_core.sampling.samplers import make_generator
from streamingt2v_core.sampling.schedules import refiner_sampling_sigmas

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


def test_initial_inputs_are_sdedit_of_the_latents():
    _, seen = _record_inputs(shared_noise=True)
    latents = _latents()
    first = [c for c in seen if c.step == 0]
    s0 = float(SIGMAS[0])
    noise = torch.cat([(c.x - latents[:, :, c.window[0]:c.window[1]]) / s0 for c in first], 2)
    # The implied noise is standard normal (one tensor for the whole video).
    assert abs(noise.mean().item()) < 0.1 and abs(noise.std().item() - 1) < 0.1


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


@pytest.mark.parametrize("frames", [10, 41])
@pytest.mark.parametrize("blend", ["randomized", "linear", "none"])
def test_short_and_end_aligned_videos(frames, blend):
    # 10 frames: one window, no boundary; 41 frames: the end-aligned window overlaps two others.
    out = refine_video(smooth_denoiser, _latents(frames), sigmas=SIGMAS, blend=blend, max_batch=2)
    assert out.shape == (2, 4, frames, 3, 3) and torch.isfinite(out).all()


def test_callback_gets_merged_whole_video_prediction():
    steps = []
    refine_video(smooth_denoiser, _latents(), sigmas=SIGMAS,
                 callback=lambda d: steps.append((d["i"], tuple(d["denoised"].shape))))
    assert steps == [(i, (2, 4, 56, 3, 3)) for i in range(len(SIGMAS) - 1)]


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
