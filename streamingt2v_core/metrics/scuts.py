"""SCuts: the number of scene cuts PySceneDetect's ``AdaptiveDetector`` finds (paper, Table 1).

The paper counts the cuts that ``AdaptiveDetector`` with its default parameters finds in each
generated video (a good long video has none). The official repository has no code for it, so we
run ``AdaptiveDetector()`` (library defaults: threshold 3.0, window 2, min_content_val 15,
min_scene_len 15 frames) the way a default ``SceneManager`` feeds it, minus the file: frames go to
the detector straight from memory, in BGR order as OpenCV decodes them, after the same automatic
downscale (to an effective width of about 256 px; frames already that small are left alone).

Note: the ``scenedetect`` command line uses a global ``min-scene-len`` of 0.6 s instead of the
library's 15 frames (5 frames at 8 fps); pass ``min_scene_len="0.6s"`` (with the right ``fps``) to
reproduce ``scenedetect -i video.mp4 detect-adaptive`` exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from scenedetect import AdaptiveDetector, FrameTimecode, StatsManager
from scenedetect.detectors import ContentDetector
from scenedetect.scene_manager import compute_downscale_factor

from .frames import FrameArray, to_uint8_frames

__all__ = ["SceneCutResult", "count_scene_cuts"]


@dataclass
class SceneCutResult:
    """Result of :func:`count_scene_cuts`.

    Attributes:
        num_cuts: number of cuts (SCuts for this video).
        cut_frames: index of the first frame of each new scene.
        content_val: per-frame ``content_val`` of the detector (the HSV change from the previous
            frame; 0 for frame 0), the series plotted over time.
        adaptive_ratio: per-frame ratio of ``content_val`` to its neighbours' mean, the quantity
            the detector thresholds (NaN for the first and last ``window_width`` frames, which
            have no full window).
        downscale_factor: the factor frames were shrunk by before detection (1 = none).
        detector_params: the ``AdaptiveDetector`` parameters used.
        notes: when the count is 0 by construction (a video too short for the detector to find a cut).
    """

    num_cuts: int
    cut_frames: list[int]
    content_val: list[float]
    adaptive_ratio: list[float]
    downscale_factor: float
    detector_params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_report(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes None)."""
        return {
            "metric": "SCuts",
            "scuts": self.num_cuts,
            "cut_frames": list(self.cut_frames),
            "content_val": [_finite_or_none(v) for v in self.content_val],
            "adaptive_ratio": [_finite_or_none(v) for v in self.adaptive_ratio],
            "downscale_factor": self.downscale_factor,
            "detector": "scenedetect.AdaptiveDetector",
            "detector_params": dict(self.detector_params),
            "notes": list(self.notes),
        }


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def count_scene_cuts(
    frames: FrameArray,
    fps: float = 8.0,
    auto_downscale: bool = True,
    **detector_params: Any,
) -> SceneCutResult:
    """Count scene cuts with PySceneDetect's ``AdaptiveDetector`` (default parameters unless given).

    Args:
        frames: ``[T, H, W, 3]`` RGB, float in [0, 1] or uint8.
        fps: frame rate, only used for the detector's timecodes (its default ``min_scene_len``
            of 15 is in frames, so the count does not depend on it).
        auto_downscale: shrink frames as ``SceneManager`` does by default before detection.
        **detector_params: overrides of ``AdaptiveDetector``'s parameters (the paper uses none).

    Returns:
        :class:`SceneCutResult`.

    Raises:
        ValueError: bad ``frames`` or ``fps``.
    """
    video = to_uint8_frames(frames, "frames", min_frames=1)
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    num_frames, height, width = video.shape[:3]

    detector = AdaptiveDetector(**detector_params)
    # A StatsManager makes the detector record its per-frame scores, which we return as the
    # series; it also makes ContentDetector compute edges, whose default weight is 0, so the
    # scores and the cuts are unchanged.
    stats = StatsManager()
    stats.register_metrics(detector.get_metrics())
    detector.stats_manager = stats

    # SceneManager sizes the downscale by the larger side of the frame.
    downscale = compute_downscale_factor(max(width, height)) if auto_downscale else 1.0
    target_size = (max(1, round(width / downscale)), max(1, round(height / downscale)))

    timecodes = [FrameTimecode(i, fps=float(fps)) for i in range(num_frames)]
    cuts: list[FrameTimecode] = []
    for i in range(num_frames):
        frame_bgr = cv2.cvtColor(video[i], cv2.COLOR_RGB2BGR)
        if downscale > 1.0:
            # SceneManager's default interpolation is linear.
            frame_bgr = cv2.resize(frame_bgr, target_size, interpolation=cv2.INTER_LINEAR)
        cuts += detector.process_frame(timecodes[i], frame_bgr)
    cuts += detector.post_process(timecodes[-1])

    cut_frames = sorted({tc.frame_num for tc in cuts})
    score_key = ContentDetector.FRAME_SCORE_KEY
    ratio_key = detector.get_metrics()[-1]
    content_val = [_metric(stats, tc, score_key) for tc in timecodes]
    if num_frames:
        content_val[0] = 0.0 if math.isnan(content_val[0]) else content_val[0]
    adaptive_ratio = [_metric(stats, tc, ratio_key) for tc in timecodes]
    params = {
        "adaptive_threshold": detector.adaptive_threshold,
        "min_scene_len": detector.min_scene_len,
        "window_width": detector.window_width,
        "min_content_val": detector.min_content_val,
    }
    return SceneCutResult(
        num_cuts=len(cut_frames),
        cut_frames=cut_frames,
        content_val=content_val,
        adaptive_ratio=adaptive_ratio,
        downscale_factor=float(downscale),
        detector_params=params,
        notes=_too_short_notes(num_frames, detector.min_scene_len, detector.window_width),
    )


def _too_short_notes(num_frames: int, min_scene_len: Any, window_width: int) -> list[str]:
    """A count that is 0 whatever the video shows must say so.

    The earliest cut ``AdaptiveDetector`` can report is at frame ``min_scene_len`` (a whole scene before it), and it
    needs ``window_width`` frames after the cut to compare against: ``min_scene_len + window_width + 1`` frames in
    all (18 with the defaults; checked in tests/core/metrics).
    """
    if num_frames < 2:
        return ["a single frame: there is no pair of frames to compare, so SCuts is 0 by construction"]
    if not isinstance(min_scene_len, int):
        return []
    shortest = min_scene_len + window_width + 1
    if num_frames < shortest:
        return [f"{num_frames} frames are too few for AdaptiveDetector to find any cut (it needs at least {shortest}: "
                f"a scene of min_scene_len {min_scene_len} frames before a cut and window_width {window_width} "
                f"after it), so SCuts is 0 by construction"]
    return []


def _metric(stats: StatsManager, timecode: FrameTimecode, key: str) -> float:
    if not stats.metrics_exist(timecode, [key]):
        return float("nan")
    value = stats.get_metrics(timecode, [key])[0]
    return float("nan") if value is None else float(np.float64(value))
