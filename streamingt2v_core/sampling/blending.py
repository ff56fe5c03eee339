"""Merging per-window predictions into one whole-video tensor (randomized blending).

StreamingT2V's refiner denoises overlapping windows of the video and, at every solver step,
merges each window's x0-prediction into one global prediction. Three modes:

* ``"randomized"`` (the paper's randomized blending): per boundary and per step, draw an offset
  ``r``; in the overlap of windows ``i-1`` and ``i``, frames before ``start_i + r`` keep what
  was there (the left window) and frames from ``start_i + r`` on take the right window. The cut
  moves every step, so no fixed seam survives the sampling.
* ``"linear"``: a crossfade; every window weighs its frames with ramps over its overlaps and the
  result is the normalised weighted sum.
* ``"none"``: the naive baseline; windows are written in order, each overwriting the overlap.

Offsets. The official code (``StreamingModelscope``) draws ``r`` uniformly from
``{0, ..., O-1}``, so with 0-based overlap frame ``f``, ``P(frame f from the left) =
P(r > f) = (O - 1 - f) / O`` and the last overlap frame always comes from the right window.
The paper states ``r`` in ``{0, ..., O}``, i.e. ``P(left) = 1 - f' / (O + 1)`` for the
1-based frame ``f' = f + 1``. We follow the code by default (``variant="code"``) and offer the
paper's rule as ``variant="paper"``.

Overlaps may differ per boundary (the refiner plan aligns its last window to the end of the
video, so its overlap is larger than ``O``); offsets are drawn per boundary in that boundary's
own range. If three windows overlap (possible only around the end-aligned last window), frames
before a cut keep whatever the earlier windows wrote.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .plans import window_overlaps

__all__ = ["BLEND_MODES", "OFFSET_VARIANTS", "draw_blend_offsets", "fuse_windows",
           "randomized_blend", "linear_blend_weights"]

BLEND_MODES = ("randomized", "linear", "none")
OFFSET_VARIANTS = ("code", "paper")


def draw_blend_offsets(
    num_boundaries: int,
    overlap: int | Sequence[int] | Tensor,
    generator: torch.Generator | None = None,
    variant: str = "code",
) -> Tensor:
    """Draw one randomized-blending offset per window boundary (a CPU ``int64`` tensor).

    Args:
        num_boundaries: number of window boundaries (windows - 1), >= 0.
        overlap: the overlap of every boundary (an int), or one overlap per boundary.
        generator: a CPU ``torch.Generator`` (deterministic offsets); None uses the global RNG.
        variant: ``"code"`` draws ``r`` uniformly from ``{0..O-1}`` (official code, default);
            ``"paper"`` from ``{0..O}`` (paper's text).
    """
    if isinstance(num_boundaries, bool) or not isinstance(num_boundaries, int) or num_boundaries < 0:
        raise ValueError(f"num_boundaries must be an integer >= 0, got {num_boundaries!r}")
    if variant not in OFFSET_VARIANTS:
        raise ValueError(f"variant must be one of {OFFSET_VARIANTS}, got {variant!r}")
    overlaps = torch.as_tensor(overlap, dtype=torch.int64).reshape(-1)
    if overlaps.numel() == 1:
        overlaps = overlaps.expand(num_boundaries)
    if overlaps.numel() != num_boundaries:
        raise ValueError(
            f"overlap must be an int or hold one value per boundary ({num_boundaries}), "
            f"got {overlaps.numel()} values"
        )
    if num_boundaries and int(overlaps.min()) < 1:
        raise ValueError(f"overlap must be >= 1 at every boundary, got {overlaps.tolist()}")
    if num_boundaries == 0:
        return torch.zeros(0, dtype=torch.int64)
    high = overlaps + (1 if variant == "paper" else 0)  # exclusive upper bound of r
    u = torch.rand(num_boundaries, generator=generator, dtype=torch.float64)
    return torch.minimum((u * high).floor().to(torch.int64), high - 1)


def linear_blend_weights(windows: list[tuple[int, int]], num_frames: int) -> list[Tensor]:
    """Per-window crossfade weights (1-D float tensors), ramping over each overlap.

    For a window with left overlap ``Ol`` and right overlap ``Or`` the weight of its frame at
    position ``k`` is ``min(1, (k + 1) / (Ol + 1), (n - k) / (Or + 1))``; with two windows
    overlapping by ``O`` the two weights of every overlap frame sum to 1.
    """
    overlaps = window_overlaps(windows)
    weights = []
    for i, (s, e) in enumerate(windows):
        n = e - s
        left = overlaps[i - 1] if i > 0 else 0
        right = overlaps[i] if i < len(overlaps) else 0
        k = torch.arange(n, dtype=torch.float64)
        w = torch.ones(n, dtype=torch.float64)
        w = torch.minimum(w, (k + 1) / (left + 1))
        w = torch.minimum(w, (n - k) / (right + 1))
        weights.append(w)
    return weights


def _check_windows(
    predictions: list[Tensor], windows: list[tuple[int, int]], num_frames: int, frame_dim: int
) -> None:
    if len(predictions) != len(windows) or not windows:
        raise ValueError(
            f"predictions and windows must be non-empty lists of the same length, got "
            f"{len(predictions)} predictions and {len(windows)} windows"
        )
    if windows[0][0] != 0 or windows[-1][1] != num_frames:
        raise ValueError(
            f"windows must cover frames [0, num_frames={num_frames}), got {windows[0]}..{windows[-1]}"
        )
    window_overlaps(windows)  # sorted, contiguous, not nested
    for i, (p, (s, e)) in enumerate(zip(predictions, windows)):
        if p.shape[frame_dim] != e - s:
            raise ValueError(
                f"predictions[{i}] has {p.shape[frame_dim]} frames along frame_dim={frame_dim}, "
                f"but windows[{i}] = {(s, e)} spans {e - s}"
            )


def randomized_blend(
    predictions: list[Tensor],
    windows: list[tuple[int, int]],
    num_frames: int,
    offsets: Tensor,
    frame_dim: int = 2,
) -> Tensor:
    """Randomized blending: window ``i`` overwrites frames ``[start_i + offsets[i-1], end_i)``."""
    return fuse_windows(predictions, windows, num_frames, "randomized", offsets, frame_dim)


def fuse_windows(
    predictions: list[Tensor],
    windows: list[tuple[int, int]],
    num_frames: int,
    mode: str = "randomized",
    offsets: Tensor | None = None,
    frame_dim: int = 2,
) -> Tensor:
    """Merge per-window predictions into one tensor of ``num_frames`` frames along ``frame_dim``.

    Args:
        predictions: one tensor per window, equal in every dim but ``frame_dim``, where it has
            the window's length.
        windows: ``[start, end)`` windows covering ``[0, num_frames)``, sorted, overlapping or
            adjacent (e.g. :func:`..plans.refiner_plan`).
        mode: ``"randomized"``, ``"linear"`` or ``"none"`` (see the module docstring).
        offsets: for ``"randomized"``, one offset per boundary (``len(windows) - 1``), each in
            ``[0, overlap_b]`` (from :func:`draw_blend_offsets`); ignored otherwise.
        frame_dim: the frame axis (2 for ``[B, C, T, H, W]`` latents, 0 for ``[T, H, W, C]``).

    Returns:
        The merged tensor, on the device and with the dtype of ``predictions[0]``.
    """
    if mode not in BLEND_MODES:
        raise ValueError(f"mode must be one of {BLEND_MODES}, got {mode!r}")
    frame_dim = frame_dim % predictions[0].dim() if predictions else frame_dim
    _check_windows(predictions, windows, num_frames, frame_dim)
    ref = predictions[0]
    shape = list(ref.shape)
    shape[frame_dim] = num_frames
    out = ref.new_zeros(shape)
    overlaps = window_overlaps(windows)

    if mode == "linear":
        norm = torch.zeros(num_frames, dtype=torch.float64)
        view = [1] * ref.dim()
        view[frame_dim] = -1
        for p, (s, e), w in zip(predictions, windows, linear_blend_weights(windows, num_frames)):
            out.narrow(frame_dim, s, e - s).add_(p * w.to(p.device, p.dtype).view(view))
            norm[s:e] += w
        return out / norm.to(out.device, out.dtype).view(view)

    if mode == "randomized":
        if offsets is None:
            raise ValueError("offsets must be given for mode='randomized' (see draw_blend_offsets)")
        offsets = torch.as_tensor(offsets).reshape(-1)
        if offsets.numel() != len(overlaps):
            raise ValueError(
                f"offsets must hold one value per boundary ({len(overlaps)}), got {offsets.numel()}"
            )
        for b, (r, o) in enumerate(zip(offsets.tolist(), overlaps)):
            if not 0 <= r <= o:
                raise ValueError(f"offsets[{b}] must be in [0, {o}] (the overlap), got {r}")

    for i, (p, (s, e)) in enumerate(zip(predictions, windows)):
        skip = int(offsets[i - 1]) if (mode == "randomized" and i > 0) else 0
        out.narrow(frame_dim, s + skip, e - s - skip).copy_(p.narrow(frame_dim, skip, e - s - skip))
    return out
