"""Refiner benchmark: time per 24-frame chunk and peak GPU memory, and the cost of the blending itself.

    python bench/bench_refine.py            # small CPU size (tiny refiner config, 8x8 latents)
    python bench/bench_refine.py --full     # GPU: full MS-Vid2Vid-XL config, random weights,
                                            # 24 frames x 90x160 latents, fp16 and bf16

For each dtype it times one refiner chunk (CFG batch 2, as every solver step runs per chunk) and
one fuse of a whole-video step with each blend mode (``fuse_windows`` over the window plan of a
``--frames``-frame video), and prints a Markdown table with the device and the date. The blend
must cost < 1% of a step: a step is ``windows x chunk time``, the fuse runs once per step.
Speed and memory do not depend on weight values, so random weights are enough.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamingt2v_core.models.config import RefinerUNetConfig  # noqa: E402
from streamingt2v_core.models.unet3d import UNet3D  # noqa: E402
from streamingt2v_core.sampling.blending import BLEND_MODES, draw_blend_offsets, fuse_windows  # noqa: E402
from streamingt2v_core.sampling.plans import refiner_plan, window_overlaps  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn, device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def bench_chunk(config: RefinerUNetConfig, dtype: torch.dtype, device: torch.device, frames: int,
                height: int, width: int, repeats: int) -> tuple[float, float]:
    """(seconds, peak GiB) of one refiner chunk forward with CFG batch 2."""
    torch.manual_seed(0)
    model = UNet3D(config).to(device=device, dtype=dtype).eval()
    x = torch.randn(2, 4, frames, height, width, device=device, dtype=dtype)
    t = torch.full((2,), 599.0, device=device)
    ctx = torch.randn(2, 77, 1024, device=device, dtype=dtype)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        seconds = time_call(lambda: model(x, t, ctx), device, repeats)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    del model
    return seconds, peak


def bench_fuse(mode: str, dtype: torch.dtype, device: torch.device, num_frames: int, chunk: int, overlap: int,
               height: int, width: int, repeats: int) -> float:
    """Seconds of one whole-video fuse (one solver step) with ``mode``."""
    windows = refiner_plan(num_frames, chunk, overlap)
    preds = [torch.randn(1, 4, e - s, height, width, device=device, dtype=dtype) for s, e in windows]
    g = torch.Generator().manual_seed(0)

    def step():
        offsets = draw_blend_offsets(len(windows) - 1, window_overlaps(windows), g) if mode == "randomized" else None
        return fuse_windows(preds, windows, num_frames, mode, offsets, frame_dim=2)

    return time_call(step, device, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full MS-Vid2Vid-XL size on a GPU (fp16, bf16)")
    parser.add_argument("--frames", type=int, default=None, help="video length for the fuse timing")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)

    if args.full:
        if not torch.cuda.is_available():
            parser.error("--full needs a CUDA GPU")
        device = torch.device("cuda")
        config, (h, w), dtypes = RefinerUNetConfig.full(), (90, 160), [torch.float16, torch.bfloat16]
        frames_video, repeats = args.frames or 240, args.repeats or 5
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        config, (h, w), dtypes = RefinerUNetConfig.tiny(), (10, 16), [torch.float32]
        frames_video, repeats = args.frames or 120, args.repeats or 3
    chunk, overlap = 24, 8
    num_windows = len(refiner_plan(frames_video, chunk, overlap))
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"

    print(f"# StreamingT2V refiner benchmark ({'full' if args.full else 'small CPU'} size)\n")
    print(f"device: {device_name} | torch {torch.__version__} | date: {datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"chunk {chunk} frames x {h}x{w} latents, CFG batch 2; fuse over a {frames_video}-frame video "
          f"({num_windows} windows); a solver step = {num_windows} chunk calls + 1 fuse\n")
    print("| dtype | chunk time (ms) | peak GPU memory (GiB) | blend mode | fuse time (ms) | fuse / step |")
    print("|---|---|---|---|---|---|")
    for dtype in dtypes:
        seconds, peak = bench_chunk(config, dtype, device, chunk, h, w, repeats)
        step = seconds * num_windows
        for mode in ("randomized", "none", "linear"):
            assert mode in BLEND_MODES
            fuse = bench_fuse(mode, dtype, device, frames_video, chunk, overlap, h, w, repeats)
            print(f"| {str(dtype).replace('torch.', '')} | {seconds * 1e3:.1f} | {peak:.2f} | {mode} | "
                  f"{fuse * 1e3:.2f} | {fuse / step:.4%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
