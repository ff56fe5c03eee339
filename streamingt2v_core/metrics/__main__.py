"""Evaluate video files without the UI: ``python -m streamingt2v_core.metrics VIDEO_OR_FOLDER...``.

Prints a Markdown table with SCuts, MAWE (official and robust, with the flow backend) and, when a
CLIP checkpoint is given, the CLIP score of each video, followed by the mean over videos (the
paper's Table 1 reports such means). Videos are decoded with PyAV.

``--drift`` adds the Drift & Seams numbers (:mod:`.drift`, colour only: no image encoder here):
the video's seam score, its worst join and the joins that stand out, the last chunk's colour
difference to the anchor chunk and the drift per chunk (CIELAB delta E), for the extender's chunk
plan (``--first-chunk 16 --new-frames-per-chunk 8``) or the refiner's windows (``--drift-plan
refiner``).

Prompts for the CLIP score, first match wins: ``--prompts FILE.json`` (``{"name.mp4": "..."}``,
by file name or stem), a sidecar ``name.txt`` next to the video, ``--prompt TEXT`` for all.

Example (the paper's setting: RAFT-large weights from torchvision, OpenCLIP ViT-H-14)::

    python -m streamingt2v_core.metrics outputs/ --raft-weights models/raft/raft_large_C_T_SKHT_V2-ff5fadd5.pth \\
        --clip-checkpoint models/streamingt2v_metrics/open_clip_pytorch_model.bin --prompts prompts.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".gif", ".m4v")


def _expand(paths: list[str]) -> list[str]:
    videos: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            videos += sorted(
                os.path.join(path, name) for name in os.listdir(path)
                if name.lower().endswith(VIDEO_EXTENSIONS)
            )
        else:
            videos.append(path)
    return videos


def _prompt_for(video: str, prompts: dict[str, str], default: str | None) -> str | None:
    name = os.path.basename(video)
    stem = os.path.splitext(name)[0]
    for key in (name, stem, video):
        if key in prompts:
            return prompts[key]
    sidecar = os.path.splitext(video)[0] + ".txt"
    if os.path.isfile(sidecar):
        with open(sidecar, encoding="utf-8") as handle:
            text = handle.read().strip()
        if text:
            return text
    return default


def _fmt(value: float | int | None, spec: str = ".2f") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return format(value, spec) if math.isfinite(value) else str(value)


def _mean(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m streamingt2v_core.metrics",
        description="SCuts, MAWE and CLIP score of video files (StreamingT2V paper, Table 1).",
    )
    parser.add_argument("videos", nargs="+", help="video files or folders of videos")
    parser.add_argument("--raft-weights", help="torchvision RAFT-large weights file (paper's flow); "
                        "without it MAWE uses OpenCV DIS, not comparable to the paper")
    parser.add_argument("--flow", choices=("auto", "raft", "dis"), default="auto",
                        help="flow backend (auto: RAFT if --raft-weights is given, else DIS)")
    parser.add_argument("--coeff", type=float, default=9.5, help="MAWE's c (official: 9.5)")
    parser.add_argument("--size", type=int, default=720, help="MAWE resize (official: 720)")
    parser.add_argument("--clip-checkpoint", help="open_clip checkpoint file; enables the CLIP score")
    parser.add_argument("--clip-architecture", default="auto",
                        help="open_clip architecture name, or auto (from the file)")
    parser.add_argument("--prompt", help="prompt for every video (CLIP score)")
    parser.add_argument("--prompts", help="JSON file mapping video name or stem to its prompt")
    parser.add_argument("--device", default="cpu", help="torch device for RAFT and CLIP (cpu, cuda)")
    parser.add_argument("--min-scene-len", default=None,
                        help="SCuts: AdaptiveDetector's min_scene_len (default: the library's 15 frames; "
                             "'0.6s' reproduces the scenedetect command line)")
    parser.add_argument("--no-scuts", action="store_true", help="skip SCuts")
    parser.add_argument("--no-mawe", action="store_true", help="skip MAWE")
    parser.add_argument("--max-frames", type=int, default=None, help="read at most this many frames")
    parser.add_argument("--drift", action="store_true",
                        help="add Drift & Seams columns: seam score, worst join, joins that stand out, colour drift")
    parser.add_argument("--drift-plan", choices=("extension", "refiner"), default="extension",
                        help="whose joins to score: the extender's chunks or the refiner's 24/8 windows")
    parser.add_argument("--first-chunk", type=int, default=16, help="Drift & Seams: frames of the first chunk")
    parser.add_argument("--new-frames-per-chunk", type=int, default=8,
                        help="Drift & Seams: frames each later chunk adds")
    parser.add_argument("--json", dest="json_path", help="also write the full results to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from . import count_scene_cuts, load_open_clip, make_flow_backend, motion_aware_warp_error
    from . import clip_score as compute_clip_score
    from .frames import read_video_frames

    videos = _expand(args.videos)
    if not videos:
        print("no video files found", file=sys.stderr)
        return 2
    prompts: dict[str, str] = {}
    if args.prompts:
        with open(args.prompts, encoding="utf-8") as handle:
            prompts = json.load(handle)
    flow = None if args.no_mawe else make_flow_backend(args.flow, args.raft_weights, args.device)
    clip = None
    if args.clip_checkpoint:
        clip = load_open_clip(args.clip_checkpoint, args.clip_architecture, device=args.device)

    rows: list[dict[str, Any]] = []
    for video in videos:
        row: dict[str, Any] = {"video": video}
        started = time.perf_counter()
        try:
            frames, fps = read_video_frames(video, args.max_frames)
            row.update(frames=int(frames.shape[0]), fps=fps)
            if not args.no_scuts:
                overrides = {} if args.min_scene_len is None else {
                    "min_scene_len": int(args.min_scene_len) if args.min_scene_len.isdigit() else args.min_scene_len}
                row["scuts"] = count_scene_cuts(frames, fps=fps, **overrides).to_report()
            if flow is not None:
                if frames.shape[0] >= 2:
                    row["mawe"] = motion_aware_warp_error(frames, flow, coeff=args.coeff,
                                                          size=args.size).to_report()
                else:
                    row["error"] = "MAWE needs at least 2 frames"
            if args.drift:
                from .drift import measure_drift_and_seams

                row["drift"] = measure_drift_and_seams(
                    frames, args.drift_plan, first_chunk=args.first_chunk,
                    new_frames_per_chunk=args.new_frames_per_chunk, name="video").to_report()
            if clip is not None:
                prompt = _prompt_for(video, prompts, args.prompt)
                if prompt:
                    row["clip"] = compute_clip_score(frames, prompt, clip).to_report()
                else:
                    row["clip_missing"] = "no prompt (use --prompt, --prompts or a .txt sidecar)"
        except ValueError as exc:
            row["error"] = str(exc)
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
        print(f"evaluated {video} in {row['seconds']:.1f} s", file=sys.stderr)

    print(format_table(rows, clip is not None, args.drift))
    if flow is not None and not flow.comparable_to_paper:
        print(f"\nMAWE used {flow.name}: not comparable to the paper's RAFT-large numbers.")
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=2)
    return 1 if any("error" in row for row in rows) else 0


_DRIFT_HEADER = ["seam score", "worst join", "joins out", "dE last chunk", "dE per chunk"]


def _drift_cells(report: dict[str, Any] | None) -> list[str]:
    if not report:
        return ["n/a"] * len(_DRIFT_HEADER)
    worst = report.get("worst_join")
    ratio = next((j["ratio"] for j in report["joins"] if j["frame"] == worst), None)
    flagged = report["flagged_joins"]
    return [_fmt(report["seam_score"], ".3f"),
            "n/a" if worst is None else f"{worst} (x{_fmt(ratio)})",
            (", ".join(str(f) for f in flagged) if flagged else "none") + f" ({len(flagged)}/{len(report['joins'])})",
            _fmt(report["final_delta_e"]), _fmt(report["drift_per_chunk"])]


def format_table(rows: list[dict[str, Any]], with_clip: bool, with_drift: bool = False) -> str:
    """The Markdown table of :func:`main`, with a mean row."""
    header = ["video", "frames", "SCuts", "MAWE (official)", "MAWE (robust)", "flow"]
    if with_clip:
        header.append("CLIP")
    if with_drift:
        header += _DRIFT_HEADER
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    scuts, mawe, robust, clip = [], [], [], []
    seam, last_de, per_chunk = [], [], []
    for row in rows:
        sc = row.get("scuts", {}).get("scuts")
        mw = row.get("mawe", {})
        cl = row.get("clip", {}).get("score")
        scuts.append(sc)
        mawe.append(mw.get("mawe_official"))
        robust.append(mw.get("mawe_robust"))
        clip.append(cl)
        cells = [os.path.basename(row["video"]), _fmt(row.get("frames")), _fmt(sc),
                 _fmt(mw.get("mawe_official"), ".4g"), _fmt(mw.get("mawe_robust"), ".4g"),
                 mw.get("flow_backend", "n/a")]
        if with_clip:
            cells.append(_fmt(cl))
        if with_drift:
            drift = row.get("drift")
            cells += _drift_cells(drift)
            if drift:
                seam.append(drift["seam_score"])
                last_de.append(drift["final_delta_e"])
                per_chunk.append(drift["drift_per_chunk"])
        if "error" in row:
            cells[0] += f" (error: {row['error']})"
        lines.append("| " + " | ".join(cells) + " |")
    mean_cells = [f"mean of {len(rows)}", "", _fmt(_mean(scuts)), _fmt(_mean(mawe), ".4g"),
                  _fmt(_mean(robust), ".4g"), ""]
    if with_clip:
        mean_cells.append(_fmt(_mean(clip)))
    if with_drift:
        mean_cells += [_fmt(_mean(seam), ".3f"), "", "", _fmt(_mean(last_de)), _fmt(_mean(per_chunk))]
    lines.append("| " + " | ".join(mean_cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
