"""Refine through the host: solver-step time with 1, 2 and 4 refiner windows per model call.

    python bench/bench_refine_batching.py               # CPU: tiny refiner, 4 windows of 8 latent frames at 10x8
    python bench/bench_refine_batching.py --full        # GPU: MS-Vid2Vid-XL, 4 windows of 24 frames at 90x160, fp16

The same host path as the Refine node (``nodes.refine.refine_latent``: host sampler, our context handler, CFG with the
per-window rescale); the settings are interleaved (1, 2, 4, 1, 2, 4, ...) so a machine's load drifts through all of
them alike, and each is the median of ``--repeats`` one-step runs after a warm-up. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import device_name  # noqa: E402
from bench.gpu_host_parts import boot, our_model, text_conds  # noqa: E402
from bench.gpu_parts import Ctx  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full MS-Vid2Vid-XL at 720p latents on a GPU")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.full and torch.cuda.is_available() else "cpu")
    ctx = Ctx(dry=not args.full, device=device, work=Path("."), name="bench_refine_batching")
    package, _ = boot(ctx)
    refine = package.refine
    dtype = torch.float16 if args.full else torch.float32
    chunk, overlap, h, w = (24, 8, 90, 160) if args.full else (8, 2, 10, 8)
    frames = chunk + 3 * (chunk - overlap)
    model = our_model(package, "refiner_unet", ctx, dtype)
    positive, negative = text_conds()
    latent = torch.randn(1, 4, frames, h, w, generator=torch.Generator().manual_seed(2))

    def step(per_call: int) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            refine.refine_latent(model, latent, positive, negative, seed=0, steps=1, cfg=7.5, denoise=0.6,
                                 sampler_name="dpmpp_2m_sde", scheduler=refine.TRAILING_SCHEDULER, chunk=chunk,
                                 overlap=overlap, blend_mode="randomized", guidance_rescale=0.2, max_batch=per_call)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    settings = (1, 2, 4)
    for k in settings:
        step(k)  # warm-up
    times: dict[int, list[float]] = {k: [] for k in settings}
    for _ in range(args.repeats):
        for k in settings:
            times[k].append(step(k))
    print(f"### bench_refine_batching: {'full MS-Vid2Vid-XL, fp16' if args.full else 'tiny refiner, fp32'}")
    print(f"Device: {device_name(device)}; torch {torch.__version__}; date {_dt.date.today().isoformat()}; 4 windows of "
          f"{chunk} latent frames overlapping by {overlap} ({frames} frames, latents {h}x{w}), one DPM++ 2M SDE step "
          f"with CFG 7.5 through the host per run; median of {args.repeats} interleaved runs after a warm-up\n")
    print("| windows per call | s per step (median) | min..max | s per window | speed-up vs 1 |")
    print("|---|---|---|---|---|")
    base = statistics.median(times[1])
    for k in settings:
        med = statistics.median(times[k])
        print(f"| {k} | {med:.3f} | {min(times[k]):.3f}..{max(times[k]):.3f} | {med / 4:.3f} | {base / med:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
