"""Drift and seams: *where* along a long video quality drops (issue 13).

SCuts, MAWE and CLIP score give one number per video. A long StreamingT2V video fails in two
places they do not locate: at the **joins** of the extension chunks (a chunk that does not continue
its conditioning frames smoothly stutters or jumps) and **over chunks** (colours and the subject
drift away from the anchor, a little more with every chunk). This module measures both per join and
per chunk.

Chunk plan. The joins are where each chunk's new frames start: the extender's plan
(:func:`streamingt2v_core.sampling.plans.extension_plan`: a first chunk, then ``chunk - cond``
new frames per chunk, the last one possibly trimmed) gives contiguous windows ``[s, e)`` of new
frames. The refiner's plan (:func:`~streamingt2v_core.sampling.plans.refiner_plan`) gives
overlapping windows whose seams are the overlaps.

Seam score (the definition of ``bench/bench_seams.py``,
:func:`streamingt2v_core.sampling.synthetic.seam_score`). The change of a pair of consecutive
frames is their mean absolute pixel difference (RGB in [0, 1]; ``synthetic.frame_differences``).
The pairs *at* the join of windows ``i-1`` and ``i`` are ``(f, f+1)`` for
``start_i - 1 <= f <= end_{i-1} - 1``: for the extender's contiguous windows that is the single pair
that crosses from the old frames into the chunk's new ones; for the refiner the overlap and the
pairs entering and leaving it. Every other pair is "inside chunks". The **video's seam score** is
``mean(change at joins) / mean(change inside chunks)``, exactly ``synthetic.seam_score`` (a test
checks the two agree); 1.0 is seamless. (Only for a still video, where nothing changes inside the
chunks, does it fall back to the floored ratio below.) The **seam ratio of one join** is the mean
change at that join over the mean change of the pairs inside the two chunks around it, each plus a floor of half
a grey level (:data:`CHANGE_FLOOR`) so a still video with sub-quantisation noise cannot produce a
huge ratio out of nothing, while a jump after a still chunk still scores high.

Which joins stand out (documented rule, both parts robust to the video's own motion):

* a join whose ratio is at least :data:`SEAM_RATIO_THRESHOLD` (2.0: the change across the join is
  at least twice the change inside the chunks around it) stands out on its own; this also catches
  a video in which *every* join jumps (a median rule alone would call that normal);
* a join that is an outlier among the video's joins stands out too: its modified z-score
  ``0.6745 (r - median) / MAD`` over the joins' ratios is at least :data:`ROBUST_Z_THRESHOLD` (3.5,
  Iglewicz and Hoaglin's cut-off; the MAD is floored at 0.01 so that a video whose joins agree
  exactly gives finite scores) *and* its ratio is at least :data:`ROBUST_MIN_RATIO` (1.25), so
  the tiny spread of a clean video does not flag joins at 1.02. Needs at least 3 joins.

Drift curve over chunks. Each chunk's colour statistics in CIELAB (:func:`streamingt2v_core.color.rgb_to_lab`:
sRGB, D65, L in [0, 100], a and b about [-128, 127]): mean and spread (standard deviation over
the chunk's pixels) per channel. Drift of chunk ``k`` against the anchor chunk (chunk 0, whose
frame 0 is the APM anchor): the mean colour's offset and its length, the CIE76 colour difference
``delta_e`` (about 2.3 is a just noticeable difference), and the spread ratio per channel (1 = same
contrast and saturation). ``drift_per_chunk`` is the length of the least-squares slope of the
chunks' mean colour over their centre frames, times the frames a chunk adds (8 for the extender,
16 for the refiner's windows): a steady drift's speed in delta E per chunk. Per frame,
``frame_delta_e`` is each frame's mean colour against the anchor chunk's: the curve of the plot.

With image embeddings (the node gets them from the host's CLIP_VISION; this module never sees a
model), each embedded frame's cosine similarity to the anchor frame's embedding, and per chunk the
mean over its embedded frames: the subject's drift, which colour statistics miss.

Non-finite frames (a failed decode) are not an error: their statistics and the pairs that touch
them are NaN, every aggregate uses the finite values only, and ``notes`` say what could not be
computed. Frames are read in blocks, so memory stays bounded in the video's length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..color import rgb_to_lab
from ..sampling.plans import extension_plan, refiner_plan, window_overlaps
from ..sampling.synthetic import frame_differences
from .frames import FrameArray

__all__ = [
    "DRIFT_PLANS",
    "SEAM_RATIO_THRESHOLD",
    "ROBUST_Z_THRESHOLD",
    "ROBUST_MIN_RATIO",
    "CHANGE_FLOOR",
    "JoinSeam",
    "ChunkDrift",
    "DriftSeamsResult",
    "chunk_windows",
    "chunk_segments",
    "join_pairs",
    "clip_sample_frames",
    "measure_drift_and_seams",
]

DRIFT_PLANS = ("extension", "refiner")
"""Chunk plans whose joins are scored: the extender's chunks or the refiner's windows."""

SEAM_RATIO_THRESHOLD = 2.0
"""A join whose change is at least this many times the change inside its chunks stands out."""

ROBUST_Z_THRESHOLD = 3.5
"""Modified z-score (Iglewicz-Hoaglin) above which a join is an outlier among the video's joins."""

ROBUST_MIN_RATIO = 1.25
"""An outlier join must also have at least this ratio (a clean video's joins sit near 1.0)."""

CHANGE_FLOOR = 0.5 / 255.0
"""Added to both sides of a join's ratio: half a grey level of mean absolute change."""

_MAD_FLOOR = 0.01  # ratio units: joins of a clean video agree to about this; avoids z = inf
_LAB_PIXELS = 1 << 20  # pixels per Lab conversion: bounds its float intermediates (~12 MB each)
_BLOCK = 8  # frames per read: frame_differences works in float64 (8 frames of 720p: ~180 MB)
_RANGE_TOLERANCE = 1e-3


@dataclass
class JoinSeam:
    """One join of the chunk plan.

    Attributes:
        index: the window that starts here (1 for the join of windows 0 and 1, ...).
        frame: first frame of the new window (the extender's first new frame of the chunk; the
            refiner's first overlap frame).
        pairs: ``(first, last)`` pair indices at the join (pair ``f`` is frames ``f, f+1``).
        across: mean change of the pairs at the join.
        inside: mean change of the pairs inside the two windows around the join.
        ratio: ``(across + floor) / (inside + floor)``; 1.0 = the join is as smooth as the chunks.
        robust_z: modified z-score of ``ratio`` among the joins (NaN with fewer than 3 joins).
        stands_out: whether the rule of the module docstring flags this join.
        reason: why it stands out (empty when it does not).
    """

    index: int
    frame: int
    pairs: tuple[int, int]
    across: float
    inside: float
    ratio: float
    robust_z: float = float("nan")
    stands_out: bool = False
    reason: str = ""

    @property
    def mark_x(self) -> float:
        """Where the plot marks this join on the frame axis (the middle of its pairs)."""
        return (self.pairs[0] + self.pairs[1]) / 2.0 + 0.5


@dataclass
class ChunkDrift:
    """Colour (and CLIP) statistics of one chunk against the anchor chunk.

    Attributes:
        index: chunk number (0 = the anchor chunk).
        frames: ``[start, end)`` frames the statistics cover.
        valid_frames: how many of them are finite.
        mean_lab, std_lab: mean and spread (standard deviation) of L, a, b over the chunk's pixels.
        delta_lab: ``mean_lab - anchor mean_lab``.
        delta_e: CIE76 colour difference of the mean colours, ``|delta_lab|``.
        spread_ratio: ``std_lab / anchor std_lab`` per channel.
        clip_similarity: mean cosine similarity of the chunk's embedded frames to the anchor
            frame's embedding (NaN without embeddings or without an embedded frame here).
    """

    index: int
    frames: tuple[int, int]
    valid_frames: int
    mean_lab: list[float]
    std_lab: list[float]
    delta_lab: list[float]
    delta_e: float
    spread_ratio: list[float]
    clip_similarity: float = float("nan")


@dataclass
class DriftSeamsResult:
    """Result of :func:`measure_drift_and_seams`: every number, per join, per chunk and per frame.

    Attributes:
        num_frames: frames in the video.
        plan: ``"extension"`` or ``"refiner"``; ``plan_params`` the sizes used.
        windows: the plan's windows ``[start, end)``.
        seam_score: mean change at joins over mean change inside chunks (``synthetic.seam_score``).
        joins: one :class:`JoinSeam` per join.
        pair_change: change of every consecutive pair (``num_frames - 1`` values).
        chunks: one :class:`ChunkDrift` per chunk.
        frame_delta_e: each frame's mean colour against the anchor chunk's (delta E, per frame).
        drift_per_chunk: delta E per chunk of a steady drift (slope of the chunks' mean colour over
            their centre frames, times the new frames per chunk).
        final_delta_e, max_delta_e: the last chunk's (the last with a finite frame) and the largest
            delta E against the anchor.
        clip_frames, clip_similarity: embedded frames and their cosine similarity to the anchor
            frame (empty without embeddings); ``clip_drift_per_chunk`` the change of the chunks'
            mean similarity per chunk, fitted like ``drift_per_chunk`` (negative: moving away).
        nonfinite_frames: frames holding NaN or inf (left out of every statistic).
        notes: what could not be computed, and why.
    """

    num_frames: int
    plan: str
    plan_params: dict[str, int]
    windows: list[tuple[int, int]]
    seam_score: float
    joins: list[JoinSeam]
    pair_change: list[float]
    chunks: list[ChunkDrift]
    frame_delta_e: list[float]
    drift_per_chunk: float
    final_delta_e: float
    max_delta_e: float
    clip_frames: list[int] = field(default_factory=list)
    clip_similarity: list[float] = field(default_factory=list)
    clip_drift_per_chunk: float = float("nan")
    nonfinite_frames: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def flagged_joins(self) -> list[JoinSeam]:
        """The joins that stand out, in order along the video."""
        return [j for j in self.joins if j.stands_out]

    @property
    def worst_join(self) -> JoinSeam | None:
        """The join with the largest finite ratio (None if none is finite)."""
        finite = [j for j in self.joins if math.isfinite(j.ratio)]
        return max(finite, key=lambda j: j.ratio) if finite else None

    @property
    def has_clip(self) -> bool:
        return bool(self.clip_frames)

    def to_report(self) -> dict[str, Any]:
        """Every number as a JSON-ready dict (NaN and inf become None)."""
        worst = self.worst_join
        report = {
            "metric": "Drift & Seams",
            "num_frames": self.num_frames,
            "plan": self.plan,
            "plan_params": dict(self.plan_params),
            "windows": [list(w) for w in self.windows],
            "seam_score": self.seam_score,
            "seam_rule": {"ratio_threshold": SEAM_RATIO_THRESHOLD, "robust_z_threshold": ROBUST_Z_THRESHOLD,
                          "robust_min_ratio": ROBUST_MIN_RATIO, "change_floor": CHANGE_FLOOR},
            "worst_join": None if worst is None else worst.frame,
            "flagged_joins": [j.frame for j in self.flagged_joins],
            "joins": [{"index": j.index, "frame": j.frame, "pairs": list(j.pairs), "across": j.across,
                       "inside": j.inside, "ratio": j.ratio, "robust_z": j.robust_z,
                       "stands_out": j.stands_out, "reason": j.reason} for j in self.joins],
            "pair_change": list(self.pair_change),
            "colour_space": "CIELAB (D65, sRGB input)",
            "drift_per_chunk": self.drift_per_chunk,
            "final_delta_e": self.final_delta_e,
            "max_delta_e": self.max_delta_e,
            "chunks": [{"index": c.index, "frames": list(c.frames), "valid_frames": c.valid_frames,
                        "mean_lab": c.mean_lab, "std_lab": c.std_lab, "delta_lab": c.delta_lab,
                        "delta_e": c.delta_e, "spread_ratio": c.spread_ratio,
                        "clip_similarity": c.clip_similarity} for c in self.chunks],
            "frame_delta_e": list(self.frame_delta_e),
            "clip": None if not self.has_clip else {
                "frames": list(self.clip_frames), "similarity": list(self.clip_similarity),
                "drift_per_chunk": self.clip_drift_per_chunk},
            "nonfinite_frames": list(self.nonfinite_frames),
            "notes": list(self.notes),
        }
        return _json_safe(report)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# The chunk plan
# ---------------------------------------------------------------------------------------------


def chunk_windows(
    plan: str,
    num_frames: int,
    first_chunk: int = 16,
    new_frames_per_chunk: int = 8,
    refiner_chunk: int = 24,
    refiner_overlap: int = 8,
    name: str = "frames",
) -> list[tuple[int, int]]:
    """Windows ``[start, end)`` of a chunk plan over ``num_frames`` frames, at least two of them.

    ``extension``: the new frames of every chunk (``first_chunk``, then ``new_frames_per_chunk``
    per chunk, the last one trimmed to the video's end, as the extender makes it). ``refiner``: the
    refiner's overlapping windows.

    Raises:
        ValueError: unknown plan, bad sizes, or a video that is a single chunk (no join), naming
            ``name`` (the frames' input) and the lengths involved.
    """
    if plan not in DRIFT_PLANS:
        raise ValueError(f"chunk_plan must be one of {DRIFT_PLANS}, got {plan!r}")
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"{name}: needs at least 1 frame, got {num_frames!r}")
    if plan == "extension":
        for arg, value in (("first_chunk", first_chunk), ("new_frames_per_chunk", new_frames_per_chunk)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg}: must be an integer >= 1, got {value!r}")
        if num_frames <= first_chunk:
            raise ValueError(
                f"{name}: the extension plan has a join only after the first chunk of {first_chunk} frames; "
                f"seams and drift need at least 2 chunks (more than {first_chunk} frames), got {num_frames}")
        cond = min(first_chunk, 8)
        ext = extension_plan(num_frames, first_chunk=first_chunk, chunk=cond + new_frames_per_chunk,
                             cond_frames=cond)
        return [c.new_range for c in ext.chunks]
    if num_frames <= refiner_chunk:
        raise ValueError(
            f"{name}: the refiner plan has a seam only after its first window of {refiner_chunk} frames; "
            f"seams and drift need at least 2 windows (more than {refiner_chunk} frames), got {num_frames}")
    windows = refiner_plan(num_frames, chunk=refiner_chunk, overlap=refiner_overlap)
    return windows


def chunk_segments(windows: Sequence[tuple[int, int]], num_frames: int) -> list[tuple[int, int]]:
    """Non-overlapping chunks for the drift statistics: ``[start_i, start_{i+1})`` and the last
    window to the end (for the extender's windows, the windows themselves)."""
    starts = [s for s, _ in windows]
    return [(s, starts[i + 1] if i + 1 < len(starts) else num_frames) for i, s in enumerate(starts)]


def join_pairs(windows: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` pair indices at each join: ``synthetic.seam_score``'s rule.

    Raises:
        ValueError: windows that are unsorted, leave gaps or nest (``plans.window_overlaps``).
    """
    window_overlaps(list(windows))
    return [(max(s1 - 1, 0), e0 - 1) for (_, e0), (s1, _) in zip(windows[:-1], windows[1:])]


def clip_sample_frames(segments: Sequence[tuple[int, int]], per_chunk: int,
                       skip: Sequence[int] = ()) -> list[int]:
    """Frames to embed for the CLIP drift: frame 0 (the anchor) and ``per_chunk`` frames evenly
    spaced over each chunk, ending on its last frame (where a chunk has drifted most); frames in
    ``skip`` (non-finite) are left out."""
    if isinstance(per_chunk, bool) or not isinstance(per_chunk, int) or per_chunk < 1:
        raise ValueError(f"clip_frames_per_chunk: must be an integer >= 1, got {per_chunk!r}")
    chosen = {0}
    for s, e in segments:
        n = min(per_chunk, e - s)
        chosen.update(s + round((e - s) * (k + 1) / n) - 1 for k in range(n))
    bad = set(skip)
    return sorted(f for f in chosen if f not in bad)


# ---------------------------------------------------------------------------------------------
# Per-frame statistics, in blocks
# ---------------------------------------------------------------------------------------------


def _as_float_block(block: Any, name: str, offset: int) -> np.ndarray:
    if isinstance(block, torch.Tensor):
        block = block.detach().cpu()
        block = block.numpy() if block.dtype != torch.bfloat16 else block.float().numpy()
    array = np.asarray(block)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name}: must be float in [0, 1] or uint8, got dtype {array.dtype}")
    array = array.astype(np.float32, copy=False)
    finite = array[np.isfinite(array)]
    if finite.size and (finite.min() < -_RANGE_TOLERANCE or finite.max() > 1.0 + _RANGE_TOLERANCE):
        raise ValueError(
            f"{name}: must hold float values in [0, 1] (ComfyUI IMAGE), got min {finite.min():.4g}, "
            f"max {finite.max():.4g} in frames {offset}..{offset + array.shape[0] - 1}; convert [-1, 1] "
            f"or 0..255 data first")
    return array


@dataclass
class _FrameStats:
    mean_lab: np.ndarray     # [T, 3] float64, NaN for non-finite frames
    mean_sq_lab: np.ndarray  # [T, 3]
    finite: np.ndarray       # [T] bool
    pair_change: np.ndarray  # [T - 1] float64


def _frame_statistics(frames: FrameArray, name: str, progress: Callable[[int, int], None] | None) -> _FrameStats:
    num_frames = int(frames.shape[0])
    mean_lab = np.full((num_frames, 3), np.nan)
    mean_sq = np.full((num_frames, 3), np.nan)
    finite = np.zeros(num_frames, dtype=bool)
    pair_change = np.full(max(num_frames - 1, 0), np.nan)
    previous: np.ndarray | None = None
    for start in range(0, num_frames, _BLOCK):
        block = _as_float_block(frames[start:start + _BLOCK], name, start)
        ok = np.isfinite(block.reshape(block.shape[0], -1)).all(axis=1)
        finite[start:start + block.shape[0]] = ok
        good = np.nonzero(ok)[0]
        step = max(1, _LAB_PIXELS // (block.shape[1] * block.shape[2]))
        for i in range(0, good.size, step):
            rows = good[i:i + step]
            lab = rgb_to_lab(block[rows]).reshape(rows.size, -1, 3).astype(np.float64)
            mean_lab[start + rows] = lab.mean(axis=1)
            mean_sq[start + rows] = (lab * lab).mean(axis=1)
        # Consecutive-pair change with the benchmark's own function (one frame of overlap).
        joined = block if previous is None else np.concatenate([previous, block])
        first_pair = start - (0 if previous is None else 1)
        if joined.shape[0] >= 2:
            diffs = frame_differences(torch.from_numpy(joined), frame_dim=0).numpy()
            pair_change[first_pair:first_pair + diffs.shape[0]] = diffs
        previous = block[-1:]
        if progress is not None:
            progress(min(start + _BLOCK, num_frames), num_frames)
    return _FrameStats(mean_lab, mean_sq, finite, pair_change)


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _slope(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Least-squares slope of each column of ``ys`` over ``xs`` (rows with NaN left out)."""
    ok = np.isfinite(ys).all(axis=1) if ys.ndim == 2 else np.isfinite(ys)
    if ok.sum() < 2:
        return np.full(ys.shape[1:] or (), np.nan)
    x = xs[ok] - xs[ok].mean()
    y = ys[ok] - ys[ok].mean(axis=0)
    return (x @ y) / float(x @ x) if ys.ndim == 2 else float(x @ y) / float(x @ x)


# ---------------------------------------------------------------------------------------------
# The measurement
# ---------------------------------------------------------------------------------------------


def _score_joins(pair_change: np.ndarray, windows: list[tuple[int, int]], notes: list[str]) -> tuple[float, list[JoinSeam]]:
    at_join = join_pairs(windows)
    boundary = np.zeros(pair_change.shape[0], dtype=bool)
    for first, last in at_join:
        boundary[first:last + 1] = True
    inside_mean, at_mean = _nanmean(pair_change[~boundary]), _nanmean(pair_change[boundary])
    if inside_mean > 0:
        seam = at_mean / inside_mean
    elif inside_mean == 0 and math.isfinite(at_mean):
        seam = (at_mean + CHANGE_FLOOR) / CHANGE_FLOOR
        notes.append("seam_score: nothing changes inside the chunks (a still video); the seam score is "
                     "(change at joins + floor) / floor with the half-grey-level floor")
    else:
        seam = float("nan")
        notes.append("seam_score: no finite pair of consecutive frames at or between the joins; undefined")
    joins = []
    for j, (first, last) in enumerate(at_join, start=1):
        lo = windows[j - 1][0]
        hi = windows[j][1] - 2  # last pair fully inside window j
        around = np.zeros_like(boundary)
        around[lo:hi + 1] = True
        inside = _nanmean(pair_change[around & ~boundary])
        across = _nanmean(pair_change[first:last + 1])
        ratio = (across + CHANGE_FLOOR) / (inside + CHANGE_FLOOR)
        if not math.isfinite(ratio):
            notes.append(f"join at frame {windows[j][0]}: no finite change across it or inside the chunks "
                         "around it (non-finite frames); its ratio is undefined")
        joins.append(JoinSeam(index=j, frame=windows[j][0], pairs=(first, last), across=across,
                              inside=inside, ratio=ratio))
    ratios = np.array([j.ratio for j in joins])
    finite = ratios[np.isfinite(ratios)]
    if finite.size >= 3:
        median = float(np.median(finite))
        mad = max(float(np.median(np.abs(finite - median))), _MAD_FLOOR)
        for join in joins:
            if math.isfinite(join.ratio):
                join.robust_z = 0.6745 * (join.ratio - median) / mad
    for join in joins:
        if not math.isfinite(join.ratio):
            continue
        if join.ratio >= SEAM_RATIO_THRESHOLD:
            join.stands_out = True
            join.reason = f"ratio {join.ratio:.2f} >= {SEAM_RATIO_THRESHOLD:g}"
        elif join.robust_z >= ROBUST_Z_THRESHOLD and join.ratio >= ROBUST_MIN_RATIO:
            join.stands_out = True
            join.reason = (f"outlier among the joins: robust z {join.robust_z:.1f} >= {ROBUST_Z_THRESHOLD:g} "
                           f"(ratio {join.ratio:.2f} >= {ROBUST_MIN_RATIO:g})")
    return seam, joins


def _check_embeddings(embeddings: Any, embedded_frames: Sequence[int] | None, anchor_embedding: Any,
                      num_frames: int) -> tuple[np.ndarray, list[int], np.ndarray]:
    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().to("cpu", torch.float64).numpy()
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] < 1 or emb.shape[1] < 1:
        raise ValueError(f"embeddings: must be [N, D] image embeddings (one row per embedded frame), "
                         f"got shape {tuple(emb.shape)}")
    frames = list(range(num_frames)) if embedded_frames is None else [int(f) for f in embedded_frames]
    if len(frames) != emb.shape[0]:
        raise ValueError(f"embedded_frames: one frame index per embedding row expected ({emb.shape[0]}), "
                         f"got {len(frames)}")
    if len(set(frames)) != len(frames) or any(not 0 <= f < num_frames for f in frames):
        raise ValueError(f"embedded_frames: must be distinct frame indices in [0, {num_frames - 1}], got {frames}")
    norms = np.linalg.norm(emb, axis=1)
    bad = [frames[i] for i in range(len(frames)) if not (np.isfinite(emb[i]).all() and norms[i] > 0)]
    if bad:
        raise ValueError(f"embeddings: rows for frames {bad[:8]} are NaN, infinite or zero; "
                         "an image encoder gave no usable embedding for them")
    if anchor_embedding is None:
        if 0 not in frames:
            raise ValueError("embedded_frames: must include frame 0 (the anchor) when no anchor_embedding "
                             "is given")
        anchor = emb[frames.index(0)]
    else:
        if isinstance(anchor_embedding, torch.Tensor):
            anchor_embedding = anchor_embedding.detach().to("cpu", torch.float64).numpy()
        anchor = np.asarray(anchor_embedding, dtype=np.float64).reshape(-1)
        if anchor.shape[0] != emb.shape[1]:
            raise ValueError(f"anchor_embedding: must have the embeddings' size {emb.shape[1]}, "
                             f"got {anchor.shape[0]} (another image encoder?)")
        if not (np.isfinite(anchor).all() and np.linalg.norm(anchor) > 0):
            raise ValueError("anchor_embedding: is NaN, infinite or zero")
    cos = emb @ anchor / (norms * np.linalg.norm(anchor))
    return cos, frames, anchor


def measure_drift_and_seams(
    frames: FrameArray,
    plan: str = "extension",
    *,
    first_chunk: int = 16,
    new_frames_per_chunk: int = 8,
    refiner_chunk: int = 24,
    refiner_overlap: int = 8,
    embeddings: Any = None,
    embedded_frames: Sequence[int] | None = None,
    anchor_embedding: Any = None,
    name: str = "frames",
    progress: Callable[[int, int], None] | None = None,
) -> DriftSeamsResult:
    """Seam ratio of every join and colour (and CLIP) drift of every chunk; see the module docstring.

    Args:
        frames: ``[T, H, W, 3]`` RGB, float in [0, 1] (ComfyUI IMAGE) or uint8; torch or numpy.
        plan: ``"extension"`` (the extender's chunks) or ``"refiner"`` (its windows).
        first_chunk, new_frames_per_chunk: the extension plan's sizes (16 and 8 by default).
        refiner_chunk, refiner_overlap: the refiner plan's sizes (24 and 8).
        embeddings: optional ``[N, D]`` image embeddings (e.g. CLIP vision ``image_embeds``).
        embedded_frames: the frame of each embedding row (default: every frame, ``N == T``).
        anchor_embedding: ``[D]``; default the embedding of frame 0.
        name: the frames' input name for error messages.
        progress: called as ``progress(frames_done, total)`` while frames are read.

    Raises:
        ValueError: bad frames (shape, dtype, range), a plan that does not fit the video (fewer
            than 2 chunks), or embeddings that do not match (shape, count, non-finite), naming the
            argument.
    """
    shape = tuple(frames.shape) if hasattr(frames, "shape") else None
    if shape is None or len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"{name}: must be [T, H, W, 3] RGB frames (ComfyUI IMAGE layout), got "
                         f"{shape if shape is not None else type(frames).__name__}")
    if shape[1] < 1 or shape[2] < 1:
        raise ValueError(f"{name}: has empty frames, shape {shape}")
    num_frames = int(shape[0])
    windows = chunk_windows(plan, num_frames, first_chunk, new_frames_per_chunk, refiner_chunk,
                            refiner_overlap, name=name)
    segments = chunk_segments(windows, num_frames)
    clip = None
    if embeddings is not None:
        clip = _check_embeddings(embeddings, embedded_frames, anchor_embedding, num_frames)

    stats = _frame_statistics(frames, name, progress)
    notes: list[str] = []
    nonfinite = [int(i) for i in np.nonzero(~stats.finite)[0]]
    if nonfinite:
        notes.append(f"{name}: {len(nonfinite)} frame(s) hold NaN or inf (first: {nonfinite[:8]}); they and the "
                     "pairs touching them are left out of every statistic")
    seam, joins = _score_joins(stats.pair_change, windows, notes)

    chunk_mean = np.full((len(segments), 3), np.nan)
    chunk_std = np.full((len(segments), 3), np.nan)
    valid = []
    for k, (s, e) in enumerate(segments):
        ok = stats.finite[s:e]
        valid.append(int(ok.sum()))
        if ok.any():
            m = stats.mean_lab[s:e][ok].mean(axis=0)
            sq = stats.mean_sq_lab[s:e][ok].mean(axis=0)
            chunk_mean[k] = m
            chunk_std[k] = np.sqrt(np.maximum(sq - m * m, 0.0))
        else:
            notes.append(f"chunk {k} (frames {s}..{e - 1}): no finite frame; its colour statistics are undefined")
    anchor_mean, anchor_std = chunk_mean[0], chunk_std[0]
    if not np.isfinite(anchor_mean).all():
        notes.append("anchor chunk: no finite frame; drift against it is undefined")
    delta = chunk_mean - anchor_mean
    delta_e = np.linalg.norm(delta, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread_ratio = np.where(anchor_std > 0, chunk_std / anchor_std, np.nan)
    frame_delta_e = np.linalg.norm(stats.mean_lab - anchor_mean, axis=1)
    # Regress on the chunks' centre frames (the first chunk is longer than the others) and scale
    # to one chunk's worth of new frames: a steady drift of d per frame reads 8 d for the extender.
    centres = np.array([(s + e - 1) / 2.0 for s, e in segments])
    step = new_frames_per_chunk if plan == "extension" else refiner_chunk - refiner_overlap
    slope = _slope(centres, chunk_mean) * step
    drift_per_chunk = float(np.linalg.norm(slope)) if np.isfinite(slope).all() else float("nan")

    clip_frames: list[int] = []
    clip_sim: list[float] = []
    chunk_clip = np.full(len(segments), np.nan)
    clip_slope = float("nan")
    if clip is not None:
        cos, clip_frames, _ = clip
        order = np.argsort(clip_frames)
        clip_frames = [clip_frames[i] for i in order]
        clip_sim = [float(cos[i]) for i in order]
        by_frame = dict(zip(clip_frames, clip_sim))
        for k, (s, e) in enumerate(segments):
            inside = [by_frame[f] for f in range(s, e) if f in by_frame]
            if inside:
                chunk_clip[k] = float(np.mean(inside))
            else:
                notes.append(f"chunk {k} (frames {s}..{e - 1}): no embedded frame; its CLIP similarity is undefined")
        clip_slope = float(_slope(centres, chunk_clip)) * step

    chunks = [
        ChunkDrift(index=k, frames=seg, valid_frames=valid[k], mean_lab=chunk_mean[k].tolist(),
                   std_lab=chunk_std[k].tolist(), delta_lab=delta[k].tolist(), delta_e=float(delta_e[k]),
                   spread_ratio=spread_ratio[k].tolist(), clip_similarity=float(chunk_clip[k]))
        for k, seg in enumerate(segments)
    ]
    finite_de = delta_e[np.isfinite(delta_e)]
    last = max((k for k in range(len(segments)) if math.isfinite(delta_e[k])), default=len(segments) - 1)
    if last != len(segments) - 1 and finite_de.size:
        notes.append(f"final_delta_e: the last chunk has no finite frame; chunk {last} (the last one that has) is used")
    params = ({"first_chunk": first_chunk, "new_frames_per_chunk": new_frames_per_chunk} if plan == "extension"
              else {"chunk": refiner_chunk, "overlap": refiner_overlap})
    if plan == "extension" and segments[-1][1] - segments[-1][0] < new_frames_per_chunk:
        s, e = segments[-1]
        notes.append(f"last chunk: {e - s} frame(s), fewer than {new_frames_per_chunk} (the plan does not divide "
                     "the video; the extender trims its last chunk the same way)")
    return DriftSeamsResult(
        num_frames=num_frames, plan=plan, plan_params=params, windows=list(windows), seam_score=float(seam),
        joins=joins, pair_change=stats.pair_change.tolist(), chunks=chunks, frame_delta_e=frame_delta_e.tolist(),
        drift_per_chunk=drift_per_chunk, final_delta_e=float(delta_e[last]),
        max_delta_e=float(finite_de.max()) if finite_de.size else float("nan"),
        clip_frames=clip_frames, clip_similarity=clip_sim, clip_drift_per_chunk=clip_slope,
        nonfinite_frames=nonfinite, notes=notes,
    )
