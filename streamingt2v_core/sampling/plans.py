"""Frame plans: which frames each chunk of the extender and each window of the refiner covers.

Two plans, both pure integer arithmetic so the nodes (and the web widget that previews the
plan) can compute them without a model:

* :func:`extension_plan`, the autoregressive extender's chunks (paper Sec. 3, official
  ``VideoLDM.predict_step``): a first chunk of 16 frames, then chunks of 16 frames each
  conditioned on the last 8 frames of the video so far and adding 8 new frames.
* :func:`refiner_plan`, the refiner's overlapping windows (chunk C=24, overlap O=8).

Where we deviate from the official code, on purpose:

* The official extender runs ``(N - 8) // 8`` iterations and so rounds the length *down* to a
  multiple of 8. We round *up*: the last chunk is generated whole and trimmed, so the video has
  exactly ``total_frames`` frames.
* The official refiner trims the video to ``n * (C - O) + O`` frames (1200 -> 1192). We keep
  every frame: when the regular windows stop short of the end, one more window is aligned to the
  end of the video. Its overlap with the previous window is then larger than O, so the blending
  (:mod:`.blending`) works with a per-boundary overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "ChunkSpec",
    "ExtensionPlan",
    "extension_plan",
    "refiner_plan",
    "window_overlaps",
]


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class ChunkSpec:
    """One chunk of the extension loop.

    Attributes:
        index: 0 for the first chunk (made by the text-to-video model or given by the user),
            then 1, 2, ...
        cond_range: ``[start, end)`` frames of the video this chunk is conditioned on (the CAM
            input); ``(0, 0)`` for the first chunk.
        new_range: ``[start, end)`` frames of the video this chunk adds.
        keep_range: ``[start, end)`` frames *of the chunk's own output* that become
            ``new_range`` (the first chunk keeps ``[0, n)``, later chunks ``[cond, cond + n)``,
            i.e. frames 8..15 of a 16-frame chunk, fewer for a trimmed last chunk).
    """

    index: int
    cond_range: tuple[int, int]
    new_range: tuple[int, int]
    keep_range: tuple[int, int]

    @property
    def num_new_frames(self) -> int:
        return self.new_range[1] - self.new_range[0]


@dataclass(frozen=True)
class ExtensionPlan:
    """The extender's chunk plan for a video of ``total_frames`` frames.

    Attributes:
        total_frames: frames in the final video (exactly the requested number).
        num_chunks: number of chunks, including the first one.
        chunks: one :class:`ChunkSpec` per chunk, in order.
        frames_generated: frames the chunks would add if none were trimmed
            (``first_chunk + (num_chunks - 1) * (chunk - cond_frames)``, >= ``total_frames``);
            the difference is what the last chunk drops.
        first_chunk, chunk, cond_frames: the sizes the plan was made with.
    """

    total_frames: int
    num_chunks: int
    chunks: list[ChunkSpec] = field(default_factory=list)
    frames_generated: int = 0
    first_chunk: int = 16
    chunk: int = 16
    cond_frames: int = 8


def extension_plan(
    total_frames: int, first_chunk: int = 16, chunk: int = 16, cond_frames: int = 8
) -> ExtensionPlan:
    """Chunk plan of the autoregressive extension for a video of ``total_frames`` frames.

    The first chunk gives frames ``[0, first_chunk)``. Every later chunk generates ``chunk``
    frames conditioned on the last ``cond_frames`` frames of the video so far; its first
    ``cond_frames`` frames re-generate the conditioning frames and are discarded, the other
    ``chunk - cond_frames`` are appended (the official code keeps frames 8..15). The last chunk
    may add fewer frames (it is generated whole and trimmed) so the video has exactly
    ``total_frames`` frames; unlike the official code, which rounds down to a multiple of 8.

    Raises:
        ValueError: ``total_frames < first_chunk`` (below one chunk), ``first_chunk <
            cond_frames`` (the first chunk cannot condition the second), ``chunk <= cond_frames``
            (no new frames per chunk), or a non-positive size.
    """
    cond_frames = _check_int("cond_frames", cond_frames, 1)
    first_chunk = _check_int("first_chunk", first_chunk, 1)
    if first_chunk < cond_frames:
        raise ValueError(
            f"first_chunk must be >= cond_frames ({cond_frames}) so it can condition the next "
            f"chunk, got {first_chunk}"
        )
    chunk = _check_int("chunk", chunk, 1)
    if chunk <= cond_frames:
        raise ValueError(
            f"chunk must be > cond_frames ({cond_frames}) to add new frames, got {chunk}"
        )
    if isinstance(total_frames, bool) or not isinstance(total_frames, int):
        raise ValueError(f"total_frames must be an integer >= first_chunk ({first_chunk}), "
                         f"got {total_frames!r}")
    if total_frames < first_chunk:
        raise ValueError(
            f"total_frames must be >= first_chunk ({first_chunk}), one chunk; got {total_frames}"
        )

    new_per_chunk = chunk - cond_frames
    chunks = [ChunkSpec(0, (0, 0), (0, first_chunk), (0, first_chunk))]
    end = first_chunk
    while end < total_frames:
        n_new = min(new_per_chunk, total_frames - end)
        chunks.append(
            ChunkSpec(
                index=len(chunks),
                cond_range=(end - cond_frames, end),
                new_range=(end, end + n_new),
                keep_range=(cond_frames, cond_frames + n_new),
            )
        )
        end += n_new
    num_chunks = len(chunks)
    return ExtensionPlan(
        total_frames=total_frames,
        num_chunks=num_chunks,
        chunks=chunks,
        frames_generated=first_chunk + (num_chunks - 1) * new_per_chunk,
        first_chunk=first_chunk,
        chunk=chunk,
        cond_frames=cond_frames,
    )


def refiner_plan(num_frames: int, chunk: int = 24, overlap: int = 8) -> list[tuple[int, int]]:
    """Overlapping ``[start, end)`` windows of the refiner, covering every frame.

    Windows start at ``0, C - O, 2 (C - O), ...`` as in the official code while they fit. The
    official code then drops the remaining frames (1200 -> 1192); we add one more window aligned
    to the end of the video instead, whose overlap with its left neighbour is larger than
    ``overlap`` (between ``overlap + 1`` and ``chunk - 1``). A video shorter than one chunk is a
    single window over the whole video.

    Raises:
        ValueError: ``num_frames < 1``, ``chunk < 1``, or ``overlap`` outside ``[0, chunk - 1]``.
    """
    num_frames = _check_int("num_frames", num_frames, 1)
    chunk = _check_int("chunk", chunk, 1)
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < chunk:
        raise ValueError(f"overlap must be an integer in [0, chunk - 1] = [0, {chunk - 1}], "
                         f"got {overlap!r}")
    if num_frames <= chunk:
        return [(0, num_frames)]
    stride = chunk - overlap
    windows = []
    start = 0
    while start + chunk <= num_frames:
        windows.append((start, start + chunk))
        start += stride
    if windows[-1][1] < num_frames:
        windows.append((num_frames - chunk, num_frames))
    return windows


def window_overlaps(windows: list[tuple[int, int]]) -> list[int]:
    """Overlap (in frames) of each window with its left neighbour: one entry per boundary.

    Raises:
        ValueError: windows that are not sorted, leave a gap, or nest inside each other.
    """
    overlaps = []
    for i in range(1, len(windows)):
        (s0, e0), (s1, e1) = windows[i - 1], windows[i]
        if not (s0 < s1 <= e0 < e1):
            raise ValueError(
                f"windows must be sorted, contiguous and not nested; windows[{i - 1}]={windows[i - 1]}"
                f" and windows[{i}]={windows[i]} are not"
            )
        overlaps.append(e0 - s1)
    return overlaps
