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
  on dim 0, e.g. ComfyUI's ``[T, H, W, C]`` IMAGE in [0, 1]), one tensor per chunk: nothing of
  the video's whole length is reserved up front, so memory grows with the frames made so far
  (or stays constant with ``keep_frames``, when the frames go to a store instead).
* Every chunk is conditioned on frames *read back from storage* (float32), and the anchor is the
  stored frame 0 unless given; so what a chunk sees depends only on the stored frames.
* Chunk ``i`` gets the seed ``chunk_seed(seed, i) = derive_seed(seed, i)``: a pure function of
  the base seed and the chunk index, with no RNG state carried from chunk to chunk; a
  ``chunk_seeds`` mapping overrides single chunks (re-roll one chunk, pin a good one).
* Together these make resuming exact: given the chunks finished so far (``resume_chunks``)
  and the same seeds, the resumed video equals the uninterrupted one bit for bit (as long
  as the chunk sampler itself is deterministic for a given seed).
* ``callback`` runs after every chunk with a :class:`ChunkProgress`; raising from it (e.g. the
  host's interruption) stops the loop. A bad chunk (wrong shape, NaN) raises
  :class:`~streamingt2v_core.runs.errors.ChunkFailedError` naming the chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from ..runs.errors import ChunkFailedError
from .plans import ExtensionPlan, extension_plan
from .samplers import derive_seed

__all__ = ["ChunkSampler", "ChunkProgress", "chunk_seed", "extend_chunks", "extend_video", "to_storage",
           "from_storage", "last_frames"]

_STORAGE_DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32)


class ChunkSampler(Protocol):
    """Generates one chunk: ``sampler(index, cond_frames, anchor, seed) -> frames``.

    Args:
        index: the chunk index (1, 2, ...; chunk 0 is the given first chunk).
        cond_frames: ``[cond_frames, *frame_shape]`` float32 on the CPU, the last frames of the
            video so far (values as stored, e.g. in [0, 1]).
        anchor: ``[*frame_shape]`` float32, the APM anchor frame.
        seed: this chunk's seed (``chunk_seed(base_seed, index)`` unless overridden); seed the
            chunk's noise generator with it (and nothing else) to keep resuming exact.

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
        new_frames: the frames this chunk added, in ``storage_dtype`` on the CPU.
        plan: the whole plan.
        seed: the chunk's seed (None for chunk 0).
        chunks: the chunks kept so far (all of them unless ``keep_frames`` was given).
    """

    index: int
    num_chunks: int
    new_range: tuple[int, int]
    frames_done: int
    new_frames: Tensor
    plan: ExtensionPlan
    seed: int | None = None
    chunks: list[Tensor] = field(default_factory=list)

    @property
    def video(self) -> Tensor:
        """The kept frames so far as one tensor (a copy; the whole video unless ``keep_frames``)."""
        return torch.cat(self.chunks)


def chunk_seed(base_seed: int, chunk_index: int) -> int:
    """The seed of chunk ``chunk_index``: ``derive_seed(base_seed, chunk_index)``."""
    return derive_seed(base_seed, chunk_index)


def to_storage(frames: Tensor, storage_dtype: torch.dtype) -> Tensor:
    """Frames to CPU storage: uint8 as ``round(255 * clamp(x, 0, 1))``, floats by casting."""
    frames = frames.detach().to("cpu")
    if storage_dtype == torch.uint8:
        if frames.dtype == torch.uint8:
            return frames
        return (frames.to(torch.float32).clamp(0, 1) * 255.0).round().to(torch.uint8)
    return frames.to(storage_dtype)


def from_storage(frames: Tensor) -> Tensor:
    """Stored frames back to float32 (uint8 divided by 255)."""
    if frames.dtype == torch.uint8:
        return frames.to(torch.float32) / 255.0
    return frames.to(torch.float32)


def last_frames(chunks: Sequence[Tensor], n: int) -> Tensor:
    """The last ``n`` frames of a video held as a list of chunks (fewer if it is shorter)."""
    parts: list[Tensor] = []
    need = n
    for c in reversed(chunks):
        if need <= 0:
            break
        take = c[-need:] if c.shape[0] > need else c
        parts.append(take)
        need -= take.shape[0]
    return torch.cat(parts[::-1])


def _has_non_finite(frames: Tensor) -> bool:
    return frames.is_floating_point() and not bool(torch.isfinite(frames).all())


def _check_finite(name: str, frames: Tensor) -> None:
    if _has_non_finite(frames):
        raise ValueError(f"{name} must be finite (found NaN or inf)")


def extend_chunks(
    first_chunk: Tensor,
    chunk_sampler: ChunkSampler,
    total_frames: int,
    *,
    seed: int = 0,
    chunk_seeds: Mapping[int, int] | None = None,
    anchor: Tensor | None = None,
    chunk: int = 16,
    cond_frames: int = 8,
    storage_dtype: torch.dtype = torch.uint8,
    callback: Callable[[ChunkProgress], None] | None = None,
    resume_chunks: Sequence[Tensor] | None = None,
    keep_frames: int | None = None,
    sampler_returns_new_frames: bool = False,
) -> list[Tensor]:
    """Extend ``first_chunk`` to ``total_frames`` frames, chunk by chunk; the video as a list of chunks.

    Args:
        first_chunk: ``[F, *frame_shape]`` frames (F >= ``cond_frames``), e.g. 16 frames of a
            ComfyUI IMAGE in [0, 1]; becomes frames ``0..F-1`` of the video (chunk 0).
        chunk_sampler: generates one chunk (see :class:`ChunkSampler`).
        total_frames: length of the video (>= F).
        seed: the base seed; chunk ``i`` gets ``chunk_seed(seed, i)``...
        chunk_seeds: ...unless this maps ``i`` to its own seed (re-roll or pin one chunk).
        anchor: the APM anchor frame ``[*frame_shape]``; default the stored frame 0.
        chunk, cond_frames: frames per generated chunk and conditioning frames (16, 8).
        storage_dtype: ``torch.uint8`` (values in [0, 1], quantised) or a float dtype.
        callback: called after every chunk (including the first) with a
            :class:`ChunkProgress`; may raise to interrupt.
        resume_chunks: the first chunks of an earlier run, in order (chunk 0 = the first chunk
            as stored, then the kept frames of chunks 1, 2, ...); they are not generated again.
        keep_frames: keep only the chunks holding the last ``keep_frames`` frames (at least
            ``cond_frames``) instead of the whole video: memory stays constant in the length,
            for callers that store every chunk as it comes (``callback``).
        sampler_returns_new_frames: the sampler returns only the chunk's ``chunk - cond_frames``
            new frames (already in ``storage_dtype`` if it likes): they are kept as they are, no
            copy, so a caller that also caches them holds each frame once.

    Returns:
        The kept frames of every chunk in order (``storage_dtype``, CPU): chunk 0 has F frames,
        the others ``chunk - cond_frames`` (the last one possibly fewer); concatenated they are
        the video. With ``keep_frames``, only the last chunks.
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
    if keep_frames is not None and keep_frames < cond_frames:
        raise ValueError(f"keep_frames must be >= cond_frames ({cond_frames}), got {keep_frames}")
    plan = extension_plan(total_frames, first_chunk=first_chunk.shape[0], chunk=chunk,
                          cond_frames=cond_frames)
    frame_shape = tuple(first_chunk.shape[1:])
    seeds = dict(chunk_seeds or {})

    chunks: list[Tensor] = []
    if resume_chunks:
        if len(resume_chunks) > plan.num_chunks:
            raise ValueError(f"resume_chunks holds {len(resume_chunks)} chunks, the plan has {plan.num_chunks}")
        for spec, c in zip(plan.chunks, resume_chunks):
            want = (spec.num_new_frames, *frame_shape)
            if not isinstance(c, Tensor) or tuple(c.shape) != want:
                got = tuple(c.shape) if isinstance(c, Tensor) else type(c).__name__
                raise ValueError(f"resume_chunks[{spec.index}] must be {list(want)}, got {got}")
            _check_finite(f"resume_chunks[{spec.index}]", c)
            chunks.append(c.detach().to("cpu") if c.dtype == storage_dtype
                          else to_storage(from_storage(c), storage_dtype))
    else:
        chunks.append(to_storage(first_chunk, storage_dtype))
    done_chunks = len(chunks)

    if anchor is None:
        anchor_frame = from_storage(chunks[0][0])
    else:
        if tuple(anchor.shape) != frame_shape:
            raise ValueError(f"anchor must have the frame shape {frame_shape}, got {tuple(anchor.shape)}")
        _check_finite("anchor", anchor)
        anchor_frame = anchor.detach().to("cpu", torch.float32)

    def trim() -> None:
        if keep_frames is None:
            return
        kept = 0
        for i in range(len(chunks) - 1, -1, -1):
            kept += chunks[i].shape[0]
            if kept >= keep_frames:
                del chunks[:i]
                return

    def report(index: int, chunk_seed_: int | None) -> None:
        trim()
        if callback is None:
            return
        spec = plan.chunks[index]
        callback(ChunkProgress(spec.index, plan.num_chunks, spec.new_range, spec.new_range[1], chunks[-1], plan,
                               chunk_seed_, chunks))

    if done_chunks == 1 and not resume_chunks:
        report(0, None)
    for spec in plan.chunks[done_chunks:]:
        cond = from_storage(last_frames(chunks, cond_frames))
        this_seed = int(seeds[spec.index]) if spec.index in seeds else chunk_seed(seed, spec.index)
        out = chunk_sampler(spec.index, cond, anchor_frame, this_seed)
        want = chunk - cond_frames if sampler_returns_new_frames else chunk
        if not isinstance(out, Tensor) or tuple(out.shape) != (want, *frame_shape):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ChunkFailedError(spec.index, f"chunk_sampler must return [{want}, "
                                               f"{', '.join(map(str, frame_shape))}] frames, got {got}")
        if _has_non_finite(out):
            raise ChunkFailedError(spec.index, "chunk_sampler output has NaN or inf values")
        k0, k1 = spec.keep_range
        if sampler_returns_new_frames:
            k0, k1 = 0, k1 - k0
        chunks.append(to_storage(out[k0:k1], storage_dtype))
        report(spec.index, this_seed)
    trim()
    return chunks


def extend_video(
    first_chunk: Tensor,
    chunk_sampler: ChunkSampler,
    total_frames: int,
    *,
    seed: int = 0,
    chunk_seeds: Mapping[int, int] | None = None,
    anchor: Tensor | None = None,
    chunk: int = 16,
    cond_frames: int = 8,
    storage_dtype: torch.dtype = torch.uint8,
    callback: Callable[[ChunkProgress], None] | None = None,
    resume_frames: Tensor | None = None,
) -> Tensor:
    """:func:`extend_chunks`, concatenated: ``[total_frames, *frame_shape]`` in ``storage_dtype``.

    ``resume_frames`` are the frames finished by an earlier run (``[n, *frame_shape]``, a
    prefix of the video ending on a chunk boundary of the plan); those chunks are not made again.
    """
    resume_chunks = None
    if resume_frames is not None:
        if not isinstance(first_chunk, Tensor) or first_chunk.dim() < 1:
            raise ValueError("first_chunk must be a tensor of frames [F, ...]")
        plan = extension_plan(total_frames, first_chunk=first_chunk.shape[0], chunk=chunk,
                              cond_frames=cond_frames)
        frame_shape = tuple(first_chunk.shape[1:])
        n = resume_frames.shape[0] if resume_frames.dim() >= 1 else -1
        ends = [c.new_range[1] for c in plan.chunks]
        if tuple(resume_frames.shape[1:]) != frame_shape or n not in ends:
            raise ValueError(
                f"resume_frames must be [n, {', '.join(map(str, frame_shape))}] with n a chunk "
                f"boundary of the plan ({ends[:4]}...{ends[-1]}), got shape "
                f"{tuple(resume_frames.shape)}"
            )
        _check_finite("resume_frames", resume_frames)
        resume_chunks = [resume_frames[s:e] for s, e in (c.new_range for c in plan.chunks[: ends.index(n) + 1])]
    chunks = extend_chunks(first_chunk, chunk_sampler, total_frames, seed=seed, chunk_seeds=chunk_seeds,
                           anchor=anchor, chunk=chunk, cond_frames=cond_frames, storage_dtype=storage_dtype,
                           callback=callback, resume_chunks=resume_chunks)
    return torch.cat(chunks)
