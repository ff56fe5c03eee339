"""A closed-form optimal denoiser and a synthetic long video for the seam benchmark.

No trained weights are needed to see why the refiner needs shared noise and randomized
blending. Take a small dataset of short clips ``d_1..d_K`` (a fixed coarse image plus a fine
texture drifting at constant speed, left or right, turning around every few frames) and the
uniform distribution over them. For ``x = x0 + s eps`` the exact denoiser is the posterior mean

    E[x0 | x] = sum_k softmax_k(-||x - d_k||^2 / (2 s^2)) d_k,

so :class:`OptimalDenoiser` is the best any refiner could do on this data. The "low quality"
video to refine is the coarse image alone: its fine detail is not in the input, so each window
of the refiner has to invent it (like MS-Vid2Vid-XL inventing detail on an upscaled video), and
windows that invent it independently disagree where they meet. :func:`seam_score` measures the
jumps: the mean frame-to-frame difference where windows meet over the mean difference elsewhere.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .plans import window_overlaps

__all__ = [
    "moving_pattern_dataset",
    "coarse_image",
    "synthetic_long_video",
    "OptimalDenoiser",
    "frame_differences",
    "seam_score",
    "detail_ratio",
    "SEAM_ABLATION",
    "run_seam_ablation",
]


def coarse_image(channels: int = 1, height: int = 8, width: int = 8) -> Tensor:
    """A smooth fixed image ``[C, H, W]`` (the part of the video the input determines)."""
    y = torch.linspace(-1, 1, height, dtype=torch.float64).view(1, -1, 1)
    x = torch.linspace(-1, 1, width, dtype=torch.float64).view(1, 1, -1)
    c = torch.arange(channels, dtype=torch.float64).view(-1, 1, 1)
    return 0.5 * torch.cos(0.5 * math.pi * (x * (1 + 0.3 * c) + 0.5 * y))


def _texture(phases: Tensor, channels: int, height: int, width: int, amplitude: float) -> Tensor:
    """A plane wave ``A sin(2 pi (x / W + y / 4H) + phase_t)`` per frame: ``[C, T, H, W]``."""
    x = torch.arange(width, dtype=torch.float64).view(1, 1, -1)
    y = torch.arange(height, dtype=torch.float64).view(1, -1, 1)
    wave = amplitude * torch.sin(2 * math.pi * (x / width + 0.25 * y / height) + phases.view(-1, 1, 1))
    return wave.unsqueeze(0).expand(channels, -1, -1, -1)


def moving_pattern_dataset(
    num_frames: int = 24,
    channels: int = 1,
    height: int = 8,
    width: int = 8,
    num_phases: int = 16,
    frames_per_cycle: int = 32,
    segment_frames: int = 8,
    amplitude: float = 0.6,
) -> Tensor:
    """The dataset ``[K, C, T, H, W]`` (float64): coarse image + a drifting texture.

    The texture drifts at one cycle per ``frames_per_cycle`` frames, to the left or to the
    right, and may turn around every ``segment_frames`` frames: the dataset holds every start
    phase ``2 pi k / num_phases`` and every sequence of directions, so
    ``K = num_phases * 2 ** ceil(num_frames / segment_frames)``. The phase is continuous, so
    every clip has the same frame-to-frame difference everywhere. Because a direction choice
    only constrains its own segment, a window can agree with its left neighbour on the shared
    frames and still choose freely elsewhere: what a clip looks like is local in time, as in
    real video. With the defaults, a texture moves by a quarter cycle per segment (a multiple
    of the phase grid), so the refiner's windows (stride 16) can always continue each other
    seamlessly.
    """
    if min(num_frames, num_phases, frames_per_cycle, segment_frames) < 1:
        raise ValueError(
            "num_frames, num_phases, frames_per_cycle and segment_frames must all be >= 1"
        )
    base = coarse_image(channels, height, width).unsqueeze(1)  # [C, 1, H, W]
    v = 2 * math.pi / frames_per_cycle
    num_segments = -(-num_frames // segment_frames)
    segment_of_frame = torch.arange(num_frames) // segment_frames
    clips = []
    for k in range(num_phases):
        for code in range(2 ** num_segments):
            signs = torch.tensor([1.0 if (code >> s) & 1 else -1.0 for s in range(num_segments)],
                                 dtype=torch.float64)
            steps = v * signs[segment_of_frame]  # phase step taken *after* each frame
            phases = 2 * math.pi * k / num_phases + torch.cat(
                [steps.new_zeros(1), steps[:-1].cumsum(0)]
            )
            clips.append(base + _texture(phases, channels, height, width, amplitude))
    return torch.stack(clips)


def synthetic_long_video(
    num_frames: int, batch: int = 1, channels: int = 1, height: int = 8, width: int = 8
) -> Tensor:
    """The video to refine, ``[B, C, T, H, W]`` float32: the coarse image in every frame.

    The fine texture is missing, so the refiner must invent it consistently along the video.
    """
    base = coarse_image(channels, height, width).to(torch.float32)
    return base.view(1, channels, 1, height, width).expand(batch, -1, num_frames, -1, -1).clone()


class OptimalDenoiser:
    """The exact denoiser ``E[x0 | x0 + s eps = x]`` for ``x0`` uniform over a dataset of clips.

    Called as a k-diffusion denoiser ``D(x, sigma)`` with ``x`` ``[N, C, T, H, W]``; a window
    shorter than the clips uses the clips' first ``T`` frames (the exact marginal).
    Also counts its calls and the windows it saw (for tests and benchmarks).
    """

    def __init__(self, clips: Tensor):
        if clips.dim() != 5:
            raise ValueError(f"clips must be [K, C, T, H, W], got shape {tuple(clips.shape)}")
        self.clips = clips.to(torch.float64)
        self.calls = 0
        self.windows_seen = 0

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        k, c, t, h, w = self.clips.shape
        if x.dim() != 5 or tuple(x.shape[1:2]) + tuple(x.shape[3:]) != (c, h, w) or x.shape[2] > t:
            raise ValueError(
                f"x must be [N, {c}, <= {t}, {h}, {w}], got shape {tuple(x.shape)}"
            )
        self.calls += 1
        self.windows_seen += x.shape[0]
        clips = self.clips[:, :, : x.shape[2]].to(x.device).flatten(1)  # [K, D]
        xf = x.to(torch.float64).flatten(1)  # [N, D]
        s = float(torch.as_tensor(sigma).reshape(-1)[0])
        # Squared distances in float64 (the logits are divided by 2 s^2, down to s ~ 0.1).
        dist2 = (xf * xf).sum(1, keepdim=True) - 2 * xf @ clips.T + (clips * clips).sum(1)
        if s <= 0:
            weights = torch.nn.functional.one_hot(dist2.argmin(1), k).to(torch.float64)
        else:
            weights = torch.softmax(-dist2 / (2 * s * s), dim=1)
        return (weights @ clips).view(x.shape).to(x.dtype)


def frame_differences(video: Tensor, frame_dim: int = 2) -> Tensor:
    """Mean absolute difference between consecutive frames: ``T - 1`` values (float64)."""
    v = video.to(torch.float64).movedim(frame_dim, 0)
    return (v[1:] - v[:-1]).abs().flatten(1).mean(1)


def seam_score(video: Tensor, windows: list[tuple[int, int]], frame_dim: int = 2) -> float:
    """Mean frame-to-frame difference where windows meet, over the mean elsewhere (1 = seamless).

    "Where windows meet" is every consecutive pair in which the output may switch from one
    window to the next, whatever the blend mode: for the boundary of windows ``i-1`` and ``i``
    the pairs ``(f, f+1)`` with ``start_i - 1 <= f <= end_{i-1} - 1`` (the pair entering the
    overlap, the pairs inside it, and the pair leaving it). All other pairs are "inside chunks".
    On a video drifting at constant speed, a seamless result scores 1.0.
    """
    diffs = frame_differences(video, frame_dim)
    boundary = torch.zeros(diffs.numel(), dtype=torch.bool)
    window_overlaps(windows)
    for (_, e0), (s1, _) in zip(windows[:-1], windows[1:]):
        boundary[max(s1 - 1, 0): e0] = True
    if boundary.all() or not boundary.any():
        raise ValueError("windows must leave pairs both at and away from their boundaries")
    return float(diffs[boundary].mean() / diffs[~boundary].mean())


def detail_ratio(
    video: Tensor, reference: Tensor, windows: list[tuple[int, int]], frame_dim: int = 2
) -> float:
    """Mean ``|video - reference|`` on overlap frames over the mean on the other frames.

    With ``reference`` the input (the coarse image), this is how much invented detail survives
    where windows overlap: a crossfade of two disagreeing windows averages their textures and
    scores below 1 (ghosting), which :func:`seam_score` alone would reward.
    """
    dev = (video.to(torch.float64) - reference.to(torch.float64)).abs().movedim(frame_dim, 0)
    per_frame = dev.flatten(1).mean(1)
    overlap = torch.zeros(per_frame.numel(), dtype=torch.bool)
    for (_, e0), (s1, _) in zip(windows[:-1], windows[1:]):
        overlap[s1:e0] = True
    if overlap.all() or not overlap.any():
        raise ValueError("windows must leave frames both inside and outside their overlaps")
    return float(per_frame[overlap].mean() / per_frame[~overlap].mean())


#: The ablation of the paper's Figure 4: (label, blend mode, shared noise, offset variant).
SEAM_ABLATION = (
    ("none, independent noise", "none", False, "code"),
    ("none, shared noise", "none", True, "code"),
    ("linear, shared noise", "linear", True, "code"),
    ("randomized, shared noise", "randomized", True, "code"),
    ("randomized (paper offsets), shared noise", "randomized", True, "paper"),
)


def run_seam_ablation(
    num_frames: int = 120,
    batch: int = 32,
    seed: int = 0,
    chunk: int = 24,
    overlap: int = 8,
    num_steps: int = 30,
    device: torch.device | str = "cpu",
    cases: tuple[tuple[str, str, bool, str], ...] = SEAM_ABLATION,
) -> dict[str, dict[str, float]]:
    """Refine the synthetic long video with every case of ``cases``.

    Returns ``{label: {"seam": seam_score, "detail": detail_ratio}}``.

    ``batch`` independent videos are refined at once (the score averages over them), with the
    refiner's real schedule (SDEdit from t' = 599, DPM-Solver++(2M) SDE, ``num_steps`` steps)
    and :class:`OptimalDenoiser` as the model.
    """
    # Imported here: refine imports nothing from this module, but keep the dependency one-way.
    from .plans import refiner_plan
    from .refine import refine_video
    from .schedules import refiner_sampling_sigmas

    clips = moving_pattern_dataset(num_frames=chunk).to(device)
    latents = synthetic_long_video(num_frames, batch=batch)
    windows = refiner_plan(num_frames, chunk, overlap)
    sigmas = refiner_sampling_sigmas(num_steps)
    scores = {}
    for label, blend, shared, variant in cases:
        out = refine_video(OptimalDenoiser(clips), latents, sigmas=sigmas, chunk=chunk,
                           overlap=overlap, blend=blend, variant=variant, shared_noise=shared,
                           seed=seed, max_batch=len(windows), device=device)
        scores[label] = {"seam": seam_score(out, windows),
                         "detail": detail_ratio(out, latents, windows)}
    return scores
