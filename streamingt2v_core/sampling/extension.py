"""The StreamingT2V autoregressive extension loop (resumable, chunk by chunk).

Official behaviour (``StreamingModelscope``, ``VideoLDM.predict_step``; study 4.3): chunk 0 is
the first 16 frames; every later chunk generates 16 frames conditioned (CAM) on the last 8
frames of the video so far and (APM) on the anchor, frame 0 of chunk 0; frames 8..15 are kept
and appended, frames 0..7 (a re-generation of the conditioning frames) are discarded. There is
no blending at this stage. The chunk plan is :func:`.plans.extension_plan` (which, unlike the
official code, trims the last chunk so the video has exactly the requested length).

Design for the node:

* Frames live on the CPU in a compact ``storage_dtype`` (``torch.uint8``: values
  ``round(255 x)``; or ``torch.float16``), in whatever per-frame layout the caller uses (frames
  on dim 0, e.g. ComfyUI's ``[T, H, W, C]`` IMAGE in [0, 1]).
* Every chunk is conditioned on frames *read back from storage* (float32), and the anchor is the
  stored frame 0 unless given; so what a chunk sees depends only on the stored frames.
* Chunk ``i`` gets the seed ``chunk_seed(seed, i) = derive_seed(seed, i)``: a pure function of
  the base seed and the chunk index, with no RNG state carried from chunk to chunk.
* Together these make resuming exact: given the frames finished so far (``resume_frames``)
  and the same base seed, the resumed video equals the uninterrupted one bit for bit (as long
  as the chunk sampler itself is deterministic for a given seed).
* ``callback`` runs after every chunk with a :class:`ChunkProgress`; raising from it (e.g. the
  host's interruption) stops the loop, and the frames finished so far are in
  ``progress.video`` (save them to resume later).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from .plans import ExtensionPlan, extension_plan
from .samplers import derive_seed

__all__ = ["ChunkSampler", "ChunkProgress", "chunk_seed", "extend_video", "to_storage",
           "from_storage"]

_STORAGE_DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32)


class ChunkSampler(Protocol):
    """Generates one chunk: ``sampler(index, cond_frames, anchor, seed) -> frames``.

    Args:
        index: the chunk index (1, 2, ...; chunk 0 is the given first chunk).
        cond_frames: ``[cond_frames, *frame_shape]`` float32 on the CPU, the last frames of the
            video so far (values as stored, e.g. in [0, 1]).
        anchor: ``[*frame_shape]`` float32, the APM anchor frame.
        seed: this chunk's seed, ``chunk_seed(base_seed, index)``; seed the chunk's noise
            generator with it (and nothing else) to keep resuming exact.

    Returns:
        ``[chunk, *frame_shape]`` frames (any device, float), of which frames
        ``cond_frames..`` are kept.
    """

    def __call__(self, index: int, cond_frames: Tensor, anchor: Tensor, seed: int) -> Tensor: ...


@dataclass
class ChunkProgress:
    """Passed to ``callback`` after every chunk.

    Attributes:
        index: the chunk just finished (0 for the first chunk).
        num_chunks: chunks in the plan.
        new_range: ``[start, end)`` of the frames this chunk added.
        frames_done: frames finished so far (``new_range[1]``).
        video: the finished frames, ``[frames_done, *frame_shape]`` in ``storage_dtype`` on the
            CPU (a view; clone it to keep it).
        new_frames: the frames this chunk added (a view of ``video``).
        plan: the whole plan.
    """

    index: int
    num_chunks: int
    new_range: tuple[int, int]
    frames_done: int
    video: Tensor
    new_frames: Tensor
    plan: ExtensionPlan


def chunk_seed(base_seed: int, chunk_index: int) -> int:
    """The seed of chunk ``chunk_index``: ``derive_seed(base_seed, chunk_index)``."""
    return derive_seed(base_seed, chunk_index)


def to_storage(frames: Tensor, storage_dtype: torch.dtype) -> Tensor:
    """Frames to CPU storage: uint8 as ``round(255 * clamp(x, 0, 1))``, floats by casting."""
    frames = frames.detach().to("cpu")
    if storage_dtype == torch.uint8:
        return (frames.to(torch.float32).clamp(0, 1) * 255.0).round().to(torch.uint8)
    return frames.to(storage_dtype)


def from_storage(frames: Tensor) -> Tensor:
    """Stored frames back to float32 (uint8 divided by 255)."""
    if frames.dtype == torch.uint8:
        return frames.to(torch.float32) / 255.0
    return frames.to(torch.float32)


def _check_finite(name: str, frames: Tensor) -> None:
    if frames.is_floating_point() and not torch.isfinite(frames).all():
        raise ValueError(f"{name} must be finite (found NaN or inf)")


def extend_video(
    first_chunk: Tensor,
    chunk_sampler: ChunkSampler,
    total_frames: int,
    *,
    seed: int = 0,
    anchor: Tensor | None = None,
    chunk: int = 16,
    cond_frames: int = 8,
    storage_dtype: torch.dtype = torch.uint8,
    callback: Callable[[ChunkProgress], None] | None = None,
    resume_frames: Tensor | None = None,
) -> Tensor:
    """Extend ``first_chunk`` to ``total_frames`` frames, chunk by chunk.

    Args:
        first_chunk: ``[F, *frame_shape]`` frames (F >= ``cond_frames``), e.g. 16 frames of a
            ComfyUI IMAGE in [0, 1]; becomes frames ``0..F-1`` of the video.
        chunk_sampler: generates one chunk (see :class:`ChunkSampler`).
        total_frames: length of the result (>= F).
        seed: the base seed; chunk ``i`` gets ``chunk_seed(seed, i)``.
        anchor: the APM anchor frame ``[*frame_shape]``; default the stored frame 0.
        chunk, cond_frames: frames per generated chunk and conditioning frames (16, 8).
        storage_dtype: ``torch.uint8`` (values in [0, 1], quantised) or a float dtype.
        callback: called after every chunk (including the first) with a
            :class:`ChunkProgress`; may raise to interrupt.
        resume_frames: frames already finished by an earlier run (``[n, *frame_shape]``, a
            prefix of the video ending on a chunk boundary of the plan); those chunks are not
            generated again.

    Returns:
        ``[total_frames, *frame_shape]`` in ``storage_dtype`` on the CPU.
    """
    if not isinstance(first_chunk, Tensor) or first_chunk.dim() < 1:
        raise ValueError("first_chunk must be a tensor of frames [F, ...]")
    if first_chunk.shape[0] < cond_frames:
        raise ValueError(
            f"first_chunk must have at least cond_frames={cond_frames} frames, "
            f"got {first_chunk.shape[0]}"
        )
    _check_finite("first_chunk", first_chunk)
    if storage_dtype not in _STORAGE_DTYPES:
        raise ValueError(f"storage_dtype must be one of {_STORAGE_DTYPES}, got {storage_dtype}")
    plan = extension_plan(total_frames, first_chunk=first_chunk.shape[0], chunk=chunk,
                          cond_frames=cond_frames)
    frame_shape = tuple(first_chunk.shape[1:])
    video = torch.empty((total_frames, *frame_shape), dtype=storage_dtype)

    done_chunks = 0
    if resume_frames is not None:
        n = resume_frames.shape[0] if resume_frames.dim() >= 1 else -1
        ends = [c.new_range[1] for c in plan.chunks]
        if tuple(resume_frames.shape[1:]) != frame_shape or n not in ends:
            raise ValueError(
                f"resume_frames must be [n, {', '.join(map(str, frame_shape))}] with n a chunk "
                f"boundary of the plan ({ends[:4]}...{ends[-1]}), got shape "
                f"{tuple(resume_frames.shape)}"
            )
        _check_finite("resume_frames", resume_frames)
        if resume_frames.dtype == storage_dtype:
            video[:n] = resume_frames.detach().to("cpu")
        else:
            video[:n] = to_storage(from_storage(resume_frames), storage_dtype)
        done_chunks = ends.index(n) + 1
    else:
        video[: first_chunk.shape[0]] = to_storage(first_chunk, storage_dtype)

    if anchor is None:
        anchor_frame = from_storage(video[0])
    else:
        if tuple(anchor.shape) != frame_shape:
            raise ValueError(f"anchor must have the frame shape {frame_shape}, got {tuple(anchor.shape)}")
        _check_finite("anchor", anchor)
        anchor_frame = anchor.detach().to("cpu", torch.float32)

    def report(spec_index: int) -> None:
        if callback is None:
            return
        spec = plan.chunks[spec_index]
        s, e = spec.new_range
        callback(ChunkProgress(spec.index, plan.num_chunks, spec.new_range, e, video[:e],
                               video[s:e], plan))

    if done_chunks == 0:
        report(0)
        done_chunks = 1
    for spec in plan.chunks[done_chunks:]:
        cond = from_storage(video[spec.cond_range[0]: spec.cond_range[1]])
        out = chunk_sampler(spec.index, cond, anchor_frame, chunk_seed(seed, spec.index))
        if not isinstance(out, Tensor) or tuple(out.shape) != (chunk, *frame_shape):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"chunk_sampler must return [{chunk}, {', '.join(map(str, frame_shape))}] "
                f"frames for chunk {spec.index}, got {got}"
            )
        _check_finite(f"chunk_sampler output (chunk {spec.index})", out)
        k0, k1 = spec.keep_range
        s, e = spec.new_range
        video[s:e] = to_storage(out[k0:k1], storage_dtype)
        report(spec.index)
    return video
