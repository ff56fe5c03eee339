"""Colour-drift correction for the autoregressive extension (issue 13, ``color_match``).

Why. Each chunk of the extender is conditioned on the last 8 frames of the video so far. A chunk
whose colours come out a little off (warmer, darker, less saturated) hands that shift to the next
chunk as its conditioning, which adds its own: over 50 chunks small shifts add up to a visibly
different video. The official code does nothing about it (``off``, the default, keeps that).

Two corrections, both a per-channel affine map in CIELAB (exact CIE formulas, D65) applied to
the chunk's new frames (``cond..``) before they are stored, so the next chunk is conditioned on
corrected frames and no drift accumulates:

``overlap`` (recommended). Frames ``0..cond-1`` of every generated chunk *re-generate* the known
conditioning frames (the official code discards them). How their colours differ from the known
frames is exactly the shift this chunk introduced, measured on the same content; the map that
takes the re-generated frames' statistics (mean and spread per Lab channel) back to the known
frames' is applied to the new frames. A colour change the prompt asks for (a sunset, prompt travel
from day to night) happens *in the new frames relative to the conditioning frames* and is kept,
because the correction only undoes what the re-generation got wrong. Limits: it assumes the shift
is the same over the chunk's 16 frames (a shift that grows within the chunk is under-corrected),
and the chunk sampler must return the decoded re-generated frames ``0..cond-1`` (one more VAE
decode of 8 frames per chunk); a sampler that returns the conditioning frames unchanged there gets
a clear error rather than a silent no-op.

``anchor`` (the issue's first idea). The new frames' statistics are matched to the anchor chunk's
(the first chunk). Removes any drift, and needs nothing from the sampler, but it also removes every
real change of colour statistics: a scene that is meant to get darker or change its palette is
pulled back to the first chunk's. Use it for a long video of one unchanging scene.

Both limit the spread gain to ``[1 / max_gain, max_gain]`` (default 2) so that a near-flat chunk
cannot be blown up. ``bench/bench_color_drift.py`` measures residual drift and kept change per mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "COLOR_MATCH_MODES",
    "LabStats",
    "rgb_to_lab",
    "lab_to_rgb",
    "lab_statistics",
    "match_lab_statistics",
    "match_chunk_color",
    "color_matched_sampler",
]

COLOR_MATCH_MODES = ("off", "overlap", "anchor")
"""``off``: official behaviour; ``overlap``: undo the shift measured on the re-generated
conditioning frames; ``anchor``: match the anchor chunk's colour statistics."""

_MIN_STD = 1e-3  # Lab units: a flat channel has no spread to match


@dataclass(frozen=True)
class LabStats:
    """Mean and spread (standard deviation) of L, a, b over a set of frames' pixels."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


# sRGB (IEC 61966-2-1) primaries to CIE XYZ, D65, normalised by the white point so that Lab's
# reference white is RGB (1, 1, 1). The formulas are the CIE's; OpenCV's float conversion uses
# tables whose error (up to 0.6 Lab units forward, and a bias when converting back) would
# accumulate over chunks in a correction loop, so we compute exactly.
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_RGB_TO_XYZN = _RGB_TO_XYZ / _RGB_TO_XYZ.sum(axis=1, keepdims=True)
_XYZN_TO_RGB = np.linalg.inv(_RGB_TO_XYZN)
_EPSILON, _KAPPA = 216 / 24389, 24389 / 27


def _as_tensor(values: Tensor | np.ndarray) -> Tensor:
    if isinstance(values, Tensor):
        return values.detach().to("cpu", torch.float32)
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


def rgb_to_lab(frames: Tensor | np.ndarray) -> np.ndarray:
    """RGB float in [0, 1] (``[..., 3]``) to CIELAB (D65): L in [0, 100], a/b about [-128, 127].

    Exact CIE formulas (sRGB companding, XYZ, cube root with the linear toe), float32.
    """
    rgb = _as_tensor(frames)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb.clamp(min=0.0) + 0.055) / 1.055) ** 2.4)
    xyz = linear @ torch.from_numpy(_RGB_TO_XYZN.T.astype(np.float32))
    f = torch.where(xyz > _EPSILON, xyz.clamp(min=_EPSILON) ** (1.0 / 3.0), (_KAPPA * xyz + 16.0) / 116.0)
    lab = torch.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])],
                      dim=-1)
    return lab.numpy()


def lab_to_rgb(frames: Tensor | np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_lab`, clipped to [0, 1] (out-of-gamut colours are clipped)."""
    lab = _as_tensor(frames)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = torch.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], dim=-1)
    cube = f ** 3
    xyz = torch.where(cube > _EPSILON, cube, (116.0 * f - 16.0) / _KAPPA)
    linear = (xyz @ torch.from_numpy(_XYZN_TO_RGB.T.astype(np.float32))).clamp(0.0, 1.0)
    rgb = torch.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1.0 / 2.4) - 0.055)
    return rgb.clamp(0.0, 1.0).numpy()


def _to_numpy(frames: Tensor | np.ndarray, name: str) -> np.ndarray:
    if isinstance(frames, Tensor):
        frames = frames.detach().to("cpu", torch.float32).numpy()
    array = np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"{name}: must be [T, H, W, 3] RGB frames, got shape {tuple(array.shape)}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: holds NaN or inf values; colour statistics need finite frames")
    return array


def lab_statistics(frames: Tensor | np.ndarray, name: str = "frames") -> LabStats:
    """:class:`LabStats` of ``[T, H, W, 3]`` RGB frames (float in [0, 1] or uint8)."""
    lab = rgb_to_lab(_to_numpy(frames, name)).reshape(-1, 3).astype(np.float64)
    return LabStats(tuple(lab.mean(0).tolist()), tuple(lab.std(0).tolist()))


def match_lab_statistics(frames: Tensor | np.ndarray, source: LabStats, target: LabStats,
                         max_gain: float = 2.0) -> np.ndarray:
    """Apply the per-channel Lab map taking ``source`` statistics to ``target`` to ``frames``.

    ``lab' = (lab - source.mean) * gain + target.mean`` with ``gain = target.std / source.std``
    limited to ``[1 / max_gain, max_gain]`` (1 for a flat channel). Returns RGB float32 in [0, 1].
    """
    if not max_gain >= 1.0:
        raise ValueError(f"max_gain: must be >= 1, got {max_gain!r}")
    lab = rgb_to_lab(_to_numpy(frames, "frames"))
    src_mean, dst_mean = np.asarray(source.mean), np.asarray(target.mean)
    src_std, dst_std = np.asarray(source.std), np.asarray(target.std)
    gain = np.where(src_std > _MIN_STD, dst_std / np.maximum(src_std, _MIN_STD), 1.0)
    gain = np.clip(gain, 1.0 / max_gain, max_gain)
    mapped = (lab - src_mean) * gain + dst_mean
    return lab_to_rgb(mapped.astype(np.float32))


def match_chunk_color(
    chunk: Tensor,
    mode: str,
    *,
    cond_frames: Tensor | None = None,
    reference: LabStats | None = None,
    num_cond: int = 8,
    max_gain: float = 2.0,
) -> Tensor:
    """Correct the colours of one generated chunk before its new frames are stored.

    Args:
        chunk: ``[chunk, H, W, 3]`` frames in [0, 1] as the chunk sampler returned them: frames
            ``0..num_cond-1`` re-generate the conditioning frames, ``num_cond..`` are new.
        mode: one of :data:`COLOR_MATCH_MODES`.
        cond_frames: ``[num_cond, H, W, 3]``, the known conditioning frames (``overlap``).
        reference: the anchor chunk's :func:`lab_statistics` (``anchor``).
        num_cond: conditioning frames per chunk (8).
        max_gain: limit of the spread gain.

    Returns:
        ``chunk`` with frames ``num_cond..`` corrected (float32, CPU, [0, 1]); frames before are
        returned unchanged (they are discarded by the extension loop). ``off`` returns ``chunk``.

    Raises:
        ValueError: unknown mode, missing ``cond_frames``/``reference``, mismatched shapes, or (in
            ``overlap``) re-generated frames identical to the conditioning frames: the sampler
            returned the known frames instead of decoding its own, so nothing can be measured.
    """
    if mode not in COLOR_MATCH_MODES:
        raise ValueError(f"color_match: must be one of {COLOR_MATCH_MODES}, got {mode!r}")
    if mode == "off":
        return chunk
    if not isinstance(chunk, Tensor) or chunk.dim() != 4 or chunk.shape[-1] != 3 or chunk.shape[0] <= num_cond:
        got = tuple(chunk.shape) if isinstance(chunk, Tensor) else type(chunk).__name__
        raise ValueError(f"chunk: must be [T > {num_cond}, H, W, 3] frames, got {got}")
    out = chunk.detach().to("cpu", torch.float32).clone()
    new = out[num_cond:]
    if mode == "overlap":
        if cond_frames is None or tuple(cond_frames.shape) != (num_cond, *out.shape[1:]):
            got = None if cond_frames is None else tuple(cond_frames.shape)
            raise ValueError(f"cond_frames: color_match='overlap' needs the {num_cond} known conditioning "
                             f"frames shaped {(num_cond, *out.shape[1:])}, got {got}")
        regenerated = out[:num_cond]
        known = cond_frames.detach().to("cpu", torch.float32)
        if torch.equal(regenerated, known):
            raise ValueError(
                f"chunk_sampler: color_match='overlap' measures the drift on the chunk's re-generated frames "
                f"0..{num_cond - 1}, but they equal the conditioning frames; decode and return the "
                "re-generated frames instead of the known ones")
        source, target = lab_statistics(regenerated, "chunk"), lab_statistics(known, "cond_frames")
    else:
        if reference is None:
            raise ValueError("reference: color_match='anchor' needs the anchor chunk's lab_statistics")
        source, target = lab_statistics(new, "chunk"), reference
    out[num_cond:] = torch.from_numpy(match_lab_statistics(new, source, target, max_gain))
    return out


def color_matched_sampler(
    chunk_sampler: Callable[[int, Tensor, Tensor, int], Tensor],
    mode: str,
    reference_frames: Tensor | None = None,
    num_cond: int = 8,
    max_gain: float = 2.0,
) -> Callable[[int, Tensor, Tensor, int], Tensor]:
    """Wrap a chunk sampler of :func:`streamingt2v_core.sampling.extension.extend_video` so every
    chunk it returns is corrected by :func:`match_chunk_color` before the loop stores it.

    ``reference_frames``: the anchor chunk (the first chunk's frames), needed by ``anchor``; pass
    the same frames on a resumed run so resuming stays exact. ``off`` returns ``chunk_sampler``.
    """
    if mode not in COLOR_MATCH_MODES:
        raise ValueError(f"color_match: must be one of {COLOR_MATCH_MODES}, got {mode!r}")
    if mode == "off":
        return chunk_sampler
    reference = None
    if mode == "anchor":
        if reference_frames is None:
            raise ValueError("reference_frames: color_match='anchor' needs the first chunk's frames")
        reference = lab_statistics(reference_frames, "reference_frames")

    def sampler(index: int, cond_frames: Tensor, anchor: Tensor, seed: int) -> Tensor:
        chunk = chunk_sampler(index, cond_frames, anchor, seed)
        if not isinstance(chunk, Tensor) or chunk.dim() != 4 or chunk.shape[0] <= num_cond:
            return chunk  # extend_video reports the wrong shape with its own message
        return match_chunk_color(chunk, mode, cond_frames=cond_frames, reference=reference,
                                 num_cond=num_cond, max_gain=max_gain)

    return sampler
