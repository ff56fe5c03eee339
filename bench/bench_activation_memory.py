"""Activation memory of one CFG forward at the published widths (head size 64), measured; chunking's time cost.

    python bench/bench_activation_memory.py              # all three models (meta device: seconds, no RAM)
    python bench/bench_activation_memory.py --quick      # the refiner only
    python bench/bench_activation_memory.py --timing     # + chunked vs unchunked forward time on the CPU
    (on a CUDA machine the same command also measures the real shapes with torch.cuda.max_memory_allocated)

How it measures. A full-width forward on the CPU takes minutes even at a 10x16 latent (1.4 B parameters), and the
real 1280x720 shape would need tens of GB, so the activation peak is measured on the meta device: the published
architectures (``RefinerUNetConfig.full()``, ``UNet3DConfig.full()``, ``ExtenderConfig.full()``) run their real
forward code on meta tensors (shapes and dtypes, no data) under ``memory_estimate.LiveTensorTracker``, which counts
every new tensor storage an op returns and frees it when its last tensor dies: the peak of live activation bytes, in
fp16, the weights and inputs excluded. What it cannot see is kernel-internal workspace; on meta,
``scaled_dot_product_attention`` returns only its output, as the memory-efficient kernels the host uses on CUDA do.
tests/core/models/test_activation_memory.py checks the tracker against ``torch.profiler(profile_memory=True)`` on
real CPU forwards of the same code at a scaled width.

Per model: three latent sizes with CFG batch 2 and forward chunking at a small limit (2^24 elements, so the pieces
are a small fixed part): ``peak = kappa * P * 2 bytes + fixed`` with ``P = B*T*H*W``, fitted through the smallest and
largest size and checked on the middle one (the linearity test). ``memory_estimate.MEASURED`` ships ``kappa``;
the estimate adds the default piece. Then the real shapes are measured directly, chunked (default limit) and not.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import device_name  # noqa: E402
from streamingt2v_core.models import (  # noqa: E402
    ExtenderConfig,
    RefinerUNetConfig,
    StreamingT2VExtender,
    UNet3D,
    UNet3DConfig,
)
from streamingt2v_core.models.blocks import set_forward_chunking  # noqa: E402
from streamingt2v_core.models.memory_estimate import (  # noqa: E402
    MEASURED,
    SAFETY,
    activation_bytes,
    measure_peak_bytes_tracked,
    scaled_unet_config,
)

#: Forward-chunking limit of the measurement: small, so the pieces are a small fixed part of the peak.
MEASURE_CHUNK = 2**24
#: Per model, three (T, H, W) with CFG batch 2; fitted on the first and last, the middle one checks linearity.
SIZES = {
    "refiner": [(24, 18, 32), (24, 26, 48), (24, 42, 80)],
    "base": [(16, 16, 16), (16, 24, 24), (16, 32, 40)],
    "extender": [(16, 16, 16), (16, 24, 24), (16, 32, 40)],
}
#: The real shapes (a GPU run measures these; the CPU run extrapolates to them).
REAL = {
    "refiner": [("1280x720", (24, 90, 160)), ("1024x592", (24, 74, 128))],
    "base": [("256x256", (16, 32, 32))],
    "extender": [("256x256", (16, 32, 32))],
}
KIND = {"refiner": "unet3d", "base": "unet3d", "extender": "extender"}


def shared_weight_model(name: str, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The published model; off the meta device with one shared random tensor per parameter shape (an activation
    peak does not depend on the values; the refiner's weights then take 0.64 GB instead of 5.6 GB in fp32)."""
    with torch.device("meta"):
        if name == "extender":
            model: nn.Module = StreamingT2VExtender(ExtenderConfig.full())
        else:
            model = UNet3D(RefinerUNetConfig.full() if name == "refiner" else UNet3DConfig.full())
    if device.type == "meta":
        return model.to(dtype).eval()
    pool: dict[tuple, torch.Tensor] = {}
    g = torch.Generator().manual_seed(0)
    for module in model.modules():
        for pname, p in list(module._parameters.items()):
            if p is None:
                continue
            key = (tuple(p.shape), pname == "weight" and p.ndim == 1)
            if key not in pool:
                if p.ndim >= 2:
                    value = torch.randn(p.shape, generator=g) / max(1, p[0].numel()) ** 0.5
                elif key[1]:
                    value = torch.ones(p.shape)
                else:
                    value = torch.zeros(p.shape)
                pool[key] = value.to(device=device, dtype=dtype)
            module._parameters[pname] = nn.Parameter(pool[key], requires_grad=False)
    return model.eval()


def forward_fn(model: nn.Module, name: str, thw: tuple[int, int, int], device, dtype, batch: int = 2):
    t, h, w = thw
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 4, t, h, w, generator=g).to(device, dtype)
    ts = torch.full((batch,), 500.0, device=device)
    ctx = torch.randn(batch, 77, 1024, generator=g).to(device, dtype)
    if name == "extender":
        img = torch.randn(batch, 1024, generator=g).to(device, dtype)
        frames = (torch.rand(batch, 8, 3, 8 * h, 8 * w, generator=g) * 2 - 1).to(device, dtype)
        return lambda: model(x, ts, ctx, img, frames)
    return lambda: model(x, ts, ctx)


def peak_bytes(fn, device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        with torch.inference_mode():
            out = fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        del out
        return peak
    return measure_peak_bytes(fn)


@dataclass
class Point:
    model: str
    thw: tuple[int, int, int]
    chunked: int
    unchunked: int

    @property
    def positions(self) -> int:
        t, h, w = self.thw
        return 2 * t * h * w


def line(p0: Point, p1: Point, attr: str, dtype_bytes: int) -> tuple[float, float]:
    """kappa (elements per position) and fixed bytes through two points."""
    y0, y1 = getattr(p0, attr), getattr(p1, attr)
    kappa = (y1 - y0) / (p1.positions - p0.positions) / dtype_bytes
    return kappa, y0 - kappa * dtype_bytes * p0.positions


def time_forward(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.inference_mode():
            fn()
        best = min(best, time.perf_counter() - start)
    return best


def meta_peak(model: nn.Module, name: str, thw: tuple[int, int, int], limit: int | None) -> int:
    set_forward_chunking(model, limit)
    return measure_peak_bytes_tracked(forward_fn(model, name, thw, torch.device("meta"), torch.float16))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the refiner only")
    parser.add_argument("--models", default=None, help="comma list of refiner,base,extender")
    parser.add_argument("--timing", action="store_true", help="also time chunked vs unchunked on the CPU")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = (args.models or ("refiner" if args.quick else "refiner,base,extender")).split(",")
    from streamingt2v_core.models.blocks import DEFAULT_FF_CHUNK_ELEMENTS

    print("### bench_activation_memory: one CFG forward at the published widths (head size 64), fp16")
    print(f"Measured on the meta device (LiveTensorTracker); torch {torch.__version__}; "
          f"date {_dt.date.today().isoformat()}\n")
    print("| model | latent 2 x 4 x T x H x W | positions P | peak MiB (chunked, 2^24 pieces) | kappa = peak / 2P |")
    print("|---|---|---|---|---|")
    fits = {}
    for name in names:
        model = shared_weight_model(name, torch.device("meta"), torch.float16)
        points = []
        for thw in SIZES[name]:
            peak = meta_peak(model, name, thw, MEASURE_CHUNK)
            points.append(Point(name, thw, peak, 0))
            print(f"| {name} | 2x4x{'x'.join(map(str, thw))} | {points[-1].positions} | {peak / 2**20:.1f} | "
                  f"{peak / 2 / points[-1].positions:.0f} |")
        kappa, fixed = line(points[0], points[-1], "chunked", 2)
        mid = points[1]
        fits[name] = (kappa, fixed, (kappa * 2 * mid.positions + fixed) / mid.chunked - 1, model)
    print("\nFit through the smallest and largest size; the middle size checks linearity. Real shapes measured "
          "directly (default limit = chunked; 0 = unchunked) vs the fit's extrapolation and what our MODELs tell the "
          f"host (`memory_required`, x {SAFETY} margin):\n")
    print("| model | kappa | fixed MiB | middle-size error | shipped kappa | real shape | extrapolated GiB | "
          "measured chunked GiB | measured unchunked GiB | memory_required GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        kappa, fixed, err, model = fits[name]
        for label, thw in REAL[name]:
            positions = 2 * thw[0] * thw[1] * thw[2]
            extrapolated = (kappa * positions * 2 + fixed + DEFAULT_FF_CHUNK_ELEMENTS * 2) / 2**30
            chunked = meta_peak(model, name, thw, None) / 2**30
            unchunked = meta_peak(model, name, thw, 0) / 2**30
            est = activation_bytes(KIND[name], model_config(name), (2, 4, *thw), 2) / 2**30
            print(f"| {name} | {kappa:.0f} | {fixed / 2**20:.1f} | {err:+.2%} | {MEASURED[KIND[name]].kappa:.0f} | "
                  f"{label} 2x4x{'x'.join(map(str, thw))} | {extrapolated:.2f} | {chunked:.2f} | {unchunked:.2f} | "
                  f"{est:.2f} |")

    if torch.cuda.is_available():
        device = torch.device("cuda")
        print(f"\nOn {device_name(device)}: torch.cuda.max_memory_allocated above the weights and inputs, fp16:\n")
        print("| model | real shape | chunked GiB | unchunked GiB |")
        print("|---|---|---|---|")
        for name in names:
            model = shared_weight_model(name, device, torch.float16)
            for label, thw in REAL[name]:
                row = []
                for limit in (None, 0):
                    set_forward_chunking(model, limit)
                    try:
                        row.append(f"{peak_bytes(forward_fn(model, name, thw, device, torch.float16), device) / 2**30:.2f}")
                    except torch.cuda.OutOfMemoryError:
                        row.append("out of memory")
                    torch.cuda.empty_cache()
                print(f"| {name} | {label} | {row[0]} | {row[1]} |")
            del model
            torch.cuda.empty_cache()

    if args.timing:
        # At head size 16 (the published architecture scaled, so a CPU forward takes seconds) with the limit scaled
        # alike, the pieces hold as many tokens as at the published width with the default limit.
        scale = 16
        limit = DEFAULT_FF_CHUNK_ELEMENTS * scale // 64
        thw = (8, 26, 48)
        torch.manual_seed(0)
        model = UNet3D(scaled_unet_config(scale, refiner=True)).eval()
        fn = forward_fn(model, "refiner", thw, torch.device("cpu"), torch.float32)
        times = {0: float("inf"), limit: float("inf")}
        for _ in range(3):
            for lim in times:
                set_forward_chunking(model, lim)
                times[lim] = min(times[lim], time_forward(fn, 1))
        print(f"\nCPU time of one CFG refiner forward (head size {scale}, 2x4x{'x'.join(map(str, thw))}, fp32, "
              f"{device_name(torch.device('cpu'))}), unchunked vs chunked at 2^26 x {scale}/64 elements "
              "(8,192 tokens per feed-forward piece in transformer_in, as at the published width), alternating, "
              "best of 3:\n")
        print("| unchunked s | chunked s | cost |")
        print("|---|---|---|")
        print(f"| {times[0]:.2f} | {times[limit]:.2f} | {times[limit] / times[0] - 1:+.1%} |")
    return 0


def model_config(name: str):
    return {"refiner": RefinerUNetConfig.full(), "base": UNet3DConfig.full(),
            "extender": ExtenderConfig.full().unet}[name]


if __name__ == "__main__":
    raise SystemExit(main())
