"""The Refine node's sampling path in the real host against the official refiner and against the core refiner.

Both tests run ``refine_latent``, the function the Refine node samples with (host ``dpmpp_2m_sde`` sampler, our
``streamingt2v_trailing`` scheduler, one shared noise tensor, our context handler, per-window guidance rescale), on
a tiny MS-Vid2Vid-XL UNet: the original ``Vid2VidSDUNet`` class (PyPI ``modelscope``) with seeded random weights,
saved as ``non_ema_0035000.pth`` and loaded through the pack's Model Loader node.

1. **One window against the official code** (blending off: the video is exactly one window), step by step. The
   official code is MS-Vid2Vid-XL's ``GaussianDiffusion_SDEdit`` (zero-terminal-SNR cosine schedule, trailing
   discretisation from t' = 599, CFG 7.5 with guidance rescale 0.2, v-prediction) and its DPM-Solver++(2M) SDE,
   with the original UNet. Checked: (1) the sigmas our scheduler gives the host are the official ones; (2) at every
   state the host visited, the official denoiser gives the x0-prediction the host used; (3) the official solver,
   fed those predictions, visits the same states and ends on the host's result. Noise is shared where the codes
   allow it: the SDEdit noise is the host's ``prepare_noise`` tensor handed to the official ``diffuse``, and the SDE
   noise comes from torchsde Brownian trees on the CPU built the same way on both sides with the node's seed (the
   official solver draws its tree seed from the global RNG; the test fixes it). Comparing whole trajectories
   instead would measure chaos, not correctness: a tiny random UNet amplifies 1e-6 float differences ~20x per step
   (measured: 1e-2 after 5 steps). One known difference is taken out, listed in the README's differences table: the
   official first state ``x_t' * s0`` (we start from ``x0 + s0 * noise``). With 5 steps the trailing timesteps
   599, 499, ... are integers, so the official rounding of ``t`` changes nothing. Tolerance 1e-4 of the scale
   (float32 on both sides, different operation order).
2. **Several windows against the core refiner.** With randomized blending on a 10-frame latent (4 windows), the
   x0-prediction the host hands its solver at every step must equal the core refiner's merged prediction for the
   same state: each window's CFG 7.5 + guidance rescale 0.2 in v-space (``samplers.cfg_model``), v -> x0
   (``samplers.v_prediction_denoiser``), fused with the same blend offsets (``blending.fuse_windows``). This is the
   per-window rescale the node does inside the host's CFG; a whole-video rescale differs by >1e-3 (checked).
"""
from __future__ import annotations

import functools
import math

import pytest
import torch

from test_context_blend import pack_module, text_cond
from tests.reference.modelscope_reference import sdedit_modules, tiny_vid2vid_unet

SEED = 5
RTOL = 1e-4


@pytest.fixture(scope="module")
def reference(comfy_host):
    """(original Vid2VidSDUNet, the same weights as a host MODEL from the Model Loader node)."""
    unet = tiny_vid2vid_unet(seed=3)
    path = comfy_host.models_dir / "streamingt2v" / "tiny_reference_non_ema_0035000.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": unet.state_dict()}, path)
    loader = comfy_host.node_class("StreamingT2VModelLoader")
    model = loader.execute(model_name=path.name, weight_dtype="fp32", kind="refiner_unet").result[0]
    return unet, model


def _host_refine(model, latent: torch.Tensor, *, steps: int, chunk: int, overlap: int, blend_mode: str,
                 record=None, hook=None) -> torch.Tensor:
    """``refine_latent`` on a model-space latent; returns the model-space result. ``record(i, denoised, x)`` sees
    every solver step (through the host's preview callback), ``hook(handler)`` the context handler."""
    refine = pack_module("refine")
    latent_format = model.get_model_object("latent_format")
    original = refine.latent_preview.prepare_callback

    def prepare_callback(*args, **kwargs):
        preview = original(*args, **kwargs)

        def callback(step, x0, x, total_steps):
            if record is not None:
                record(step, x0.clone(), x.clone())
            return preview(step, x0, x, total_steps)

        return callback

    refine.latent_preview.prepare_callback = prepare_callback
    refine.handler_hook = hook
    try:
        out = refine.refine_latent(model, latent_format.process_out(latent), text_cond(0), text_cond(1), seed=SEED,
                                   steps=steps, cfg=7.5, denoise=0.6, sampler_name="dpmpp_2m_sde",
                                   scheduler="streamingt2v_trailing", chunk=chunk, overlap=overlap,
                                   blend_mode=blend_mode, guidance_rescale=0.2)
    finally:
        refine.latent_preview.prepare_callback = original
        refine.handler_hook = None
    return latent_format.process_in(out)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = b.abs().max()
    assert scale > 1e-3, "degenerate reference; the comparison would prove nothing"
    return ((a - b).abs().max() / scale).item()


def test_one_window_matches_the_official_sdedit_solver_step_by_step(reference, monkeypatch) -> None:
    import comfy.sample

    unet, model = reference
    schedules, diffusion_module, solvers = sdedit_modules()
    x0 = torch.randn(1, 4, 4, 10, 16, generator=torch.Generator().manual_seed(9))
    steps = 5
    host: list[tuple[torch.Tensor, torch.Tensor]] = []
    ours = _host_refine(model, x0, steps=steps, chunk=4, overlap=0, blend_mode="none",
                        record=lambda i, d, x: host.append((d, x)))
    assert len(host) == steps

    sigmas = schedules.noise_schedule("logsnr_cosine_interp", n=1000, zero_terminal_snr=True, scale_min=2.0,
                                      scale_max=4.0)
    diffusion = diffusion_module.GaussianDiffusion_SDEdit(sigmas=sigmas, prediction_type="v")
    # 1. The schedule: the official trailing sigmas are the ones our scheduler gives the host sampler.
    official_t = torch.arange(599, -1, -(600 / (steps + 1)))[:steps]
    host_sigmas = pack_module("refine").sdedit_sigmas(model, "streamingt2v_trailing", steps, 0.6)
    torch.testing.assert_close(host_sigmas[:-1].double(), diffusion._t_to_sigma(official_t).double(),
                               rtol=1e-5, atol=0)

    # 2. The denoiser: at every host state, the official CFG + rescale + v -> x0 on the original UNet gives the
    #    prediction the host's model path gave.
    positive, negative = text_cond(0)[0][0], text_cond(1)[0][0]
    kwargs = [{"y": positive}, {"y": negative}]
    for i, (denoised, x) in enumerate(host):
        sigma = host_sigmas[i]
        t = diffusion._sigma_to_t(sigma).repeat(1).round().long()
        c_in = 1.0 / math.sqrt(float(sigma) ** 2 + 1.0)
        with torch.no_grad():
            official_x0 = diffusion.denoise(x * c_in, t, None, unet, kwargs, 7.5, 0.2)[-2]
        rel = _relative(denoised, official_x0)
        assert rel < RTOL, f"step {i}: host x0-prediction vs official denoiser {rel:.2e}"
        if i == 0:  # the comparison can fail: without the guidance rescale the prediction is far off
            with torch.no_grad():
                plain = diffusion.denoise(x * c_in, t, None, unet, kwargs, 7.5, None)[-2]
            assert _relative(denoised, plain) > 100 * RTOL

    # 3. The solver: the official DPM-Solver++(2M) SDE, fed the host's predictions, visits the host's states and
    #    ends on the host's result. Same start (official quirk taken out), same Brownian tree seed and sigmas.
    noise = comfy.sample.prepare_noise(model.get_model_object("latent_format").process_out(x0), SEED)
    x_t = diffusion.diffuse(x0, torch.tensor([599]), noise)
    sigma_t = float(sigmas[599])
    monkeypatch.setattr(solvers, "BrownianTreeNoiseSampler",
                        functools.partial(solvers.BrownianTreeNoiseSampler, seed=SEED))
    visited: list[torch.Tensor] = []

    def replay(x_in, sigma):
        i = len(visited)
        visited.append(x_in * math.sqrt(float(sigma) ** 2 + 1.0))  # undo the official c_in scaling
        return host[i][0]

    # x_t / sigma_t * s0 = x0 + s0 * noise: the state we (and the host) start from; the official code would start
    # from x_t * s0 (its first-state quirk, README differences table).
    official = solvers.sample_dpmpp_2m_sde(x_t / sigma_t, replay, host_sigmas, show_progress=False)
    assert len(visited) == steps
    for i, (x_official, (_, x_host)) in enumerate(zip(visited, host)):
        rel = _relative(x_host, x_official)
        assert rel < RTOL, f"step {i}: host solver state vs official solver state {rel:.2e}"
    assert _relative(ours, official) < RTOL
    quirk_start = x_t * float(host_sigmas[0])
    assert _relative(host[0][1], quirk_start) > 1e-2  # what the official quirk would have changed


def test_per_window_guidance_rescale_with_blending_matches_the_core_refiner(reference) -> None:
    from streamingt2v_core.sampling.blending import fuse_windows
    from streamingt2v_core.sampling.samplers import cfg_model, v_prediction_denoiser
    from streamingt2v_core.sampling.schedules import refiner_alphas_cumprod

    _, model = reference
    frames, chunk, overlap = 10, 4, 2
    x0 = torch.randn(1, 4, frames, 10, 16, generator=torch.Generator().manual_seed(11))
    seen: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    handlers = []
    _host_refine(model, x0, steps=3, chunk=chunk, overlap=overlap, blend_mode="randomized",
                 record=lambda i, d, x: seen.append((i, d, x)), hook=handlers.append)
    handler = handlers[0]
    windows = handler.windows_for(frames)
    assert len(windows) == 4
    sigmas = pack_module("refine").sdedit_sigmas(model, "streamingt2v_trailing", 3, 0.6)

    unet = model.get_model_object("diffusion_model")
    positive, negative = text_cond(0)[0][0], text_cond(1)[0][0]
    guided = cfg_model(lambda x, t: unet(x, t, positive), lambda x, t: unet(x, t, negative), 7.5, 0.2)
    window_denoiser = v_prediction_denoiser(guided, refiner_alphas_cumprod())

    def whole_video_rescale(x, sigma):  # the wrong way: one std over the whole video
        whole = cfg_model(lambda x, t: unet(x, t, positive), lambda x, t: unet(x, t, negative), 7.5, 0.2)
        return v_prediction_denoiser(whole, refiner_alphas_cumprod())(x, sigma)

    assert [i for i, _, _ in seen] == [0, 1, 2]
    for step, host_denoised, x in seen:
        sigma = torch.tensor(float(sigmas[step]), dtype=torch.float64)
        offsets = handler.blend_offsets(windows, step)
        with torch.no_grad():
            per_window = [window_denoiser(x[:, :, s:e], sigma) for s, e in windows]
            core = fuse_windows(per_window, windows, frames, "randomized", offsets)
        rel = _relative(host_denoised, core)
        assert rel < RTOL, f"step {step}: host x0 vs core refiner x0 differ by {rel:.2e}"
        if step == 0:
            with torch.no_grad():
                whole = fuse_windows([whole_video_rescale(x, sigma)[:, :, s:e] for s, e in windows], windows, frames,
                                     "randomized", offsets)
            assert _relative(host_denoised, whole) > 1e-3
    assert math.isfinite(float(seen[-1][1].abs().max()))
