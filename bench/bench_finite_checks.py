"""Cost of the NaN/inf checks (issue 14): what they add to one extension chunk, against the chunk's sampling.

The checks the nodes run (``streamingt2v_core/checks.py``, ``nodes/validation.py``), by when they run:

* every sampler step: :class:`~streamingt2v_core.checks.FiniteWatch` on the step's prediction x0 and state x;
* every chunk: the sampled latent after the last step (finite, and within a VAE latent's range) and the decoded
  new frames;
* every run: the first chunk and the anchor frame (``nodes.validation.check_extend_frames``);
* at load time: the UNet's weights (a float32 sum per tensor), once per file, not per chunk.

The reference is the chunk's sampling: ``steps`` CFG forwards (batch 2) of the extender at the same latent size,
timed here with random weights (speed does not depend on them). The table gives each check's median time, its
time per chunk (times its count per chunk) and its share of the chunk's sampling time; the goal is under 1 % in
all.

    python bench/bench_finite_checks.py          # CPU: tiny extender at 64x64 (8x8 latents), checks at that size
    python bench/bench_finite_checks.py --full   # the published extender at 256x256, 50 steps (for a GPU)

On a CPU the default run also times the checks at the full-size shapes (256x256 frames, 32x32 latents: the shapes
do not depend on the weights) and states the full-size estimate against the GPU goal of 35 ms per extender CFG
forward (issue 17): that assumes the checks cost no more on the GPU than on this CPU (they are reductions over a
few hundred kB; a GPU runs them in microseconds plus one synchronisation per step).
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, device_name  # noqa: E402,F401

import torch  # noqa: E402

from streamingt2v_core.checks import FiniteWatch, all_finite, nonfinite_frames, nonfinite_parameters  # noqa: E402
from streamingt2v_core.models import ExtenderConfig, StreamingT2VExtender  # noqa: E402

#: The issue's full-size goal for one extender CFG forward at 16x32x32 on an H100-class GPU (bf16).
GPU_GOAL_FORWARD_MS = 35.0
#: The extender's published parameter count (weights checked once at load).
FULL_EXTENDER_PARAMS = 2.1e9


@dataclass
class Row:
    check: str
    when: str
    shape: str
    ms: float
    per_chunk: float  # how many times per chunk


def _median_ms(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def check_rows(height: int, width: int, steps: int, frames: int, device: torch.device, dtype: torch.dtype,
               repeats: int) -> list[Row]:
    """Each check on finite tensors of one chunk's shapes (the common case: nothing found, one pass)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    latent = torch.randn(1, 4, 16, height // 8, width // 8, generator=gen).to(device, dtype)
    x0 = torch.randn(1, 4, 16, height // 8, width // 8, generator=gen).to(device, dtype)
    decoded = torch.rand(8, height, width, 3, generator=gen).to(device)
    first = torch.rand(frames, height, width, 3, generator=gen)  # the nodes get IMAGE on the CPU
    watch = FiniteWatch(steps)
    lat = f"1x4x16x{height // 8}x{width // 8}"

    def sampled_latent() -> None:
        assert all_finite(latent)
        float(latent.abs().amax())  # the range test of nodes.validation.check_sampled_latent

    return [
        Row("step watch (x0 and x)", "every step", lat, _median_ms(lambda: watch(0, x0, latent), device, repeats),
            steps),
        Row("sampled latent (finite, range)", "every chunk", lat, _median_ms(sampled_latent, device, repeats), 1),
        Row("decoded new frames", "every chunk", f"8x{height}x{width}x3",
            _median_ms(lambda: nonfinite_frames(decoded), device, repeats), 1),
        Row("first chunk + anchor", "every run", f"{frames + 1}x{height}x{width}x3",
            _median_ms(lambda: (nonfinite_frames(first), nonfinite_frames(first[:1])), torch.device("cpu"),
                       repeats), 0),
    ]


def sampling_ms(cfg: ExtenderConfig, height: int, width: int, device: torch.device, dtype: torch.dtype,
                repeats: int) -> float:
    """Median time of one extender CFG forward (batch 2) at ``height`` x ``width`` pixels."""
    with torch.device(device):
        model = StreamingT2VExtender(cfg)
    model = model.to(dtype).eval()
    gen = torch.Generator(device="cpu").manual_seed(1)
    inputs = dict(
        sample=torch.randn(2, 4, 16, height // 8, width // 8, generator=gen).to(device, dtype),
        timestep=torch.tensor([501.0, 501.0], device=device),
        encoder_hidden_states=torch.randn(2, 77, 1024, generator=gen).to(device, dtype),
        image_embeds=torch.randn(2, 1024, generator=gen).to(device, dtype),
        cond_frames=torch.rand(1, 8, 3, height, width, generator=gen).mul(2).sub(1).to(device, dtype),
    )
    with torch.inference_mode():
        ms = _median_ms(lambda: model(**inputs), device, repeats)
    del model
    return ms


def weight_check_ms_per_gparam(device: torch.device, dtype: torch.dtype) -> float:
    """The load-time weight check's time per 1e9 parameters (measured on 64 tensors of 1 M each)."""
    module = torch.nn.Module()
    gen = torch.Generator(device="cpu").manual_seed(2)
    for i in range(64):
        module.register_parameter(f"w{i}", torch.nn.Parameter(torch.randn(1024, 1024, generator=gen).to(device, dtype)))
    ms = _median_ms(lambda: nonfinite_parameters(module), device, 3)
    return ms * 1e9 / (64 * 1024 * 1024)


def table(rows: list[Row], chunk_ms: float, title: str) -> list[str]:
    lines = [f"**{title}**: chunk sampling {chunk_ms:,.0f} ms", "",
             "| check | when | tensor | ms per call | ms per chunk | share of the chunk |",
             "|---|---|---|---:|---:|---:|"]
    total = 0.0
    for r in rows:
        per_chunk = r.ms * r.per_chunk
        total += per_chunk
        share = f"{100.0 * per_chunk / chunk_ms:.3f} %" if r.per_chunk else "once per run"
        count = f" x {r.per_chunk}" if r.per_chunk > 1 else ""
        lines.append(f"| {r.check} | {r.when}{count} | {r.shape} | {r.ms:.3f} | "
                     f"{per_chunk:.3f} | {share} |")
    lines.append(f"| **all per-chunk checks** | | | | **{total:.3f}** | **{100.0 * total / chunk_ms:.3f} %** |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="the published extender at 256x256, 50 steps (for a GPU)")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda if available)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps per chunk (default 50 full, 20 CPU)")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per check")
    args = p.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    dtype_name = str(dtype).replace("torch.", "")
    steps = args.steps or (50 if args.full else 20)
    cfg, size = (ExtenderConfig.full(), 256) if args.full else (ExtenderConfig.tiny(), 64)

    forward = sampling_ms(cfg, size, size, device, dtype, repeats=3)
    chunk_ms = forward * steps
    rows = check_rows(size, size, steps, 16, device, dtype, args.repeats)
    preset = "published extender" if args.full else "tiny extender"
    out = [f"### NaN/inf checks per extension chunk ({device_name(device)}, {dtype_name}, "
           f"{datetime.date.today().isoformat()})", ""]
    out += table(rows, chunk_ms, f"{preset} at {size}x{size}, {steps} steps x {forward:.1f} ms per CFG forward")
    gparam = weight_check_ms_per_gparam(device, dtype)
    out += ["", f"Load-time weight check: {gparam:,.0f} ms per 1e9 parameters, so about "
                f"{gparam * FULL_EXTENDER_PARAMS / 1e9 / 1000:.1f} s for the 2.1 B-parameter extender, once per "
                f"load (not per chunk)."]
    if not args.full and device.type == "cpu":
        full_rows = check_rows(256, 256, 50, 16, device, dtype, args.repeats)
        goal_chunk = GPU_GOAL_FORWARD_MS * 50
        out += [""]
        out += table(full_rows, goal_chunk, f"full-size estimate: the checks at 256x256 on this CPU against a chunk "
                                            f"at the GPU goal, 50 steps x {GPU_GOAL_FORWARD_MS:.0f} ms per CFG forward")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
