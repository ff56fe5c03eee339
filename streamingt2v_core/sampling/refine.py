"""The StreamingT2V refiner: SDEdit over a whole-video latent with shared noise and blending.

Algorithm (official ``StreamingModelscope`` branch, ``video2video_randomized``; study 4.4):

1. One noise tensor for the whole video: ``x = x0 + s_0 eps`` with ``s_0`` the k-diffusion sigma
   of the SDEdit start ``t' = 599`` (VP: ``alpha x0 + sigma eps`` with alpha 0.2335,
   sigma 0.9724). Overlapping frames of neighbouring windows see identical noise by
   construction ("shared noise").
2. DPM-Solver++(2M) SDE over 30 "trailing" steps; its per-step noise is also drawn over the
   whole video, so it is shared too.
3. At every solver step, the denoiser runs on every window (24 frames, overlap 8; see
   :func:`.plans.refiner_plan`) and the windows' x0-predictions are merged into one global
   prediction with a blend mode (:func:`.blending.fuse_windows`): randomized blending draws fresh
   offsets per boundary and per step.

Windows within a step are independent, so they are evaluated ``max_batch`` at a time on the
denoiser's ``device`` while the whole-video latent (and all solver state) stays where
``latents`` lives, e.g. on the CPU: device memory is bounded by the batch, not the video length.

``shared_noise=False`` is the naive baseline the paper ablates: every window is refined on its
own, with its own noise and its own solver state, and the final windows are merged once at the
end with the blend mode (with ``blend="none"`` this is plain overwrite-concatenation).

Deliberate difference: the official code starts the solver from ``x_t' * s_0`` instead of
``x_t' / alpha_t'`` (a ~0.972 scaling of the first state); we start from the correct state and
offer the official one as ``official_init_scaling=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .blending import BLEND_MODES, OFFSET_VARIANTS, draw_blend_offsets, fuse_windows
from .plans import refiner_plan, window_overlaps
from .samplers import Denoiser, derive_seed, make_generator, randn_like_from, sample_dpmpp_2m_sde
from .schedules import refiner_sampling_sigmas, vp_coefficients

__all__ = ["ChunkInput", "refine_video", "sdedit_start"]

# Streams of derive_seed(seed, stream): independent RNG streams from one user seed.
_STREAM_INIT_NOISE = 1
_STREAM_STEP_NOISE = 2
_STREAM_BLEND = 3


@dataclass(frozen=True)
class ChunkInput:
    """What one window's denoiser call saw (passed to ``chunk_input_hook``; a test hook).

    ``x`` is the window's noisy input (k-diffusion scale) on the latent's device.
    """

    step: int
    window_index: int
    window: tuple[int, int]
    sigma: float
    x: Tensor


def sdedit_start(latents: Tensor, noise: Tensor, sigma: float, official_init_scaling: bool = False) -> Tensor:
    """The SDEdit starting state ``x0 + s eps`` (k-diffusion scale) at sigma ``s``.

    ``official_init_scaling=True`` reproduces the official quirk: state ``x_t' * s`` with
    ``x_t' = alpha x0 + sigma_vp eps``, i.e. the correct state times ``sigma_vp`` (0.9724).
    """
    x = latents + sigma * noise
    if official_init_scaling:
        _, sigma_vp = vp_coefficients(float(sigma))
        x = x * float(sigma_vp)
    return x


def _check_latents(latents: Tensor, frame_dim: int) -> int:
    if not isinstance(latents, Tensor) or latents.dim() < 2:
        raise ValueError("latents must be a tensor with a batch and a frame dimension")
    frame_dim = frame_dim % latents.dim()
    if frame_dim == 0:
        raise ValueError("frame_dim must not be the batch dimension 0")
    if not torch.isfinite(latents).all():
        raise ValueError("latents must be finite (found NaN or inf)")
    return frame_dim


@torch.no_grad()
def refine_video(
    denoise_fn: Denoiser,
    latents: Tensor,
    *,
    sigmas: Tensor | None = None,
    chunk: int = 24,
    overlap: int = 8,
    blend: str = "randomized",
    variant: str = "code",
    shared_noise: bool = True,
    seed: int = 0,
    max_batch: int = 1,
    device: torch.device | str | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    frame_dim: int = 2,
    official_init_scaling: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
    chunk_input_hook: Callable[[ChunkInput], None] | None = None,
) -> Tensor:
    """Refine a whole-video latent with SDEdit, shared noise and per-step window blending.

    Args:
        denoise_fn: k-diffusion denoiser ``D(x, sigma) -> x0`` over a batch of windows
            (``x``: ``[k * B, C, chunk, H, W]`` for ``frame_dim=2``, ``sigma`` a 0-d float64
            tensor). Build one from a v-prediction UNet with
            :func:`.samplers.v_prediction_denoiser` and :func:`.samplers.cfg_model`
            (CFG 7.5, rescale 0.2).
        latents: the clean latents of the video to refine (``[B, C, T, H, W]``); they and
            all solver state stay on their device (the CPU for long videos).
        sigmas: descending k-diffusion sigmas ending at 0; default
            :func:`.schedules.refiner_sampling_sigmas` (t' = 599, 30 trailing steps).
        chunk, overlap: window length C and overlap O (see :func:`.plans.refiner_plan`).
        blend: ``"randomized"``, ``"linear"`` or ``"none"``.
        variant: offsets from ``{0..O-1}`` (``"code"``, default) or ``{0..O}`` (``"paper"``).
        shared_noise: one noise tensor for the whole video (default); False refines every
            window independently (the ablation baseline, see module docstring).
        seed: seeds the initial noise, the per-step noise and the blend offsets (three
            streams derived with :func:`.samplers.derive_seed`).
        max_batch: windows evaluated per denoiser call.
        device: where ``denoise_fn`` runs; default the latents' device.
        eta, s_noise: the SDE's noise amount (1, 1 in the official solver).
        frame_dim: the frame axis of ``latents``.
        official_init_scaling: reproduce the official first-state scaling quirk.
        callback: per solver step ``{"i", "sigma", "sigma_next", "denoised"}`` with
            ``denoised`` the merged whole-video x0-prediction.
        chunk_input_hook: called with a :class:`ChunkInput` for every window of every step.

    Returns:
        The refined latents, shaped and placed like ``latents``.
    """
    frame_dim = _check_latents(latents, frame_dim)
    if blend not in BLEND_MODES:
        raise ValueError(f"blend must be one of {BLEND_MODES}, got {blend!r}")
    if variant not in OFFSET_VARIANTS:
        raise ValueError(f"variant must be one of {OFFSET_VARIANTS}, got {variant!r}")
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be an integer >= 1, got {max_batch!r}")
    num_frames = latents.shape[frame_dim]
    windows = refiner_plan(num_frames, chunk, overlap)
    overlaps = window_overlaps(windows)
    if sigmas is None:
        sigmas = refiner_sampling_sigmas()
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
    if sigmas.numel() < 2 or not torch.isfinite(sigmas).all() or (sigmas[1:] > sigmas[:-1]).any():
        raise ValueError("sigmas must be at least 2 finite, non-increasing values")
    device = torch.device(device) if device is not None else latents.device
    store = latents.device
    step_gen = make_generator(derive_seed(seed, _STREAM_STEP_NOISE))
    blend_gen = make_generator(derive_seed(seed, _STREAM_BLEND))
    init_gen = make_generator(derive_seed(seed, _STREAM_INIT_NOISE))
    s0 = float(sigmas[0])
    step_counter = [0]

    def evaluate(window_inputs: list[Tensor], sigma: Tensor) -> list[Tensor]:
        """Run the denoiser over windows, ``max_batch`` at a time, results on ``store``."""
        step = step_counter[0]
        if chunk_input_hook is not None:
            for w, xw in enumerate(window_inputs):
                chunk_input_hook(ChunkInput(step, w, windows[w], float(sigma), xw))
        preds: list[Tensor] = []
        for b in range(0, len(window_inputs), max_batch):
            group = window_inputs[b:b + max_batch]
            xb = torch.cat(group, dim=0).to(device)
            out = denoise_fn(xb, sigma).to(store, latents.dtype)
            preds.extend(out.chunk(len(group), dim=0))
        step_counter[0] += 1
        return preds

    def offsets() -> Tensor | None:
        if blend != "randomized":
            return None
        return draw_blend_offsets(len(overlaps), overlaps, blend_gen, variant)

    def step_callback(info: dict[str, Any], denoised_video: Tensor) -> None:
        if callback is not None:
            callback({"i": info["i"], "sigma": info["sigma"], "sigma_next": info["sigma_next"],
                      "denoised": denoised_video})

    if shared_noise:
        noise = randn_like_from(latents, init_gen)
        x = sdedit_start(latents, noise, s0, official_init_scaling)

        def merged_denoiser(xv: Tensor, sigma: Tensor) -> Tensor:
            inputs = [xv.narrow(frame_dim, s, e - s) for s, e in windows]
            preds = evaluate(inputs, sigma)
            return fuse_windows(preds, windows, num_frames, blend, offsets(), frame_dim)

        return sample_dpmpp_2m_sde(
            merged_denoiser, x, sigmas, eta=eta, s_noise=s_noise, generator=step_gen,
            callback=lambda info: step_callback(info, info["denoised"]),
        )

    # Independent windows: the state is the stack of all windows' own latents, one trajectory
    # each (own initial noise, own per-step noise, own predictions); merged once at the end.
    stacked = torch.stack([latents.narrow(frame_dim, s, e - s) for s, e in windows])
    noise = randn_like_from(stacked, init_gen)
    x = sdedit_start(stacked, noise, s0, official_init_scaling)

    def stacked_denoiser(xs: Tensor, sigma: Tensor) -> Tensor:
        return torch.stack(evaluate(list(xs.unbind(0)), sigma))

    def preview(info: dict[str, Any]) -> None:
        if callback is not None:
            merged = fuse_windows(list(info["denoised"].unbind(0)), windows, num_frames, "none",
                                  None, frame_dim)
            step_callback(info, merged)

    final = sample_dpmpp_2m_sde(
        stacked_denoiser, x, sigmas, eta=eta, s_noise=s_noise, generator=step_gen,
        callback=preview,
    )
    return fuse_windows(list(final.unbind(0)), windows, num_frames, blend, offsets(), frame_dim)
