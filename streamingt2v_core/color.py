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


# Pixels per block of the conversions: a block's temporaries (about ten [3, n] tensors of 3 MiB) stay
# near the CPU's caches, where one pass over a whole 81-frame 832x480 chunk (390 MB a tensor) goes to
# memory for each of its ~30 operations; it also bounds the extra memory to some 30 MB, whatever the
# video. Smaller blocks were slower on a busy 2-core machine (torch's per-operation thread hand-off).
_BLOCK_PIXELS = 1 << 18
# The statistics (mean and spread of L, a, b) are means over millions of pixels: a strided sample of at
# most this many pixels gives them to within a few hundredths of a Lab unit (tests/core/test_color.py
# bounds it at 832x480), far below what is visible (delta E 1) and ~20x faster than all pixels.
_STATS_MAX_PIXELS = 1 << 18
_RGB_TO_XYZN_F32 = _RGB_TO_XYZN.astype(np.float32).tolist()
_XYZN_TO_RGB_F32 = _XYZN_TO_RGB.astype(np.float32).tolist()


def _as_tensor(values: Tensor | np.ndarray) -> Tensor:
    if isinstance(values, Tensor):
        return values.detach().to("cpu", torch.float32)
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


def _mat3(matrix: list[list[float]], planes: Tensor) -> Tensor:
    """``matrix @ planes`` for ``[3, n]`` planes as three sums of products: the same arithmetic as a
    3x3 matrix product, without a BLAS call, whose worker threads spin between calls and, on a busy
    CPU, slowed each block 10x."""
    out = torch.empty_like(planes)
    for row, (c0, c1, c2) in enumerate(matrix):
        torch.mul(planes[0], c0, out=out[row]).add_(planes[1], alpha=c1).add_(planes[2], alpha=c2)
    return out


def _rgb_to_lab_planes(rgb: Tensor) -> Tensor:
    """``[3, n]`` RGB planes (float32) to ``[3, n]`` Lab planes: the exact CIE formulas."""
    low = rgb <= 0.04045
    linear = rgb.clamp(min=0.0).add_(0.055).div_(1.055).pow_(2.4)
    linear = torch.where(low, rgb / 12.92, linear, out=linear)
    xyz = _mat3(_RGB_TO_XYZN_F32, linear)
    high = xyz > _EPSILON
    f = torch.where(high, xyz.clamp(min=_EPSILON).pow_(1.0 / 3.0), (_KAPPA * xyz).add_(16.0).div_(116.0))
    lab = torch.empty_like(f)
    torch.sub(f[0], f[1], out=lab[1]).mul_(500.0)
    torch.sub(f[1], f[2], out=lab[2]).mul_(200.0)
    torch.mul(f[1], 116.0, out=lab[0]).sub_(16.0)
    return lab


def _lab_to_rgb_planes(lab: Tensor) -> Tensor:
    """``[3, n]`` Lab planes to ``[3, n]`` RGB planes in [0, 1] (out-of-gamut colours clipped)."""
    fy = (lab[0] + 16.0).div_(116.0)
    f = torch.stack([fy + lab[1] / 500.0, fy, fy - lab[2] / 200.0])
    cube = f * f * f
    xyz = torch.where(cube > _EPSILON, cube, (116.0 * f).sub_(16.0).div_(_KAPPA), out=cube)
    linear = _mat3(_XYZN_TO_RGB_F32, xyz).clamp_(0.0, 1.0)
    low = linear <= 0.0031308
    rgb = torch.where(low, 12.92 * linear, linear.pow(1.0 / 2.4).mul_(1.055).sub_(0.055))
    return rgb.clamp_(0.0, 1.0)


def _blockwise(values: Tensor, convert: Callable[[Tensor], Tensor]) -> Tensor:
    """Apply a ``[3, n] -> [3, n]`` conversion to ``[..., 3]`` values block by block (float32)."""
    flat = values.reshape(-1, 3)
    out = torch.empty(flat.shape, dtype=torch.float32)
    for i in range(0, flat.shape[0], _BLOCK_PIXELS):
        block = flat[i:i + _BLOCK_PIXELS].t().contiguous()
        out[i:i + _BLOCK_PIXELS] = convert(block).t()
    return out.reshape(values.shape)


def rgb_to_lab(frames: Tensor | np.ndarray) -> np.ndarray:
    """RGB float in [0, 1] (``[..., 3]``) to CIELAB (D65): L in [0, 100], a/b about [-128, 127].

    Exact CIE formulas (sRGB companding, XYZ, cube root with the linear toe), float32, computed in
    cache-sized blocks of pixels.
    """
    return _blockwise(_as_tensor(frames), _rgb_to_lab_planes).numpy()


def lab_to_rgb(frames: Tensor | np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_lab`, clipped to [0, 1] (out-of-gamut colours are clipped)."""
    return _blockwise(_as_tensor(frames), _lab_to_rgb_planes).numpy()


def _to_float_frames(frames: Tensor | np.ndarray, name: str) -> Tensor:
    """``[T, H, W, 3]`` frames (float in [0, 1] or uint8; tensor or array) as a float32 CPU tensor."""
    if not isinstance(frames, Tensor):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{name}: must be [T, H, W, 3] RGB frames, got shape {tuple(frames.shape)}")
    frames = frames.detach().to("cpu")
    if frames.dtype == torch.uint8:
        return frames.to(torch.float32) / 255.0
    frames = frames.to(torch.float32)
    if not torch.isfinite(frames).all():
        raise ValueError(f"{name}: holds NaN or inf values; colour statistics need finite frames")
    return frames


def _sample_pixels(frames: Tensor, max_pixels: int | None) -> Tensor:
    """``[n, 3]`` pixels of the frames: all of them, or every k-th (one fixed, deterministic sample)
    so that at most ``max_pixels`` remain. The stride runs over the flattened frames, so with a
    stride that does not divide the width the sample is a sheared lattice that covers every column."""
    flat = frames.reshape(-1, 3)
    if max_pixels is None or flat.shape[0] <= max_pixels:
        return flat
    stride = -(-flat.shape[0] // max_pixels)
    if frames.shape[2] % stride == 0:
        stride += 1  # avoid sampling the same columns in every row
    return flat[::stride]


def lab_statistics(frames: Tensor | np.ndarray, name: str = "frames",
                   max_pixels: int | None = None) -> LabStats:
    """:class:`LabStats` of ``[T, H, W, 3]`` RGB frames (float in [0, 1] or uint8).

    ``max_pixels``: compute them on a fixed strided sample of at most this many pixels (None: all).
    """
    pixels = _sample_pixels(_to_float_frames(frames, name), max_pixels)
    lab = _blockwise(pixels, _rgb_to_lab_planes).to(torch.float64)  # float64 sums over many pixels
    return LabStats(tuple(lab.mean(0).tolist()), tuple(lab.std(0, correction=0).tolist()))


def _lab_map(source: LabStats, target: LabStats, max_gain: float) -> tuple[Tensor, Tensor]:
    """Per-channel ``gain`` and ``offset`` (float32) of ``lab' = lab * gain + offset``."""
    if not max_gain >= 1.0:
        raise ValueError(f"max_gain: must be >= 1, got {max_gain!r}")
    src_mean, dst_mean = np.asarray(source.mean), np.asarray(target.mean)
    src_std, dst_std = np.asarray(source.std), np.asarray(target.std)
    gain = np.where(src_std > _MIN_STD, dst_std / np.maximum(src_std, _MIN_STD), 1.0)
    gain = np.clip(gain, 1.0 / max_gain, max_gain)
    offset = dst_mean - src_mean * gain  # in float64, rounded once to float32
    return (torch.from_numpy(gain.astype(np.float32)).reshape(3, 1),
            torch.from_numpy(offset.astype(np.float32)).reshape(3, 1))


def _match_tensor(frames: Tensor, gain: Tensor, offset: Tensor) -> Tensor:
    """RGB -> Lab -> affine map -> RGB of every pixel, block by block (no whole-video Lab copy)."""
    return _blockwise(frames, lambda rgb: _lab_to_rgb_planes(_rgb_to_lab_planes(rgb).mul_(gain).add_(offset)))


def match_lab_statistics(frames: Tensor | np.ndarray, source: LabStats, target: LabStats,
                         max_gain: float = 2.0) -> np.ndarray:
    """Apply the per-channel Lab map taking ``source`` statistics to ``target`` to ``frames``.

    ``lab' = (lab - source.mean) * gain + target.mean`` with ``gain = target.std / source.std``
    limited to ``[1 / max_gain, max_gain]`` (1 for a flat channel), applied to every pixel as
    ``lab * gain + offset`` in float32. Returns RGB float32 in [0, 1].
    """
    gain, offset = _lab_map(source, target, max_gain)
    return _match_tensor(_to_float_frames(frames, "frames"), gain, offset).numpy()


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
        source = lab_statistics(regenerated, "chunk", _STATS_MAX_PIXELS)
        target = lab_statistics(known, "cond_frames", _STATS_MAX_PIXELS)
    else:
        if reference is None:
            raise ValueError("reference: color_match='anchor' needs the anchor chunk's lab_statistics")
        source, target = lab_statistics(new, "chunk", _STATS_MAX_PIXELS), reference
    _to_float_frames(new, "chunk")  # the NaN/inf check of the frames the map is applied to
    gain, offset = _lab_map(source, target, max_gain)
    out[num_cond:] = _match_tensor(new, gain, offset)
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
        reference = lab_statistics(reference_frames, "reference_frames", _STATS_MAX_PIXELS)

    def sampler(index: int, cond_frames: Tensor, anchor: Tensor, seed: int) -> Tensor:
        chunk = chunk_sampler(index, cond_frames, anchor, seed)
        if not isinstance(chunk, Tensor) or chunk.dim() != 4 or chunk.shape[0] <= num_cond:
            return chunk  # extend_video reports the wrong shape with its own message
        return match_chunk_color(chunk, mode, cond_frames=cond_frames, reference=reference,
                                 num_cond=num_cond, max_gain=max_gain)

    return sampler
