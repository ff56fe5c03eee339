"""Sampling for StreamingT2V, written against a denoiser callable (no model code, no ComfyUI).

* :mod:`.plans`: the extender's chunk plan and the refiner's window plan.
* :mod:`.schedules`: the ModelScope DDPM schedule and the refiner's zero-terminal-SNR schedule,
  with k-diffusion sigma conversions.
* :mod:`.samplers`: DDIM (eta, CFG) and DPM-Solver++(2M) SDE as plain functions; seeding.
* :mod:`.blending`: randomized / linear / naive merging of per-window predictions.
* :mod:`.extension`: the autoregressive extension loop (resumable).
* :mod:`.refine`: the refiner (SDEdit + shared noise + blending at every solver step).
* :mod:`.synthetic`: a closed-form optimal denoiser for the seam benchmark.
"""

from .blending import draw_blend_offsets, fuse_windows, linear_blend_weights, randomized_blend
from .extension import ChunkProgress, ChunkSampler, chunk_seed, extend_video, from_storage, to_storage
from .plans import ChunkSpec, ExtensionPlan, extension_plan, refiner_plan, window_overlaps
from .refine import ChunkInput, refine_video, sdedit_start
from .samplers import (
    cfg_combine,
    cfg_model,
    derive_seed,
    make_generator,
    randn_like_from,
    sample_ddim,
    sample_dpmpp_2m_sde,
    v_prediction_denoiser,
)
from .schedules import (
    alphas_cumprod_to_sigmas,
    ddim_timesteps,
    modelscope_alphas_cumprod,
    modelscope_betas,
    refiner_alphas_cumprod,
    refiner_betas,
    refiner_sampling_sigmas,
    refiner_trailing_timesteps,
    refiner_vp_sigmas,
    sigma_to_timestep,
    sigmas_to_alphas_cumprod,
    timestep_to_sigma,
    vp_coefficients,
)

__all__ = [
    "ChunkInput", "ChunkProgress", "ChunkSampler", "ChunkSpec", "ExtensionPlan",
    "alphas_cumprod_to_sigmas", "cfg_combine", "cfg_model", "chunk_seed", "ddim_timesteps",
    "derive_seed", "draw_blend_offsets", "extend_video", "extension_plan", "from_storage",
    "fuse_windows", "linear_blend_weights", "make_generator", "modelscope_alphas_cumprod",
    "modelscope_betas", "randn_like_from", "randomized_blend", "refine_video",
    "refiner_alphas_cumprod", "refiner_betas", "refiner_plan", "refiner_sampling_sigmas",
    "refiner_trailing_timesteps", "refiner_vp_sigmas", "sample_ddim", "sample_dpmpp_2m_sde",
    "sdedit_start", "sigma_to_timestep", "sigmas_to_alphas_cumprod", "timestep_to_sigma",
    "to_storage", "v_prediction_denoiser", "vp_coefficients", "window_overlaps",
]
