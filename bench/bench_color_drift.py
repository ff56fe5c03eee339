"""Colour-drift correction (``color_match``): residual drift and kept real change per mode.

No trained weights: the chunk sampler is :class:`streamingt2v_core.metrics.synthetic_drift.DriftingChunkSampler`,
a stand-in extender that renders the video "the prompt asks for" (a textured pan), carries the
colour of its conditioning frames forward as a real extender does, and adds a known colour error
per chunk. It runs through the real extension loop (``extend_video``, uint8 storage) wrapped by
:func:`streamingt2v_core.color.color_matched_sampler`. Scenarios:

* ``drift``: the generator shifts colours by (L, a, b) = (2, 1.5, -1) per chunk (delta E 2.7);
* ``prompt change``: no generator error, but the scene itself gets darker and warmer from frame 16
  on (L -0.15, b +0.3 per frame), a change a correction must keep;
* ``drift + change``: both;
* ``ramping drift``: the same drift, growing over each chunk instead of constant (the case the
  ``overlap`` estimate, made on the first 8 frames, only partly sees).

Columns: residual drift = delta E between the output's and the truth's mean colour (last chunk, and
mean over chunks); change kept = the part of the truth's colour change from the anchor chunk to
the last chunk that the output shows (projection, 100 % = all of it); seam score of the output
(``streamingt2v_core.metrics.drift``, 1.0 = no seams); correction time per chunk.

    python bench/bench_color_drift.py            # CPU: 64x64, 200 frames (24 chunks)
    python bench/bench_color_drift.py --full     # 256x256 (the extender's size), 1200 frames (149 chunks)
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import device_name  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from streamingt2v_core.color import COLOR_MATCH_MODES, color_matched_sampler, lab_statistics  # noqa: E402
from streamingt2v_core.metrics.drift import measure_drift_and_seams  # noqa: E402
from streamingt2v_core.metrics.synthetic_drift import DriftingChunkSampler, loop_pan_video, offset_lab  # noqa: E402
from streamingt2v_core.sampling.extension import extend_video  # noqa: E402

DRIFT = (2.0, 1.5, -1.0)
CHANGE_PER_FRAME = (-0.15, 0.0, 0.3)
SCENARIOS = (  # label, drift per chunk, ramp, prompt change per frame
    ("drift", DRIFT, False, None),
    ("prompt change", (0.0, 0.0, 0.0), False, CHANGE_PER_FRAME),
    ("drift + change", DRIFT, False, CHANGE_PER_FRAME),
    ("ramping drift", DRIFT, True, None),
)


def truth_video(num_frames: int, size: int, change: tuple[float, float, float] | None) -> np.ndarray:
    """The video the prompt asks for, float in [0, 1]: a muted pan (values ~0.2..0.8, so colour shifts
    stay in gamut), changing colour from frame 16 on when ``change`` is given."""
    pan = np.rint(loop_pan_video(num_frames, size, size, shift=max(1, size // 32), seed=7) * 0.6 + 51).astype(np.uint8)
    if change is not None:
        steps = np.clip(np.arange(num_frames, dtype=np.float32) - 15, 0, None)[:, None]
        pan = offset_lab(pan, steps * np.asarray(change, np.float32))
    return pan.astype(np.float32) / 255.0


def mean_lab(frames) -> np.ndarray:
    return np.asarray(lab_statistics(frames).mean)


def run_case(truth: np.ndarray, total: int, drift, ramp: bool, mode: str) -> dict[str, float]:
    inner = DriftingChunkSampler(truth, drift, ramp=ramp, noise=0.004)
    inner_seconds = [0.0]

    def timed_inner(*args):
        start = time.perf_counter()
        out = inner(*args)
        inner_seconds[0] += time.perf_counter() - start
        return out

    first = torch.from_numpy(truth[:16])
    corrected = color_matched_sampler(timed_inner, mode, reference_frames=first)
    outer_seconds = [0.0]

    def timed_outer(*args):
        start = time.perf_counter()
        out = corrected(*args)
        outer_seconds[0] += time.perf_counter() - start
        return out

    video = extend_video(first, timed_outer, total, seed=0, storage_dtype=torch.uint8)
    frames = video.float() / 255.0
    starts = list(range(16, total, 8))
    residual = [float(np.linalg.norm(mean_lab(frames[s:s + 8]) - mean_lab(truth[s:s + 8]))) for s in starts]
    asked = mean_lab(truth[starts[-1]:total]) - mean_lab(truth[:16])
    shown = mean_lab(frames[starts[-1]:total]) - mean_lab(frames[:16])
    asked_norm = float(np.linalg.norm(asked))
    kept = float(shown @ asked) / asked_norm ** 2 if asked_norm > 1.0 else float("nan")
    seams = measure_drift_and_seams(video)
    chunks = len(starts)
    return {"last": residual[-1], "mean": float(np.mean(residual)), "kept": kept, "asked": asked_norm,
            "seam": seams.seam_score, "flagged": len(seams.flagged_joins),
            "ms": 1000.0 * max(outer_seconds[0] - inner_seconds[0], 0.0) / chunks}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--full", action="store_true", help="256x256 frames, 1200 frames")
    parser.add_argument("--frames", type=int, default=None, help="video length (default 200, --full 1200)")
    parser.add_argument("--size", type=int, default=None, help="frame side in pixels (default 64, --full 256)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (the tensors are small; 1 avoids contention)")
    args = parser.parse_args(argv)
    total = args.frames or (1200 if args.full else 200)
    size = args.size or (256 if args.full else 64)
    torch.set_num_threads(args.threads)

    rows = []
    started = time.perf_counter()
    for label, drift, ramp, change in SCENARIOS:
        truth = truth_video(total + 8, size, change)
        for mode in COLOR_MATCH_MODES:
            rows.append((label, mode, run_case(truth, total, drift, ramp, mode)))
    elapsed = time.perf_counter() - started

    chunks = len(range(16, total, 8))
    print(f"## Colour-drift correction ({datetime.date.today().isoformat()})")
    print()
    print(f"Device: {device_name(torch.device('cpu'))} (the correction runs on the CPU frames). Synthetic "
          f"drifting chunk sampler through extend_video (uint8 storage), {total} frames at {size}x{size}, "
          f"{chunks} chunks after the first; drift per chunk (L, a, b) = {DRIFT} (delta E "
          f"{np.linalg.norm(DRIFT):.2f}), prompt change (L, a, b) = {CHANGE_PER_FRAME} per frame from frame 16; "
          f"pixel noise 0.004; total {elapsed:.1f} s.")
    print("Residual drift = delta E between the output's and the truth's mean colour (CIELAB). Change kept = "
          "the part of the asked colour change (anchor chunk to last chunk) the output shows.")
    print()
    print("| scenario | color_match | residual dE, last chunk | residual dE, mean | change kept | seam score "
          "| joins flagged | correction ms/chunk |")
    print("|---|---|---|---|---|---|---|---|")
    for label, mode, r in rows:
        kept = "-" if not np.isfinite(r["kept"]) else f"{100 * r['kept']:.0f} % of dE {r['asked']:.1f}"
        print(f"| {label} | {mode} | {r['last']:.2f} | {r['mean']:.2f} | {kept} | {r['seam']:.3f} | "
              f"{r['flagged']} | {r['ms']:.1f} |")


if __name__ == "__main__":
    main()
