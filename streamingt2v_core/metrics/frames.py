"""Input checks shared by the metrics: frame batches in the ComfyUI IMAGE layout.

Every metric takes ``frames`` shaped ``[T, H, W, 3]`` (ComfyUI IMAGE layout), either float in
[0, 1] (what flows between ComfyUI nodes) or uint8 in [0, 255] (what a video decoder gives).
The metrics themselves work on uint8 frames, as the official evaluation did (it read the
generated mp4 back), so float frames are quantised once here with rounding, which is what
saving them to a video would do (minus the codec).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["FrameArray", "to_uint8_frames", "read_video_frames"]

FrameArray = torch.Tensor | np.ndarray

# Float frames a little outside [0, 1] come from resampling filters and fp16 rounding; values
# further out mean the caller passed [-1, 1] or 0..255 data, which we refuse rather than clip.
_RANGE_TOLERANCE = 1e-3
_BLOCK = 32


def to_uint8_frames(frames: FrameArray, name: str = "frames", min_frames: int = 1) -> np.ndarray:
    """Check a frame batch and return it as a contiguous uint8 array ``[T, H, W, 3]``.

    Args:
        frames: ``[T, H, W, 3]`` float in [0, 1] or uint8, as a torch tensor or numpy array.
        name: argument name used in error messages.
        min_frames: the least number of frames the metric needs.

    Raises:
        ValueError: wrong type, rank or channel count, too few frames, empty frames, NaN/inf, or
            float values outside [0, 1].
    """
    if isinstance(frames, torch.Tensor):
        array = frames.detach().cpu()
        if array.dtype == torch.bfloat16:
            array = array.float()
        array = array.numpy()
    elif isinstance(frames, np.ndarray):
        array = frames
    else:
        raise ValueError(
            f"{name} must be a torch.Tensor or numpy array shaped [T, H, W, 3], "
            f"got {type(frames).__name__}"
        )
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(
            f"{name} must be shaped [T, H, W, 3] (ComfyUI IMAGE layout, RGB), got {tuple(array.shape)}"
        )
    if array.shape[0] < min_frames:
        raise ValueError(f"{name} must hold at least {min_frames} frame(s), got {array.shape[0]}")
    if array.shape[1] < 1 or array.shape[2] < 1:
        raise ValueError(f"{name} has empty frames: shape {tuple(array.shape)}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name} must be float in [0, 1] or uint8, got dtype {array.dtype}")
    # Work in blocks so a long video does not need a float copy of itself in memory.
    out = np.empty(array.shape, dtype=np.uint8)
    lo, hi = np.inf, -np.inf
    for start in range(0, array.shape[0], _BLOCK):
        block = np.asarray(array[start:start + _BLOCK], dtype=np.float32)
        if not np.isfinite(block).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
        out[start:start + _BLOCK] = np.rint(np.clip(block, 0.0, 1.0) * 255.0).astype(np.uint8)
    if lo < -_RANGE_TOLERANCE or hi > 1.0 + _RANGE_TOLERANCE:
        raise ValueError(
            f"{name} must hold float values in [0, 1] (ComfyUI IMAGE), got min {lo:.4g}, "
            f"max {hi:.4g}; convert [-1, 1] or 0..255 data first"
        )
    return out


def read_video_frames(path: str, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decode a video file with PyAV into ``([T, H, W, 3] uint8 RGB, fps)``.

    Raises:
        ValueError: missing file, no video stream, or no decodable frame.
    """
    import os

    import av

    if not os.path.isfile(path):
        raise ValueError(f"path: video file not found: {path!r}")
    try:
        container = av.open(path)
    except Exception as exc:  # PyAV raises its own error classes per failure
        raise ValueError(f"path: cannot open {path!r} as a video: {exc}") from exc
    with container:
        if not container.streams.video:
            raise ValueError(f"path: {path!r} has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.base_rate or stream.guessed_rate
        fps = float(rate) if rate else 8.0
        frames = []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise ValueError(f"path: no frame could be decoded from {path!r}")
    return np.stack(frames), fps
