"""Measure the activation memory of our UNets on the CPU, fit the memory model, compare with the shipped fit.

    python bench/bench_memory.py              # measure at head sizes 2, 4, 8 (the published architecture scaled)
    python bench/bench_memory.py --quick      # fewer points (the gpu.sh dry run)

Every point is one forward in fp32 under ``torch.profiler`` (``profile_memory=True``): the peak of live tensor
memory allocated inside the forward (see ``streamingt2v_core.models.memory_estimate.measure_peak_bytes``). The
published architectures are scaled to head size ``s`` (same head counts and width ratios, see
``memory_estimate.scaled_unet_config``), and per kind the points are fitted by least squares to

    peak bytes / 4 = (slope * s + offset) * B*T*H*W + fixed

The table prints kappa = peak / (4 B*T*H*W) per point, the fit, and the shipped ``FITS`` for comparison, plus what the
fit predicts at the published size (s = 64) for the goals' shapes.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import device_name  # noqa: E402
from streamingt2v_core.models import StreamingT2VExtender, UNet3D  # noqa: E402
from streamingt2v_core.models.memory_estimate import (  # noqa: E402
    FITS,
    SAFETY,
    ActivationFit,
    activation_bytes,
    measure_peak_bytes,
    scaled_extender_config,
    scaled_unet_config,
)

#: (kind, model, batch, frames, height, width) points; refiner heights must pass its resampling check.
POINTS = {
    "unet3d": [("base", 2, 16, 8, 8), ("base", 2, 16, 16, 16), ("refiner", 2, 8, 10, 16), ("refiner", 1, 24, 10, 16)],
    "extender": [("extender", 2, 16, 8, 8), ("extender", 2, 16, 16, 16), ("extender", 1, 16, 16, 16)],
}
QUICK_POINTS = {
    "unet3d": [("base", 2, 8, 8, 8), ("refiner", 2, 8, 10, 16)],
    "extender": [("extender", 2, 16, 8, 8), ("extender", 1, 16, 16, 16)],
}


@dataclass
class Point:
    kind: str
    model: str
    scale: int
    shape: tuple[int, int, int, int]
    peak_bytes: int
    seconds: float

    @property
    def positions(self) -> int:
        b, t, h, w = self.shape
        return b * t * h * w

    @property
    def kappa(self) -> float:
        return self.peak_bytes / 4 / self.positions


def measure(kind: str, model_name: str, scale: int, shape: tuple[int, int, int, int]) -> Point:
    torch.manual_seed(0)
    b, t, h, w = shape
    if model_name == "extender":
        model = StreamingT2VExtender(scaled_extender_config(scale)).eval()
    else:
        model = UNet3D(scaled_unet_config(scale, refiner=model_name == "refiner")).eval()
    x = torch.randn(b, 4, t, h, w)
    ts = torch.full((b,), 500.0)
    ctx = torch.randn(b, 77, 1024)
    if model_name == "extender":
        # the host concatenates cond and uncond, so the CAM frames arrive once per batch item
        img, frames = torch.randn(b, 1024), torch.rand(b, 8, 3, 8 * h, 8 * w) * 2 - 1

        def fn():
            return model(x, ts, ctx, img, frames)
    else:

        def fn():
            return model(x, ts, ctx)

    start = time.perf_counter()
    peak = measure_peak_bytes(fn)
    return Point(kind, model_name, scale, shape, peak, time.perf_counter() - start)


def fit(points: list[Point]) -> tuple[ActivationFit, float]:
    """Least squares of peak/4 = (slope s + offset) N + fixed over the points; returns the fit and fixed bytes."""
    rows = torch.tensor([[p.positions * p.scale, p.positions, 1.0] for p in points], dtype=torch.float64)
    target = torch.tensor([p.peak_bytes / 4 for p in points], dtype=torch.float64)
    sol = torch.linalg.lstsq(rows, target.unsqueeze(1)).solution.squeeze(1)
    return ActivationFit(slope=float(sol[0]), offset=float(sol[1])), float(sol[2]) * 4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer points (dry runs)")
    parser.add_argument("--scales", default=None, help="comma list of head sizes (default 2,4,8; quick 2,4)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    scales = [int(s) for s in (args.scales or ("2,4" if args.quick else "2,4,8")).split(",")]
    plan = QUICK_POINTS if args.quick else POINTS

    points: list[Point] = []
    for kind, specs in plan.items():
        for scale in scales:
            for model_name, *shape in specs:
                p = measure(kind, model_name, scale, tuple(shape))
                points.append(p)
                print(f"# {kind} {model_name} s={scale} {shape}: {p.peak_bytes / 2**20:.2f} MiB, kappa {p.kappa:.1f} "
                      f"({p.seconds:.1f} s)", file=sys.stderr)

    print("### bench_memory: activation memory of one forward (CPU, torch.profiler, fp32)")
    print(f"Device: {device_name(torch.device('cpu'))}; torch {torch.__version__}; date {_dt.date.today().isoformat()}\n")
    print("| kind | model | head size s | B x T x H x W | peak MiB | kappa (elements per latent position) |")
    print("|---|---|---|---|---|---|")
    for p in points:
        print(f"| {p.kind} | {p.model} | {p.scale} | {'x'.join(map(str, p.shape))} | {p.peak_bytes / 2**20:.2f} | "
              f"{p.kappa:.1f} |")
    print("\n| kind | fitted slope | fitted offset | fixed MiB | max fit error | shipped slope | shipped offset | "
          "kappa at s=64 (fit) | shipped | difference |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    fits = {}
    for kind in plan:
        pts = [p for p in points if p.kind == kind]
        f, fixed = fit(pts)
        fits[kind] = f
        err = max(abs((f.kappa(p.scale) * p.positions * 4 + fixed) / p.peak_bytes - 1) for p in pts)
        shipped = FITS[kind]
        diff = (shipped.kappa(64) / f.kappa(64) - 1) if f.kappa(64) else float("nan")
        print(f"| {kind} | {f.slope:.2f} | {f.offset:.1f} | {fixed / 2**20:.2f} | {err:.2%} | {shipped.slope:.2f} | "
              f"{shipped.offset:.1f} | {f.kappa(64):.0f} | {shipped.kappa(64):.0f} | {diff:+.1%} |")

    from streamingt2v_core.models import ExtenderConfig, RefinerUNetConfig

    print(f"\nPredicted at the published size (shipped fit x safety {SAFETY}, + fixed), fp16, weights not included:\n")
    print("| case | latent B x C x T x H x W | estimate GiB |")
    print("|---|---|---|")
    cases = [
        ("extender CFG forward (256x256)", "extender", ExtenderConfig.full().unet, (2, 4, 16, 32, 32)),
        ("refiner CFG forward (1280x720)", "unet3d", RefinerUNetConfig.full(), (2, 4, 24, 90, 160)),
        ("refiner one branch (1280x720)", "unet3d", RefinerUNetConfig.full(), (1, 4, 24, 90, 160)),
        ("refiner CFG forward (1024x592)", "unet3d", RefinerUNetConfig.full(), (2, 4, 24, 74, 128)),
        ("refiner one branch (1024x592)", "unet3d", RefinerUNetConfig.full(), (1, 4, 24, 74, 128)),
    ]
    for name, kind, cfg, shape in cases:
        print(f"| {name} | {'x'.join(map(str, shape))} | {activation_bytes(kind, cfg, shape, 2) / 2**30:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
