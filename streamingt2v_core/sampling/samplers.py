"""Samplers as plain functions over a model callable and a list of timesteps or sigmas.

Written in the style of k-diffusion's ``sample_*`` functions: no globals, a ``callback`` dict
per step (for progress, previews and interruption), the randomness from an explicit
``torch.Generator`` so that every run is reproducible.

* :func:`sample_ddim`: DDIM (Song et al. 2021) with ``eta`` (eta = 1 is the stochastic,
  DDPM-like variant the StreamingT2V extender uses), over an epsilon-prediction model.
* :func:`sample_dpmpp_2m_sde`: DPM-Solver++(2M) SDE (Lu et al. 2022), midpoint variant, over a
  k-diffusion denoiser ``D(x, sigma) -> x0``; used by the refiner.
* :func:`cfg_model`, :func:`cfg_combine`: classifier-free guidance with the guidance rescale of
  Lin et al. 2023 ("Common Diffusion Noise Schedules and Sample Steps are Flawed").
* :func:`v_prediction_denoiser`: turns a v-prediction model over VP states and integer
  timesteps into a k-diffusion denoiser.
* :func:`derive_seed`, :func:`make_generator`, :func:`randn_like_from`: deterministic seeding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .schedules import sigma_to_timestep, vp_coefficients

__all__ = [
    "Denoiser",
    "EpsilonModel",
    "derive_seed",
    "make_generator",
    "randn_like_from",
    "cfg_combine",
    "cfg_model",
    "v_prediction_denoiser",
    "sample_ddim",
    "sample_dpmpp_2m_sde",
]

#: ``model(x, t) -> epsilon`` with ``t`` a timestep tensor (scalar or one per batch item).
EpsilonModel = Callable[[Tensor, Tensor], Tensor]
#: ``denoiser(x, sigma) -> x0`` in k-diffusion form (``x = x0 + sigma * noise``).
Denoiser = Callable[[Tensor, Tensor], Tensor]
StepCallback = Callable[[dict[str, Any]], None]

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _fmix64(z: int) -> int:
    """SplitMix64's finaliser: a bijection of 64-bit integers that mixes every input bit into every output bit."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def derive_seed(base_seed: int, *keys: int) -> int:
    """A seed in ``[0, 2**63)`` derived from ``base_seed`` and integer ``keys``.

    The base seed is mixed fully (SplitMix64's finaliser) before any key is added, and each key
    is mixed on its own before it is combined: so ``(seed, k)`` and ``(seed + 1, k - 1)`` give
    unrelated seeds. (Version 1 added the key to the raw state before the first mix, so base
    seed 34's chunk 1 was base seed 33's chunk 2: neighbouring seeds shared their noise, shifted
    by one chunk.) The result depends only on the integers (not on any RNG state, platform or
    device): ``derive_seed(seed, chunk_index)`` gives every extension chunk its own stream, and
    a resumed run re-derives exactly the same seeds. js/runs.js mirrors this function.
    """
    state = _fmix64((int(base_seed) + _GOLDEN) & _MASK64)
    for key in keys:
        state = _fmix64(state ^ _fmix64((int(key) + 2 * _GOLDEN) & _MASK64))
    return state >> 1


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    return torch.Generator(device=device).manual_seed(int(seed))


def randn_like_from(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``x``, drawn on the generator's device then moved.

    Drawing on the generator's device (a CPU generator by default) makes the noise identical
    whatever device ``x`` lives on.
    """
    device = generator.device if generator is not None else x.device
    noise = torch.randn(x.shape, generator=generator, device=device, dtype=torch.float32)
    return noise.to(device=x.device, dtype=x.dtype)


def cfg_combine(
    cond: Tensor, uncond: Tensor, guidance_scale: float, guidance_rescale: float = 0.0
) -> Tensor:
    """Classifier-free guidance ``u + w (c - u)``, optionally rescaled towards ``std(c)``.

    With ``guidance_rescale = phi`` the guided output is multiplied by
    ``phi * std(c) / std(out) + (1 - phi)``, std over all elements of each batch item (the
    official refiner uses phi = 0.2, std over the whole chunk).
    """
    out = uncond + guidance_scale * (cond - uncond)
    if guidance_rescale:
        dims = tuple(range(1, out.dim()))
        std_c = cond.float().std(dim=dims, keepdim=True)
        std_o = out.float().std(dim=dims, keepdim=True)
        factor = guidance_rescale * std_c / std_o + (1.0 - guidance_rescale)
        out = out * factor.to(out.dtype)
    return out


def cfg_model(
    cond_fn: Callable[[Tensor, Tensor], Tensor],
    uncond_fn: Callable[[Tensor, Tensor], Tensor] | None,
    guidance_scale: float,
    guidance_rescale: float = 0.0,
) -> Callable[[Tensor, Tensor], Tensor]:
    """Wrap a conditional and an unconditional model ``f(x, t)`` into one guided model.

    ``uncond_fn=None`` or ``guidance_scale == 1`` (with no rescale) returns ``cond_fn``.
    """
    if uncond_fn is None or (guidance_scale == 1.0 and not guidance_rescale):
        return cond_fn

    def guided(x: Tensor, t: Tensor) -> Tensor:
        return cfg_combine(cond_fn(x, t), uncond_fn(x, t), guidance_scale, guidance_rescale)

    return guided


def v_prediction_denoiser(
    model: Callable[[Tensor, Tensor], Tensor],
    alphas_cumprod: Tensor,
    round_timesteps: bool = True,
) -> Denoiser:
    """A k-diffusion denoiser ``D(x, s) -> x0`` from a v-prediction model ``model(x_vp, t)``.

    ``x = x0 + s eps`` maps to the VP state ``x_vp = alpha x`` (``alpha = 1/sqrt(1 + s^2)``,
    the ``c_in`` scaling), the model gets the timestep of ``s`` (rounded to an integer, as the
    official refiner does), and ``x0 = alpha x_vp - sigma_vp v``.
    """

    def denoise(x: Tensor, sigma: Tensor) -> Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
        t = sigma_to_timestep(sigma, alphas_cumprod, round_to_int=round_timesteps)
        alpha, sigma_vp = vp_coefficients(sigma)
        view = (-1,) + (1,) * (x.dim() - 1)
        a = alpha.to(x.device, x.dtype).view(view)
        sv = sigma_vp.to(x.device, x.dtype).view(view)
        x_vp = x * a
        t_in = t.to(x.device, torch.float32)
        if t_in.numel() == 1:
            t_in = t_in.expand(x.shape[0])
        v = model(x_vp, t_in)
        return a * x_vp - sv * v.to(x.dtype)

    return denoise


@torch.no_grad()
def sample_ddim(
    model: EpsilonModel,
    x: Tensor,
    timesteps: Tensor,
    alphas_cumprod: Tensor,
    eta: float = 1.0,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    final_alpha_cumprod: float | None = None,
) -> Tensor:
    """DDIM sampling (Song et al. 2021, Eq. 12) from pure noise ``x`` over ``timesteps``.

    Args:
        model: ``model(x_t, t) -> epsilon`` (apply guidance inside, e.g. with :func:`cfg_model`).
        x: the initial noise (``init_noise_sigma`` is 1 for DDIM).
        timesteps: descending integer timesteps (e.g. :func:`.schedules.ddim_timesteps`); the
            step after ``t`` goes to the next entry, the last one to ``final_alpha_cumprod``.
        alphas_cumprod: the training schedule's ``abar`` table.
        eta: 0 deterministic DDIM, 1 DDPM-like variance (StreamingT2V's extender).
        generator: source of the per-step noise when ``eta > 0``.
        callback: called after every step with ``{"i", "t", "x", "denoised"}``.
        final_alpha_cumprod: ``abar`` after the last step; default ``alphas_cumprod[0]``
            (diffusers' ``set_alpha_to_one=False``, the ModelScope config).
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    ac = alphas_cumprod.to(torch.float64)
    final = float(ac[0]) if final_alpha_cumprod is None else float(final_alpha_cumprod)
    ts = [int(t) for t in torch.as_tensor(timesteps).reshape(-1).tolist()]
    for i, t in enumerate(ts):
        a_t = float(ac[t])
        a_prev = float(ac[ts[i + 1]]) if i + 1 < len(ts) else final
        t_in = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        eps = model(x, t_in).to(x.dtype)
        x0 = (x - math.sqrt(1.0 - a_t) * eps) / math.sqrt(a_t)
        var = (1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev)
        std = eta * math.sqrt(max(var, 0.0))
        direction = math.sqrt(max(1.0 - a_prev - std * std, 0.0)) * eps
        x = math.sqrt(a_prev) * x0 + direction
        if std > 0:
            x = x + std * randn_like_from(x, generator)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "denoised": x0})
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(
    model: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    eta: float = 1.0,
    s_noise: float = 1.0,
    noise_sampler: Callable[[Tensor, Tensor], Tensor] | None = None,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
) -> Tensor:
    """DPM-Solver++(2M) SDE (Lu et al. 2022), midpoint variant, in k-diffusion form.

    With ``lambda = -log(sigma)`` and ``h = lambda_next - lambda``, one step is the exact
    solution of the SDE's linear part plus a second-order (multistep) correction of the data
    prediction:

        x' = (s'/s) e^{-eta h} x + (1 - e^{-(1+eta) h}) D
             + 1/2 (1 - e^{-(1+eta) h}) (h / h_last) (D - D_last)
             + s' sqrt(1 - e^{-2 eta h}) s_noise z

    and a step to sigma 0 returns the last data prediction.

    Args:
        model: the denoiser ``D(x, sigma) -> x0``.
        x: the initial state, ``x0 + sigmas[0] * noise`` (SDEdit) or ``sigmas[0] * noise``.
        sigmas: descending sigmas, usually ending with 0.
        noise_sampler: ``f(sigma, sigma_next) -> z`` standard normal like ``x``; by default
            fresh noise over the whole ``x`` from ``generator``, i.e. deterministic per step
            and (for a whole-video ``x``) shared by every window that covers a frame.
        callback: called after every model evaluation with ``{"i", "sigma", "sigma_next",
            "x", "denoised"}``.
    """
    if noise_sampler is None:
        def noise_sampler(sigma: Tensor, sigma_next: Tensor) -> Tensor:
            return randn_like_from(x, generator)

    sig = [float(s) for s in torch.as_tensor(sigmas).reshape(-1).tolist()]
    old_denoised: Tensor | None = None
    h_last: float | None = None
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        denoised = model(x, torch.tensor(s, dtype=torch.float64))
        if callback is not None:
            callback({"i": i, "sigma": s, "sigma_next": s_next, "x": x, "denoised": denoised})
        if s_next == 0.0:
            x = denoised
            break
        h = math.log(s) - math.log(s_next)
        decay = -math.expm1(-(1.0 + eta) * h)  # 1 - e^{-(1+eta) h}
        x = (s_next / s) * math.exp(-eta * h) * x + decay * denoised
        if old_denoised is not None and h_last is not None:
            x = x + 0.5 * decay * (h / h_last) * (denoised - old_denoised)
        if eta > 0 and s_noise > 0:
            scale = s_next * math.sqrt(-math.expm1(-2.0 * eta * h)) * s_noise
            x = x + scale * noise_sampler(torch.tensor(s), torch.tensor(s_next))
        old_denoised, h_last = denoised, h
    return x
