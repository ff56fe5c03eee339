"""Noise schedules of the two StreamingT2V models, and their k-diffusion ("EDM") sigmas.

* The extender (ModelScope T2V UNet3D) uses the DDPM ``scaled_linear`` schedule (betas from
  0.00085 to 0.012 over 1000 steps, epsilon prediction) and is sampled with DDIM, 50 steps,
  "leading" spacing with ``steps_offset = 1`` (981, 961, ..., 1), eta = 1.
* The refiner (MS-Vid2Vid-XL) uses a cosine-interpolated logSNR schedule (logSNR in [-15, 15],
  shift scales 2 -> 4 across t) rescaled to zero terminal SNR, v-prediction; it is sampled
  from t' = 599 with DPM-Solver++(2M) SDE over 30 "trailing" steps.

Conventions. A variance-preserving (VP) state is ``x_t = alpha_t x0 + sigma_t eps`` with
``alpha_t^2 = abar_t`` and ``sigma_t^2 = 1 - abar_t``. The k-diffusion (EDM) state is
``x = x0 + s eps = x_t / alpha_t`` with ``s = sigma_t / alpha_t = sqrt((1 - abar) / abar)``;
this is what the host's samplers and ``ModelSamplingDiscrete`` use. Between integer timesteps,
sigmas are interpolated linearly in ``log s`` (as the host does), and a sigma maps back to a
fractional timestep by the inverse of that interpolation.

All schedule tables are float64 tensors on the CPU; cast them where they are used.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "NUM_TRAIN_TIMESTEPS",
    "modelscope_betas",
    "modelscope_alphas_cumprod",
    "ddim_timesteps",
    "refiner_vp_sigmas",
    "refiner_alphas_cumprod",
    "refiner_betas",
    "refiner_trailing_timesteps",
    "refiner_sampling_sigmas",
    "alphas_cumprod_to_sigmas",
    "sigmas_to_alphas_cumprod",
    "timestep_to_sigma",
    "sigma_to_timestep",
    "vp_coefficients",
]

NUM_TRAIN_TIMESTEPS = 1000


# --------------------------------------------------------------------------- extender (DDPM)
def modelscope_betas(
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
) -> Tensor:
    """Betas of the ModelScope T2V schedule ("scaled_linear": linear in sqrt(beta))."""
    if num_train_timesteps < 2:
        raise ValueError(f"num_train_timesteps must be >= 2, got {num_train_timesteps}")
    return torch.linspace(
        math.sqrt(beta_start), math.sqrt(beta_end), num_train_timesteps, dtype=torch.float64
    ) ** 2


def modelscope_alphas_cumprod(num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> Tensor:
    """``abar_t = prod_{s<=t} (1 - beta_s)`` of the ModelScope schedule."""
    return torch.cumprod(1.0 - modelscope_betas(num_train_timesteps), dim=0)


def ddim_timesteps(
    num_steps: int = 50,
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
    steps_offset: int = 1,
) -> Tensor:
    """DDIM timesteps with "leading" spacing, descending (50 steps: 981, 961, ..., 21, 1).

    This is the spacing of diffusers' ``DDIMScheduler`` with the ModelScope config
    (``timestep_spacing="leading"``, ``steps_offset=1``).
    """
    if not isinstance(num_steps, int) or not 1 <= num_steps <= num_train_timesteps:
        raise ValueError(
            f"num_steps must be an integer in [1, {num_train_timesteps}], got {num_steps!r}"
        )
    step_ratio = num_train_timesteps // num_steps
    t = torch.arange(num_steps - 1, -1, -1, dtype=torch.long) * step_ratio + steps_offset
    return t.clamp(max=num_train_timesteps - 1)


# --------------------------------------------------------------------------- refiner (zero SNR)
def _logsnr_cosine(n: int, logsnr_min: float, logsnr_max: float, scale: float) -> Tensor:
    """Cosine logSNR schedule (index 0 cleanest), shifted by ``-2 log(scale)``."""
    t_min = math.atan(math.exp(-0.5 * logsnr_max))
    t_max = math.atan(math.exp(-0.5 * logsnr_min))
    u = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    return -2.0 * torch.log(torch.tan(t_min + u * (t_max - t_min))) - 2.0 * math.log(scale)


def refiner_vp_sigmas(
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
    logsnr_min: float = -15.0,
    logsnr_max: float = 15.0,
    scale_min: float = 2.0,
    scale_max: float = 4.0,
    zero_terminal_snr: bool = True,
) -> Tensor:
    """VP sigmas (``sqrt(1 - abar)``) of the MS-Vid2Vid-XL schedule, index 0 cleanest.

    logSNR is a cosine schedule shifted by scale 2 at t = 0 and by scale 4 at t = T, linearly
    interpolated across t; ``sigma = sqrt(sigmoid(-logSNR))``; then the sigmas are rescaled
    affinely so the smallest is kept and the largest becomes exactly 1 (zero terminal SNR).
    Gives sigma(0) = 0.0011, sigma(599) = 0.9724 (alpha 0.2335), sigma(999) = 1.
    """
    n = num_train_timesteps
    w = torch.linspace(1.0, 0.0, n, dtype=torch.float64)  # weight of the scale_min curve
    logsnr = w * _logsnr_cosine(n, logsnr_min, logsnr_max, scale_min) + (1 - w) * _logsnr_cosine(
        n, logsnr_min, logsnr_max, scale_max
    )
    sigmas = torch.sigmoid(-logsnr).sqrt()
    if zero_terminal_snr:
        lo, hi = sigmas.min(), sigmas.max()
        sigmas = lo + (1.0 - lo) * (sigmas - lo) / (hi - lo)
    return sigmas


def refiner_alphas_cumprod(num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> Tensor:
    """``abar_t = 1 - sigma_t^2`` of the refiner schedule; the last entry is exactly 0.

    (A host ``ModelSamplingDiscrete`` cannot take an exact 0: it clamps the last value, as the
    host's own zero-SNR rescale does with 4.8973e-08.)
    """
    return 1.0 - refiner_vp_sigmas(num_train_timesteps) ** 2


def refiner_betas(num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> Tensor:
    """Betas reproducing :func:`refiner_alphas_cumprod` (last beta is 1: zero terminal SNR)."""
    ac = refiner_alphas_cumprod(num_train_timesteps)
    prev = torch.cat([ac.new_ones(1), ac[:-1]])
    return 1.0 - ac / prev


def refiner_trailing_timesteps(
    num_steps: int = 30, t_start: int = 599, t_end: int = 0
) -> Tensor:
    """Fractional timesteps of the refiner's "trailing" discretisation, descending.

    The official solver takes ``num_steps + 1`` points from ``t_start`` down with stride
    ``(t_start - t_end + 1) / (num_steps + 1)`` (599, 579.65, ..., 37.71, 18.35), appends the
    final sigma 0 and drops the penultimate point, so ``num_steps`` points are kept
    (599 ... 37.71) and the last step goes straight to sigma 0.
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    if not 0 <= t_end < t_start:
        raise ValueError(f"t_start must be > t_end >= 0, got t_start={t_start}, t_end={t_end}")
    stride = (t_start - t_end + 1) / (num_steps + 1)
    k = torch.arange(num_steps, dtype=torch.float64)
    return t_start - k * stride


def refiner_sampling_sigmas(num_steps: int = 30, t_start: int = 599) -> Tensor:
    """k-diffusion sigmas of the refiner's SDEdit sampling: ``num_steps + 1`` values, last 0.

    Defaults give 4.1648, 3.857, 3.5755, ..., 0.1882, 0.1229, 0 (study, Appendix A).
    """
    t = refiner_trailing_timesteps(num_steps, t_start)
    s = timestep_to_sigma(t, refiner_alphas_cumprod())
    return torch.cat([s, s.new_zeros(1)])


# --------------------------------------------------------------------------- conversions
def alphas_cumprod_to_sigmas(alphas_cumprod: Tensor) -> Tensor:
    """k-diffusion sigmas ``sqrt((1 - abar) / abar)`` (``inf`` where ``abar == 0``)."""
    ac = alphas_cumprod.to(torch.float64)
    return ((1.0 - ac) / ac).sqrt()


def sigmas_to_alphas_cumprod(sigmas: Tensor) -> Tensor:
    """Inverse of :func:`alphas_cumprod_to_sigmas`: ``abar = 1 / (1 + s^2)``."""
    s = sigmas.to(torch.float64)
    return 1.0 / (1.0 + s * s)


def vp_coefficients(sigma: Tensor | float) -> tuple[Tensor, Tensor]:
    """``(alpha, sigma_vp)`` of the VP state for a k-diffusion sigma ``s``.

    ``alpha = 1 / sqrt(1 + s^2)`` (also the ``c_in`` input scaling) and ``sigma_vp = s alpha``.
    """
    s = torch.as_tensor(sigma)
    alpha = (1.0 + s * s).rsqrt()
    return alpha, s * alpha


def timestep_to_sigma(timestep: Tensor | float, alphas_cumprod: Tensor) -> Tensor:
    """k-diffusion sigma at a (fractional) timestep, linear interpolation in ``log sigma``."""
    log_s = alphas_cumprod_to_sigmas(alphas_cumprod).log()
    t = torch.as_tensor(timestep, dtype=torch.float64).clamp(0, len(log_s) - 1)
    lo = t.floor().long()
    hi = t.ceil().long()
    w = t - lo
    # Blend only where w > 0 so an exact integer timestep next to an infinite sigma stays finite.
    out = torch.where(w > 0, (1 - w) * log_s[lo] + w * log_s[hi], log_s[lo])
    return out.exp()


def sigma_to_timestep(
    sigma: Tensor | float, alphas_cumprod: Tensor, round_to_int: bool = False
) -> Tensor:
    """Inverse of :func:`timestep_to_sigma`: the fractional timestep of a k-diffusion sigma.

    Sigmas outside the table clamp to its ends. ``round_to_int=True`` rounds to the nearest
    integer timestep (what the official refiner feeds its UNet).
    """
    log_s = alphas_cumprod_to_sigmas(alphas_cumprod).log()
    finite = torch.isfinite(log_s)
    log_s = log_s[finite]
    ls = torch.as_tensor(sigma, dtype=torch.float64).log().clamp(log_s[0], log_s[-1])
    hi = torch.searchsorted(log_s, ls.reshape(-1).contiguous()).clamp(1, len(log_s) - 1)
    lo = hi - 1
    w = (ls.reshape(-1) - log_s[lo]) / (log_s[hi] - log_s[lo])
    t = (lo.to(torch.float64) + w.clamp(0, 1)).reshape(ls.shape)
    return t.round() if round_to_int else t
