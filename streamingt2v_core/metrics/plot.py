"""Plots of a metric over time, drawn with Pillow (no plotting library), with seams marked.

A per-frame or per-pair series is drawn as a line over the frame axis, scene cuts as red lines,
and the chunk boundaries of a chunk plan (the extender's chunk starts, or the refiner's window
overlaps) in grey, so a reader sees at a glance whether a metric jumps at the seams.

Frame ``i`` sits at ``x = i``; a pair (i, i+1) at ``x = i + 0.5``; a boundary before frame ``b``
(a cut, a new chunk) at ``x = b - 0.5``, where the pair that crosses it sits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["PLAN_CHOICES", "ChunkMarks", "chunk_marks", "plot_series", "stack_plots", "plot_drift_and_seams"]

PLAN_CHOICES = ("none", "extension", "refiner")
"""Which chunk plan's boundaries to mark: none, the extender's chunks (first chunk 16, chunks of
16 conditioned on 8) or the refiner's windows (24 frames, overlap 8)."""

_BACKGROUND = (255, 255, 255)
_AXIS = (40, 40, 40)
_GRID = (232, 232, 232)
_LINE = (31, 119, 180)
_CUT = (214, 39, 40)
_BOUNDARY = (120, 120, 120)
_OVERLAP = (225, 225, 240)


@dataclass
class ChunkMarks:
    """Seams to draw: ``lines`` at x positions, shaded ``spans`` (x0, x1); ``label`` for the legend."""

    lines: list[float] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)
    label: str = ""


def chunk_marks(
    plan: Literal["none", "extension", "refiner"],
    num_frames: int,
    first_chunk: int = 16,
    chunk: int = 16,
    cond_frames: int = 8,
    refiner_chunk: int = 24,
    refiner_overlap: int = 8,
) -> ChunkMarks:
    """Boundaries of a chunk plan over a video of ``num_frames`` frames.

    ``extension``: a line before the first new frame of every chunk after the first
    (:func:`streamingt2v_core.sampling.plans.extension_plan`). ``refiner``: the overlap of every
    pair of neighbouring windows shaded, where randomized blending puts the seam
    (:func:`streamingt2v_core.sampling.plans.refiner_plan`). A video shorter than one chunk has
    no boundaries.

    Raises:
        ValueError: unknown ``plan`` or bad sizes.
    """
    from ..sampling.plans import extension_plan, refiner_plan

    if plan not in PLAN_CHOICES:
        raise ValueError(f"plan must be one of {PLAN_CHOICES}, got {plan!r}")
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be an integer >= 1, got {num_frames!r}")
    if plan == "none":
        return ChunkMarks()
    if plan == "extension":
        label = f"chunk start ({first_chunk}+{chunk - cond_frames}/chunk)"
        if num_frames <= first_chunk:
            return ChunkMarks(label=label)
        ext = extension_plan(num_frames, first_chunk=first_chunk, chunk=chunk, cond_frames=cond_frames)
        return ChunkMarks(lines=[c.new_range[0] - 0.5 for c in ext.chunks[1:]], label=label)
    windows = refiner_plan(num_frames, chunk=refiner_chunk, overlap=refiner_overlap)
    spans = [(windows[i][0] - 0.5, windows[i - 1][1] - 0.5) for i in range(1, len(windows))]
    return ChunkMarks(spans=spans, label=f"refiner overlap ({refiner_chunk}/{refiner_overlap})")


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def _nice_step(span: float, max_ticks: int) -> float:
    raw = span / max(1, max_ticks)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude


def _format(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.2g}"
    return f"{value:.4g}"


def plot_series(
    values: Sequence[float],
    x: Sequence[float] | None = None,
    title: str = "",
    y_label: str = "",
    x_label: str = "frame",
    num_frames: int | None = None,
    cut_frames: Sequence[int] = (),
    marks: ChunkMarks | None = None,
    width: int = 768,
    height: int = 320,
    cut_label: str = "scene cut",
) -> np.ndarray:
    """Draw a series over the frame axis; returns an RGB image ``[height, width, 3]`` uint8.

    Args:
        values: the series (NaN/inf values leave gaps).
        x: x position of each value (default ``0, 1, ...``: one value per frame; use
            ``i + 0.5`` for per-pair series).
        title, y_label, x_label: texts.
        num_frames: the frame axis runs over ``[-0.5, num_frames - 0.5]`` (default: from ``x``).
        cut_frames: first frames of new scenes, drawn as red lines before them.
        marks: chunk boundaries from :func:`chunk_marks`.
        width, height: image size in pixels (at least 160 x 120).
        cut_label: the legend's name for the red lines (e.g. joins that stand out).

    Raises:
        ValueError: ``x`` and ``values`` of different lengths, or a too small image.
    """
    if width < 160 or height < 120:
        raise ValueError(f"width x height must be at least 160 x 120, got {width} x {height}")
    ys = np.asarray(list(values), dtype=np.float64)
    xs = np.arange(len(ys), dtype=np.float64) if x is None else np.asarray(list(x), dtype=np.float64)
    if xs.shape != ys.shape:
        raise ValueError(f"x has {xs.size} positions but values has {ys.size}")
    if num_frames is None:
        num_frames = int(math.ceil(xs.max())) + 1 if xs.size else 1
    marks = marks or ChunkMarks()

    image = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = _font(12)
    title_font = _font(14)
    left, right, top, bottom = 72, 16, 30, 42
    plot_w, plot_h = width - left - right, height - top - bottom

    x_lo, x_hi = -0.5, max(num_frames - 0.5, 0.5)
    finite = ys[np.isfinite(ys)]
    if finite.size:
        y_lo, y_hi = float(finite.min()), float(finite.max())
        if y_lo > 0 and y_lo < 0.25 * y_hi:
            y_lo = 0.0  # keep zero in view for non-negative metrics unless the data sit far from it
        pad = 0.05 * (y_hi - y_lo) if y_hi > y_lo else max(1.0, abs(y_hi) * 0.1)
        y_lo, y_hi = y_lo - (pad if y_lo != 0 else 0), y_hi + pad
    else:
        y_lo, y_hi = 0.0, 1.0

    def px(xv: float) -> float:
        return left + (xv - x_lo) / (x_hi - x_lo) * plot_w

    def py(yv: float) -> float:
        return top + (1.0 - (yv - y_lo) / (y_hi - y_lo)) * plot_h

    # Refiner overlaps first (background), then grid, seams, the series, axes and texts.
    for x0, x1 in marks.spans:
        draw.rectangle([px(x0), top, px(x1), top + plot_h], fill=_OVERLAP)
    y_step = _nice_step(y_hi - y_lo, 5)
    tick = math.ceil(y_lo / y_step) * y_step
    while tick <= y_hi + 1e-12:
        draw.line([(left, py(tick)), (left + plot_w, py(tick))], fill=_GRID)
        draw.text((left - 6, py(tick)), _format(tick), fill=_AXIS, font=font, anchor="rm")
        tick += y_step
    x_step = max(1.0, _nice_step(x_hi - x_lo, 10))
    tick = 0.0
    while tick <= x_hi:
        draw.line([(px(tick), top + plot_h), (px(tick), top + plot_h + 4)], fill=_AXIS)
        draw.text((px(tick), top + plot_h + 6), _format(tick), fill=_AXIS, font=font, anchor="mt")
        tick += x_step
    for xv in marks.lines:
        _dashed_vline(draw, px(xv), top, top + plot_h, _BOUNDARY)
    for frame in cut_frames:
        draw.line([(px(frame - 0.5), top), (px(frame - 0.5), top + plot_h)], fill=_CUT, width=2)

    segment: list[tuple[float, float]] = []
    for xv, yv in zip(xs, ys):
        if math.isfinite(yv):
            segment.append((px(xv), py(yv)))
            continue
        _draw_segment(draw, segment)
        segment = []
    _draw_segment(draw, segment)
    if not finite.size:
        draw.text((left + plot_w / 2, top + plot_h / 2), "no finite values", fill=_CUT, font=font,
                  anchor="mm")

    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=_AXIS)
    draw.text((left, 8), title, fill=_AXIS, font=title_font)
    draw.text((left + plot_w / 2, height - 4), x_label, fill=_AXIS, font=font, anchor="mb")
    if y_label:
        # Rotated y label, centred on the plot's height, left of the tick labels.
        text_w = int(draw.textlength(y_label, font=font)) + 4
        label = Image.new("RGB", (text_w, 16), _BACKGROUND)
        ImageDraw.Draw(label).text((2, 8), y_label, fill=_AXIS, font=font, anchor="lm")
        label = label.rotate(90, expand=True)
        image.paste(label, (2, int(top + plot_h / 2 - label.height / 2)))
    legend = []
    if len(cut_frames):
        legend.append((cut_label, _CUT))
    if marks.lines or marks.spans:
        legend.append((marks.label or "chunk boundary", _BOUNDARY))
    cursor = left + plot_w
    for text, colour in reversed(legend):
        length = draw.textlength(text, font=font)
        cursor -= length
        draw.text((cursor, 10), text, fill=colour, font=font)
        cursor -= 16
    return np.asarray(image, dtype=np.uint8).copy()


def _draw_segment(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]]) -> None:
    if len(points) == 1:
        x, y = points[0]
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=_LINE)
    elif len(points) > 1:
        draw.line(points, fill=_LINE, width=2)


def _dashed_vline(draw: ImageDraw.ImageDraw, x: float, y0: float, y1: float, colour: tuple) -> None:
    y = y0
    while y < y1:
        draw.line([(x, y), (x, min(y + 5, y1))], fill=colour, width=1)
        y += 9


def stack_plots(images: Sequence[np.ndarray]) -> np.ndarray:
    """Plots of one width stacked top to bottom into one RGB image.

    Raises:
        ValueError: no image, or images of different widths.
    """
    if not images:
        raise ValueError("stack_plots needs at least one image")
    widths = {int(image.shape[1]) for image in images}
    if len(widths) != 1:
        raise ValueError(f"stack_plots needs images of one width, got widths {sorted(widths)}")
    return np.concatenate(list(images), axis=0)


def plot_drift_and_seams(result, width: int = 768, panel_height: int = 260) -> np.ndarray:
    """The Drift & Seams plot of a :class:`~streamingt2v_core.metrics.drift.DriftSeamsResult`.

    Panels over the same frame axis, chunk boundaries dashed grey in each:

    1. seams: the change of every pair of consecutive frames (at x = t + 0.5); the joins that stand
       out as red lines, the title names the worst join;
    2. colour drift: each frame's mean colour against the anchor chunk's (CIE76 delta E in CIELAB);
    3. with embeddings: the cosine similarity of the embedded frames to the anchor frame.
    """
    num_frames = result.num_frames
    if result.plan == "extension":
        marks = ChunkMarks(lines=[s - 0.5 for s, _ in result.windows[1:]], label="chunk start")
    else:
        windows = result.windows
        marks = ChunkMarks(spans=[(windows[i][0] - 0.5, windows[i - 1][1] - 0.5) for i in range(1, len(windows))],
                           label="refiner overlap")
    flagged = result.flagged_joins
    worst = result.worst_join
    worst_text = "" if worst is None else f"; worst join at frame {worst.frame} (x{worst.ratio:.2f})"
    seam_text = f"{result.seam_score:.3f}" if math.isfinite(result.seam_score) else "undefined"
    seams = plot_series(
        result.pair_change, x=[i + 0.5 for i in range(num_frames - 1)], num_frames=num_frames, marks=marks,
        cut_frames=[int(round(j.mark_x + 0.5)) for j in flagged], cut_label="join that stands out",
        title=f"Seams: score {seam_text}, {len(flagged)} of {len(result.joins)} joins stand out{worst_text}",
        y_label="mean |frame change|", x_label="frame (pair t, t+1 at t + 0.5)", width=width, height=panel_height)
    drift = plot_series(
        result.frame_delta_e, num_frames=num_frames, marks=marks, width=width, height=panel_height,
        title=(f"Colour drift vs the anchor chunk: last chunk dE {_format(result.final_delta_e)}, "
               f"{_format(result.drift_per_chunk)} dE per chunk"),
        y_label="delta E (CIELAB)")
    panels = [seams, drift]
    if result.has_clip:
        panels.append(plot_series(
            result.clip_similarity, x=result.clip_frames, num_frames=num_frames, marks=marks, width=width,
            height=panel_height, title="Image embedding similarity to the anchor frame (cosine)",
            y_label="cos(frame, anchor)"))
    return stack_plots(panels)
