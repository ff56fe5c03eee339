"""Metric plots: right size, not blank, cuts and chunk seams drawn where they belong."""
from __future__ import annotations

import numpy as np
import pytest

from streamingt2v_core.metrics.plot import ChunkMarks, chunk_marks, plot_series

RED = np.array([214, 39, 40])
BLUE = np.array([31, 119, 180])


def columns_with(image: np.ndarray, colour: np.ndarray) -> np.ndarray:
    return np.nonzero((image == colour).all(axis=-1).any(axis=0))[0]


def test_plot_has_the_requested_size_and_is_not_blank():
    values = np.sin(np.arange(48) / 4.0)
    image = plot_series(values, title="t", y_label="y", width=640, height=240)
    assert image.shape == (240, 640, 3) and image.dtype == np.uint8
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10
    assert (image == BLUE).all(axis=-1).sum() > 200  # the series line is drawn


def test_cut_is_a_red_line_between_the_frames_it_separates():
    image = plot_series(np.ones(40), num_frames=40, cut_frames=[20], width=800, height=200)
    red = columns_with(image[40:150], RED)  # inside the plot area (the legend above is red too)
    assert red.size > 0
    # the plot area spans x = -0.5 .. 39.5 between the left margin and the right margin
    left, right = 72, 800 - 16
    expected = left + (19.5 + 0.5) / 40 * (right - left)
    assert red.min() >= expected - 2 and red.max() <= expected + 2


def test_extension_plan_boundaries_are_the_chunk_starts():
    marks = chunk_marks("extension", 40)
    assert marks.lines == [15.5, 23.5, 31.5]  # chunks 1..3 start at frames 16, 24, 32
    assert chunk_marks("extension", 44).lines == [15.5, 23.5, 31.5, 39.5]       # last chunk adds 4 frames
    assert chunk_marks("extension", 16).lines == []                             # one chunk: no seam
    assert chunk_marks("none", 40) == ChunkMarks()


def test_refiner_plan_marks_the_window_overlaps():
    marks = chunk_marks("refiner", 56)  # windows [0,24) [16,40) [32,56)
    assert marks.spans == [(15.5, 23.5), (31.5, 39.5)]
    assert marks.lines == []
    image = plot_series(np.zeros(55), x=np.arange(55) + 0.5, num_frames=56, marks=marks)
    assert (image == np.array([225, 225, 240])).all(axis=-1).sum() > 500  # shaded overlaps


def test_non_finite_values_leave_gaps_and_all_nan_is_still_an_image():
    values = np.ones(30)
    values[10:20] = np.nan
    assert plot_series(values).shape == (320, 768, 3)
    # Where the gap is: the series line (blue) is drawn over frames 0..9 and 20..29 and nowhere between frame 9 and
    # frame 20; the same series without NaNs is drawn there (so the check can fail).
    left, right = 72, 800 - 16  # the plot area spans x = -0.5 .. 29.5 between the margins

    def px(frame: float) -> float:
        return left + (frame + 0.5) / 30 * (right - left)

    gapped = columns_with(plot_series(values, width=800, height=200)[30:170], BLUE)
    whole = columns_with(plot_series(np.ones(30), width=800, height=200)[30:170], BLUE)
    inside = lambda cols: cols[(cols > px(9) + 3) & (cols < px(20) - 3)]  # noqa: E731
    assert inside(whole).size > 0 and inside(gapped).size == 0
    assert gapped.min() <= px(0) + 3 and gapped.max() >= px(29) - 3  # both finite runs are drawn
    assert (gapped <= px(9) + 3).sum() > 0 and (gapped >= px(20) - 3).sum() > 0
    all_nan = plot_series([float("nan")] * 5, title="empty")
    assert all_nan.shape == (320, 768, 3)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="plan"):
        chunk_marks("seams", 40)
    with pytest.raises(ValueError, match="num_frames"):
        chunk_marks("extension", 0)
    with pytest.raises(ValueError, match="positions"):
        plot_series([1.0, 2.0], x=[0.0])
    with pytest.raises(ValueError, match="at least"):
        plot_series([1.0], width=50, height=50)
