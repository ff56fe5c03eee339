"""Seam score of the refiner's blending modes on a closed-form optimal denoiser (paper Fig. 4).

No trained weights: the refiner's model is the exact posterior mean over a small dataset of
drifting-texture clips (``streamingt2v_core.sampling.synthetic``), and the "video to refine"
lacks the texture, so every window must invent it. The seam score is the mean frame-to-frame
difference where windows meet over the mean difference elsewhere (1.0 = seamless). Each case
refines ``--batch`` independent videos with the refiner's real schedule (SDEdit from t' = 599,
DPM-Solver++(2M) SDE, 30 steps, chunk 24, overlap 8); the table gives mean and spread over
``--seeds`` seeds. Prints a Markdown table with the date and the device.

    python bench/bench_seams.py              # CPU: 120 frames, batch 32, 3 seeds (~1 min)
    python bench/bench_seams.py --full       # GPU if present: 600 frames, batch 256, 8 seeds
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import device_name  # noqa: E402

import torch  # noqa: E402

from streamingt2v_core.sampling.plans import refiner_plan  # noqa: E402
from streamingt2v_core.sampling.synthetic import SEAM_ABLATION, run_seam_ablation  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--full", action="store_true", help="600 frames, batch 256, 8 seeds, GPU if present")
    parser.add_argument("--frames", type=int, default=None, help="video length (default 120, --full 600)")
    parser.add_argument("--batch", type=int, default=None, help="videos per case (default 32, --full 256)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per case (default 3, --full 8)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda with --full if available)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (the matrices are tiny; 1 avoids contention)")
    args = parser.parse_args(argv)

    frames = args.frames or (600 if args.full else 120)
    batch = args.batch or (256 if args.full else 32)
    seeds = args.seeds or (8 if args.full else 3)
    if args.device is not None:
        device = torch.device(args.device)
    else:
        device = torch.device("cuda" if args.full and torch.cuda.is_available() else "cpu")
    torch.set_num_threads(args.threads)

    per_case: dict[str, list[float]] = {label: [] for label, *_ in SEAM_ABLATION}
    detail: dict[str, list[float]] = {label: [] for label, *_ in SEAM_ABLATION}
    start = time.perf_counter()
    for seed in range(seeds):
        for label, score in run_seam_ablation(frames, batch, seed, device=device).items():
            per_case[label].append(score["seam"])
            detail[label].append(score["detail"])
    elapsed = time.perf_counter() - start

    windows = refiner_plan(frames)
    print(f"## Seam score of the refiner's blending modes ({datetime.date.today().isoformat()})")
    print()
    print(f"Device: {device_name(device)}. Synthetic video of {frames} frames, {len(windows)} windows "
          f"(chunk 24, overlap 8), {batch} videos x {seeds} seeds per case, closed-form optimal "
          f"denoiser, SDEdit t'=599, DPM-Solver++(2M) SDE 30 steps; total {elapsed:.1f} s.")
    print("Seam score = mean frame difference where windows meet / mean elsewhere (1.0 = seamless). "
          "Detail kept = invented texture on overlap frames / elsewhere (below 1.0 = ghosting).")
    print()
    print("| blending | shared noise | seam score (mean) | min..max over seeds | detail kept |")
    print("|---|---|---|---|---|")
    for label, blend, shared, variant in SEAM_ABLATION:
        values = per_case[label]
        name = blend + (" (paper offsets {0..O})" if variant == "paper" else "")
        print(f"| {name} | {'yes' if shared else 'no'} | {statistics.fmean(values):.3f} | "
              f"{min(values):.3f}..{max(values):.3f} | {statistics.fmean(detail[label]):.3f} |")


if __name__ == "__main__":
    main()
