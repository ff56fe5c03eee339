"""The paper's video metrics (Table 1), computed from frames in memory.

* :mod:`.scuts`: SCuts, the scene cuts PySceneDetect's ``AdaptiveDetector`` finds (default
  parameters, as the paper).
* :mod:`.mawe`: MAWE, motion-aware warp error, as the official ``mawe.py`` computes it (RAFT-large
  from a local file; OpenCV DIS as a labelled fallback), plus a robust ratio-of-means variant.
* :mod:`.clip_score`: CLIP text-image score with open_clip from a local checkpoint.
* :mod:`.drift`: Drift & Seams: a seam ratio at every join of the chunk plan (which joins stand
  out) and the colour drift (CIELAB) and, given image embeddings, the similarity drift of every
  chunk against the anchor chunk.
* :mod:`.plot`: a Pillow plot of a metric over time with cuts and chunk seams marked.
* ``python -m streamingt2v_core.metrics VIDEO...``: the three metrics for a set of video files,
  as a Markdown table (the paper's Table 1 protocol on your own outputs); ``--drift`` adds the
  Drift & Seams numbers (colour only).

Frames everywhere are ``[T, H, W, 3]`` RGB, float in [0, 1] (ComfyUI IMAGE) or uint8.
"""

from .clip_score import ClipScoreResult, OpenClipBundle, clip_score, infer_architecture, load_open_clip
from .drift import DRIFT_PLANS, ChunkDrift, DriftSeamsResult, JoinSeam, measure_drift_and_seams
from .frames import read_video_frames, to_uint8_frames
from .mawe import (
    DEFAULT_COEFF,
    DEFAULT_SIZE,
    FlowBackend,
    MAWEResult,
    forward_warp,
    load_raft_large,
    make_flow_backend,
    mean_flow_magnitude,
    motion_aware_warp_error,
    warp_error,
)
from .plot import PLAN_CHOICES, ChunkMarks, chunk_marks, plot_drift_and_seams, plot_series
from .scuts import SceneCutResult, count_scene_cuts

__all__ = [
    "ClipScoreResult",
    "OpenClipBundle",
    "clip_score",
    "infer_architecture",
    "load_open_clip",
    "DRIFT_PLANS",
    "ChunkDrift",
    "DriftSeamsResult",
    "JoinSeam",
    "measure_drift_and_seams",
    "read_video_frames",
    "to_uint8_frames",
    "DEFAULT_COEFF",
    "DEFAULT_SIZE",
    "FlowBackend",
    "MAWEResult",
    "forward_warp",
    "load_raft_large",
    "make_flow_backend",
    "mean_flow_magnitude",
    "motion_aware_warp_error",
    "warp_error",
    "PLAN_CHOICES",
    "ChunkMarks",
    "chunk_marks",
    "plot_series",
    "plot_drift_and_seams",
    "SceneCutResult",
    "count_scene_cuts",
]
