"""The Extend node's sampling path (host ``ddpm`` sampler + ``ddim_uniform`` scheduler) step by step against the
official extender's sampler: diffusers' ``DDIMScheduler`` with the ModelScope config and ``eta = 1``.

The official StreamingT2V extender samples each chunk with diffusers' ``DDIMScheduler`` (ModelScope's
``scaled_linear`` betas 0.00085..0.012, "leading" spacing, ``steps_offset = 1``, ``set_alpha_to_one = False``)
and ``eta = 1``. Our Extend node asks the host for its ``ddpm`` sampler on ``ddim_uniform`` timesteps instead. That
the timesteps agree is checked elsewhere; here every *update* is compared. A tiny ModelScope UNet3D (random weights,
loaded through the pack's loader as a host MODEL) is sampled by the host with CFG through the same function the
Extend node uses (``sample_video_latent``); at every step the host's own state ``x_i`` and prediction are handed to
diffusers' ``DDIMScheduler.step`` with the noise the host drew for that step (the host's seeded noise sampler,
replayed), and diffusers' ``x_{i+1}`` must equal the host's. Float32 on both sides: agreement to 1e-5 of the
state's scale; a wrong variance (e.g. eta = 0, the host's ``ddim`` sampler) is off by O(1) (checked too).

The last step differs by design (README, differences table): the official scheduler ends on t = 0's noise level
(``alphas_cumprod[0] = 0.99915``, plus a little noise), the host on the clean prediction.
"""
from __future__ import annotations

import math

import pytest
import torch

from test_context_blend import pack_module

STEPS = 10
SEED = 7
RTOL = 1e-5


def _official_scheduler():
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
    )
    scheduler.set_timesteps(STEPS)
    return scheduler


@pytest.fixture(scope="module")
def host_run(comfy_host):
    """Run the Extend node's sampling function on a tiny UNet3D; record (sigma, x, denoised) of every step."""
    import comfy.samplers

    from streamingt2v_core.models.tiny_checkpoints import write_tiny_checkpoint

    path = comfy_host.models_dir / "streamingt2v" / "tiny_ddim_unet3d.safetensors"
    if not path.exists():
        write_tiny_checkpoint(path, "base_unet3d", "diffusers", seed=1)
    model, _ = pack_module("loader").load_streamingt2v_model(str(path), dtype=torch.float32)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "ddim_uniform", STEPS).float()
    gen = torch.Generator().manual_seed(0)
    positive = [[torch.randn(1, 77, 1024, generator=gen), {}]]
    negative = [[torch.randn(1, 77, 1024, generator=gen), {}]]
    steps: list[tuple[torch.Tensor, torch.Tensor]] = []

    def callback(i, denoised, x, total):
        steps.append((x.clone(), denoised.clone()))

    final = pack_module("initial_chunk").sample_video_latent(
        model, positive, negative, (1, 4, 16, 4, 4), SEED, STEPS, 7.5, "ddpm", "ddim_uniform", callback)
    latent_format = model.get_model_object("latent_format")
    return sigmas, steps, latent_format.process_in(final), model


def _host_step_noise(shape) -> list[torch.Tensor]:
    """The noise the host's ``ddpm`` sampler draws: ``default_noise_sampler(x, seed)``, one draw per step."""
    generator = torch.Generator().manual_seed(SEED)
    return [torch.randn(shape, generator=generator) for _ in range(STEPS - 1)]


def test_the_timesteps_are_the_official_ones(host_run) -> None:
    sigmas, _, _, model = host_run
    scheduler = _official_scheduler()
    host_t = model.get_model_object("model_sampling").timestep(sigmas[:-1]).tolist()
    assert host_t == scheduler.timesteps.tolist() == list(range(901, 0, -100))


def test_every_update_is_the_official_ddim_eta_1_step(host_run) -> None:
    sigmas, steps, final, _ = host_run
    scheduler = _official_scheduler()
    assert len(steps) == STEPS
    noise = _host_step_noise(steps[0][0].shape)
    for i, t in enumerate(scheduler.timesteps.tolist()[:-1]):
        x, denoised = steps[i]
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        eps = (x - denoised) / s
        x_vp = x / math.sqrt(1.0 + s * s)  # the host's k-diffusion state -> the DDPM state diffusers works on
        official = scheduler.step(eps, t, x_vp, eta=1.0, variance_noise=noise[i]).prev_sample
        host_next = steps[i + 1][0] / math.sqrt(1.0 + s_next * s_next)
        rel = ((official - host_next).abs().max() / host_next.abs().max()).item()
        assert rel < RTOL, f"step {i} (t={t}): host and official DDIM eta=1 differ by {rel:.2e} of the state"
        if i == 0:  # the comparison can fail: the deterministic DDIM (eta=0, the host's `ddim`) is far off
            eta0 = scheduler.step(eps, t, x_vp, eta=0.0).prev_sample
            assert ((eta0 - host_next).abs().max() / host_next.abs().max()).item() > 0.1


def test_the_last_step_lands_on_the_clean_prediction_not_on_t0_noise(host_run) -> None:
    """The one deliberate difference: the official last DDIM step goes to abar_0 = 0.99915 (scaling the prediction
    by 0.99957 and adding ~1e-2 noise), the host's to sigma 0, i.e. the prediction itself."""
    sigmas, steps, final, _ = host_run
    scheduler = _official_scheduler()
    x, denoised = steps[-1]
    s = float(sigmas[-2])
    assert float(sigmas[-1]) == 0.0
    torch.testing.assert_close(final, denoised, rtol=1e-5, atol=1e-5)
    generator = torch.Generator().manual_seed(1)
    official = scheduler.step((x - denoised) / s, 1, x / math.sqrt(1 + s * s), eta=1.0,
                              variance_noise=torch.randn(x.shape, generator=generator)).prev_sample
    rel = ((official - denoised).abs().max() / denoised.abs().max()).item()
    assert 1e-4 < rel < 0.1, rel
