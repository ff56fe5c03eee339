"""Frame utilities for long videos: resize, pad, crop, compact storage and streaming mp4 output.

Frames use the ComfyUI IMAGE layout, ``[T, H, W, C]`` float in ``[0, 1]``, but nothing here
imports ComfyUI. A long video at the refiner's working size does not fit in memory as one
float32 tensor (1200 frames at 1280x720 are 13 GB), so every helper works on a chunk of frames
and the callers loop with :func:`frame_chunks`; finished frames go to a :class:`StreamingVideoWriter`
(PyAV) or to uint8 storage (:func:`frames_to_uint8`, 4x smaller than float32).

The refiner's geometry follows the official code: a frame is resized to fit a canvas
(256x256 into 1280x720 gives 720x720 content), then padded with black to the canvas size
(280 px left and right). :class:`PadBox` records where the content sits so that the padding can
be cropped off again after refinement (the official randomized-blending path forgets to).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import torch
import torch.nn.functional as F

#: Interpolation filters accepted by :func:`resize_frames` (torch ``interpolate`` modes).
RESIZE_FILTERS: tuple[str, ...] = ("bilinear", "bicubic", "area", "nearest-exact")


def _check_frames(name: str, frames: torch.Tensor) -> None:
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"{name} must be a [T, H, W, C] frame tensor, got {shape}")
    if frames.shape[0] < 1 or frames.shape[1] < 1 or frames.shape[2] < 1:
        raise ValueError(f"{name} must have at least one frame of at least 1x1 pixels, "
                         f"got shape {tuple(frames.shape)}")


def _check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class PadBox:
    """Where the content sits inside a padded canvas (pixels): rows ``[top, top + height)``,
    columns ``[left, left + width)`` of a ``canvas_height x canvas_width`` frame."""

    top: int
    left: int
    height: int
    width: int
    canvas_height: int
    canvas_width: int

    @property
    def is_full(self) -> bool:
        """True when there is no padding at all."""
        return self.height == self.canvas_height and self.width == self.canvas_width


def fit_size(height: int, width: int, box_height: int, box_width: int) -> tuple[int, int]:
    """Largest ``(h, w)`` with the aspect ratio of ``height x width`` that fits in the box.

    This is the official refiner's resize rule: 256x256 into 1280x720 gives 720x720, 256x448
    (landscape) gives 720x1260. Sides are rounded to the nearest pixel and are at least 1.
    """
    for name, value in (("height", height), ("width", width),
                        ("box_height", box_height), ("box_width", box_width)):
        _check_positive_int(name, value)
    scale = min(box_height / height, box_width / width)
    return (max(1, min(box_height, round(height * scale))),
            max(1, min(box_width, round(width * scale))))


def resize_frames(frames: torch.Tensor, height: int, width: int, filter: str = "bilinear") -> torch.Tensor:
    """Resize ``[T, H, W, C]`` frames to ``height x width`` with ``filter`` (see RESIZE_FILTERS).

    Bilinear and bicubic use antialiasing when shrinking (so a downscale does not alias); the
    result of bicubic is clamped to [0, 1] because its overshoot would leave the IMAGE range.
    The output keeps the input dtype and device.
    """
    _check_frames("frames", frames)
    _check_positive_int("height", height)
    _check_positive_int("width", width)
    if filter not in RESIZE_FILTERS:
        raise ValueError(f"filter must be one of {RESIZE_FILTERS}, got {filter!r}")
    if frames.shape[1] == height and frames.shape[2] == width:
        return frames
    x = frames.movedim(-1, 1)
    dtype = x.dtype
    if not x.is_floating_point():
        x = x.float()
    kwargs = {}
    if filter in ("bilinear", "bicubic"):
        shrinking = height < frames.shape[1] or width < frames.shape[2]
        kwargs = {"align_corners": False, "antialias": shrinking}
    y = F.interpolate(x, size=(height, width), mode=filter, **kwargs)
    if filter == "bicubic":
        y = y.clamp(0.0, 1.0)
    return y.to(dtype).movedim(1, -1)


def pad_box(content_height: int, content_width: int, canvas_height: int, canvas_width: int) -> PadBox:
    """Centre a ``content`` frame in a canvas; odd leftovers go to the bottom/right side."""
    _check_positive_int("content_height", content_height)
    _check_positive_int("content_width", content_width)
    _check_positive_int("canvas_height", canvas_height)
    _check_positive_int("canvas_width", canvas_width)
    if content_height > canvas_height or content_width > canvas_width:
        raise ValueError(f"content {content_height}x{content_width} does not fit in the canvas "
                         f"{canvas_height}x{canvas_width} (height x width)")
    return PadBox(top=(canvas_height - content_height) // 2, left=(canvas_width - content_width) // 2,
                  height=content_height, width=content_width,
                  canvas_height=canvas_height, canvas_width=canvas_width)


def pad_frames(frames: torch.Tensor, box: PadBox, value: float = 0.0) -> torch.Tensor:
    """Place ``[T, h, w, C]`` frames (``h x w`` = the box's content size) into a canvas filled
    with ``value`` (0 = black, as the official refiner pads)."""
    _check_frames("frames", frames)
    if frames.shape[1] != box.height or frames.shape[2] != box.width:
        raise ValueError(f"frames must be {box.height}x{box.width} (the box's content size), "
                         f"got {frames.shape[1]}x{frames.shape[2]}")
    if box.is_full:
        return frames
    out = frames.new_full((frames.shape[0], box.canvas_height, box.canvas_width, frames.shape[3]), value)
    out[:, box.top:box.top + box.height, box.left:box.left + box.width] = frames
    return out


def crop_frames(frames: torch.Tensor, box: PadBox) -> torch.Tensor:
    """Cut the content of ``box`` out of canvas-sized ``[T, H, W, C]`` frames (a view)."""
    _check_frames("frames", frames)
    if frames.shape[1] != box.canvas_height or frames.shape[2] != box.canvas_width:
        raise ValueError(f"frames must be {box.canvas_height}x{box.canvas_width} (the box's canvas), "
                         f"got {frames.shape[1]}x{frames.shape[2]}")
    return frames[:, box.top:box.top + box.height, box.left:box.left + box.width]


def letterbox_frames(frames: torch.Tensor, canvas_height: int, canvas_width: int,
                     filter: str = "bilinear", mode: str = "pad") -> tuple[torch.Tensor, PadBox]:
    """Bring frames to the canvas size: ``mode="pad"`` resizes to fit (keeping the aspect ratio)
    and pads with black, as the official refiner does; ``mode="stretch"`` resizes to the canvas.

    Returns the canvas frames and the :class:`PadBox` of the content (full for ``stretch``).
    """
    _check_frames("frames", frames)
    if mode == "pad":
        h, w = fit_size(frames.shape[1], frames.shape[2], canvas_height, canvas_width)
    elif mode == "stretch":
        h, w = canvas_height, canvas_width
    else:
        raise ValueError(f"mode must be 'pad' or 'stretch', got {mode!r}")
    box = pad_box(h, w, canvas_height, canvas_width)
    return pad_frames(resize_frames(frames, h, w, filter), box), box


def canvas_box(src_height: int, src_width: int, canvas_height: int, canvas_width: int, mode: str = "pad") -> PadBox:
    """The :class:`PadBox` that :func:`letterbox_frames` would use, without touching pixels."""
    if mode == "pad":
        h, w = fit_size(src_height, src_width, canvas_height, canvas_width)
    elif mode == "stretch":
        h, w = canvas_height, canvas_width
    else:
        raise ValueError(f"mode must be 'pad' or 'stretch', got {mode!r}")
    return pad_box(h, w, canvas_height, canvas_width)


def frame_chunks(num_frames: int, chunk: int) -> Iterator[tuple[int, int]]:
    """``[start, end)`` ranges of at most ``chunk`` frames covering ``range(num_frames)`` in order."""
    _check_positive_int("num_frames", num_frames)
    _check_positive_int("chunk", chunk)
    for start in range(0, num_frames, chunk):
        yield start, min(start + chunk, num_frames)


def frames_to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """``[T, H, W, C]`` float frames in [0, 1] to uint8 (rounded, clamped): 4x less memory."""
    _check_frames("frames", frames)
    if frames.dtype == torch.uint8:
        return frames
    frames = frames.detach()
    out = torch.empty(frames.shape, dtype=torch.uint8, device=frames.device)
    # A few frames (4M values) at a time, in place: one float32 temporary of 16 MB instead of
    # three float32 copies of the whole video; the rounded values are whole numbers, so the copy into
    # uint8 is exact.
    step = max(1, (1 << 22) // max(1, frames[0].numel()))
    for i in range(0, frames.shape[0], step):
        out[i:i + step].copy_(frames[i:i + step].float().clamp(0.0, 1.0).mul_(255.0).round_())
    return out


def uint8_to_frames(frames: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 ``[T, H, W, C]`` frames back to float in [0, 1]."""
    _check_frames("frames", frames)
    if frames.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    return frames.to(dtype) / 255.0


class StreamingVideoWriter:
    """Write frames to a video file chunk by chunk with PyAV, so a long video never has to
    exist in memory at once.

    Usage::

        with StreamingVideoWriter(path, width=720, height=720, fps=8) as writer:
            for chunk in chunks:          # [t, H, W, 3] float in [0, 1] or uint8
                writer.write(chunk)

    H.264 in yuv420p needs even sides; an odd height/width is padded by repeating the last
    row/column (one pixel) rather than refused, and :attr:`frame_size` reports the stored size.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float,
                 codec: str = "libx264", crf: int = 18, pix_fmt: str = "yuv420p") -> None:
        import av  # local import: only the writer needs PyAV

        _check_positive_int("width", width)
        _check_positive_int("height", height)
        if not (isinstance(fps, (int, float, Fraction)) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        if codec not in av.codecs_available:
            raise ValueError(f"codec {codec!r} is not available in this PyAV build")
        self.path = os.fspath(path)
        self.width, self.height = width, height
        self._even = pix_fmt == "yuv420p"
        self.frame_size = (height + (height % 2 if self._even else 0),
                           width + (width % 2 if self._even else 0))
        self.frames_written = 0
        self._av = av
        self._container = av.open(self.path, mode="w")
        rate = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
        self._stream = self._container.add_stream(codec, rate=rate)
        self._stream.height, self._stream.width = self.frame_size
        self._stream.pix_fmt = pix_fmt
        if codec == "libx264":
            self._stream.options = {"crf": str(crf)}

    def write(self, frames: torch.Tensor) -> None:
        """Append ``[t, H, W, 3]`` frames (float in [0, 1] or uint8) of the writer's size."""
        _check_frames("frames", frames)
        if frames.shape[1] != self.height or frames.shape[2] != self.width or frames.shape[3] != 3:
            raise ValueError(f"frames must be [t, {self.height}, {self.width}, 3], got {tuple(frames.shape)}")
        data = frames_to_uint8(frames.cpu())
        h, w = self.frame_size
        if (h, w) != (self.height, self.width):
            data = F.pad(data.permute(0, 3, 1, 2).float(), (0, w - self.width, 0, h - self.height),
                         mode="replicate").to(torch.uint8).permute(0, 2, 3, 1)
        for frame in data.contiguous().numpy():
            video_frame = self._av.VideoFrame.from_ndarray(frame, format="rgb24")
            for packet in self._stream.encode(video_frame):
                self._container.mux(packet)
            self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and close the file (idempotent)."""
        if self._container is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None

    def __enter__(self) -> "StreamingVideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
