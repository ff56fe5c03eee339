"""Synthetic videos whose joins and colour drift are known, for the Drift & Seams tests and demo.

All start from :func:`loop_pan_video` (a texture rolled sideways at a constant speed: the same
change between every pair of frames, no cut, and the same colour statistics in every frame, so a
clean video has no colour drift at all), then:

* :func:`jump_video`: from ``join_frame`` on, every frame is offset in CIELAB (and optionally the
  pan skips ahead), so the pair ``(join_frame - 1, join_frame)`` jumps and nothing else does;
* :func:`drift_video`: frame ``t`` is offset by ``t`` times a per-frame Lab step, a steady colour
  drift with no jump anywhere;
* :class:`DriftingChunkSampler`: a chunk sampler for the extension loop that drifts by a known
  amount per chunk (the colour-drift correction's benchmark and tests).

Offsets are applied in CIELAB with OpenCV and the result is rounded to uint8; keep the offsets
moderate (a few L units per chunk) so few pixels leave the sRGB gamut and get clipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..color import lab_to_rgb, rgb_to_lab
from .synthetic import textured_image

__all__ = ["offset_lab", "loop_pan_video", "jump_video", "drift_video", "DriftingChunkSampler"]


def offset_lab(frames: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Add ``offsets`` (``[3]`` or ``[T, 3]``, Lab units) to uint8 RGB frames; returns uint8 RGB."""
    lab = rgb_to_lab(np.asarray(frames, dtype=np.float32) / 255.0)
    offsets = np.asarray(offsets, dtype=np.float32).reshape(-1, 1, 1, 3)
    rgb = lab_to_rgb(lab + offsets)
    return np.rint(rgb * 255.0).astype(np.uint8)


def loop_pan_video(num_frames: int, height: int = 64, width: int = 64, shift: int = 2,
                   seed: int = 0) -> np.ndarray:
    """``[num_frames, height, width, 3]`` uint8: a texture rolled left by ``shift`` px per frame
    (wrapping around), so every frame holds the same pixels: the colour statistics of every frame
    are identical, the change between consecutive frames is the same everywhere."""
    texture = textured_image(height, width, seed)
    return np.stack([np.roll(texture, -t * shift, axis=1) for t in range(num_frames)])


def _pan(num_frames: int, height: int, width: int, shift: int, seed: int, skip_frames: int = 0,
         skip_at: int = 0) -> np.ndarray:
    video = loop_pan_video(num_frames + skip_frames, height, width, shift, seed)
    return video[[t if t < skip_at else t + skip_frames for t in range(num_frames)]]


def jump_video(num_frames: int = 48, join_frame: int = 32, lab_offset: Sequence[float] = (12.0, 0.0, 0.0),
               skip_frames: int = 0, height: int = 64, width: int = 64, shift: int = 2, seed: int = 0) -> np.ndarray:
    """``[num_frames, height, width, 3]`` uint8: a pan whose frames from ``join_frame`` on are offset
    by ``lab_offset`` (and whose pan skips ``skip_frames`` frames ahead there: a stutter)."""
    frames = _pan(num_frames, height, width, shift, seed, skip_frames=skip_frames, skip_at=join_frame)
    offsets = np.zeros((num_frames, 3), np.float32)
    offsets[join_frame:] = np.asarray(lab_offset, np.float32)
    return offset_lab(frames, offsets)


def drift_video(num_frames: int = 48, lab_step: Sequence[float] = (0.0, 0.4, 0.0), height: int = 64,
                width: int = 64, shift: int = 2, seed: int = 0) -> np.ndarray:
    """``[num_frames, height, width, 3]`` uint8: a pan whose frame ``t`` is offset by ``t * lab_step``
    (a steady drift: ``8 * |lab_step|`` delta E per 8-frame chunk)."""
    frames = _pan(num_frames, height, width, shift, seed)
    offsets = np.arange(num_frames, dtype=np.float32)[:, None] * np.asarray(lab_step, np.float32)
    return offset_lab(frames, offsets)


class DriftingChunkSampler:
    """A stand-in for the extender whose colour drift is known, for the colour-drift benchmark and
    tests: a chunk sampler of :func:`streamingt2v_core.sampling.extension.extend_video`.

    ``truth`` is the video "the prompt asks for" (``[T + new, H, W, 3]`` float in [0, 1], at least
    one chunk longer than the run; a colour change in it is a real change). Chunk ``i`` adds frames
    ``[s, s + new)`` with ``s = first_chunk + (i - 1) new``. Like a real extender it carries the
    colour of its conditioning frames forward and adds its own error:

    * the mean Lab offset of the given conditioning frames from ``truth``'s is inherited by the
      new frames (what makes drift accumulate when nothing corrects it);
    * every output frame gets this chunk's drift ``drift_lab`` (Lab units per chunk); with
      ``ramp`` the drift grows over the chunk instead (frame ``k`` of 16 gets
      ``drift_lab * (k + 0.5) / 12``: a third of it on the re-generated frames, all of it on
      average on the new ones), the case the ``overlap`` correction only partly removes;
    * frames ``0..cond-1`` re-generate the conditioning frames (given frames + drift);
    * optional Gaussian pixel noise of ``noise`` (seeded by the chunk's seed).
    """

    def __init__(self, truth: np.ndarray, drift_lab: Sequence[float] = (0.0, 0.0, 0.0), *, ramp: bool = False,
                 noise: float = 0.0, first_chunk: int = 16, new_frames: int = 8, cond_frames: int = 8):
        self.truth = np.asarray(truth, dtype=np.float32)
        self.drift = np.asarray(drift_lab, dtype=np.float32)
        self.ramp, self.noise = ramp, noise
        self.first_chunk, self.new_frames, self.cond_frames = first_chunk, new_frames, cond_frames

    def _frame_drift(self, k: int) -> np.ndarray:
        return self.drift * ((k + 0.5) / 12.0 if self.ramp else 1.0)

    def __call__(self, index: int, cond_frames, anchor, seed: int):
        s = self.first_chunk + (index - 1) * self.new_frames
        if s + self.new_frames > self.truth.shape[0]:
            raise ValueError(f"truth: needs frames up to {s + self.new_frames} for chunk {index}, "
                             f"has {self.truth.shape[0]}")
        cond = cond_frames.detach().cpu().numpy().astype(np.float32)
        known_lab = rgb_to_lab(cond)
        inherited = (known_lab.mean(axis=(0, 1, 2))
                     - rgb_to_lab(self.truth[s - self.cond_frames:s]).mean(axis=(0, 1, 2)))
        chunk = self.cond_frames + self.new_frames
        lab = np.concatenate([known_lab, rgb_to_lab(self.truth[s:s + self.new_frames]) + inherited])
        lab += np.stack([self._frame_drift(k) for k in range(chunk)])[:, None, None, :]
        rgb = lab_to_rgb(lab)
        if self.noise:
            rng = np.random.default_rng(seed)
            rgb = np.clip(rgb + rng.normal(0.0, self.noise, rgb.shape).astype(np.float32), 0.0, 1.0)
        return torch.from_numpy(rgb)
