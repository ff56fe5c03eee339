"""Activation memory of one CFG forward at the published widths (head size 64), measured; chunking's time cost.

    python bench/bench_activation_memory.py              # all three models (meta device: minutes of Python, no RAM)
    python bench/bench_activation_memory.py --quick      # the refiner only
    python bench/bench_activation_memory.py --models ''  --timing   # chunked vs unchunked forward time on the CPU
    python bench/bench_activation_memory.py --models ''  --vae      # the host's SD VAE decode (needs .host/ComfyUI)
    (on a CUDA machine the same command also measures the real shapes with torch.cuda.max_memory_allocated;
    ``bash bench/gpu.sh`` runs :func:`part_activation_memory`, the same against ``MEASURED``, in its full-size run)

How it measures. A full-width forward on the CPU takes minutes even at a 10x16 latent (1.4 B parameters), and the
real 1280x720 shape would need tens of GB, so the activation peak is measured on the meta device: the published
architectures (``RefinerUNetConfig.full()``, ``UNet3DConfig.full()``, ``ExtenderConfig.full()``) run their real
forward code on meta tensors (shapes and dtypes, no data) under ``memory_estimate.LiveTensorTracker``, which counts
every new tensor storage an op returns and frees it when its last tensor dies: the peak of live activation bytes, in
fp16, the weights and inputs excluded. What it cannot see is kernel-internal workspace; on meta,
``scaled_dot_product_attention`` returns only its output, as the memory-efficient kernels the host uses on CUDA do.
tests/core/models/test_activation_memory.py checks the tracker against ``torch.profiler(profile_memory=True)`` on
real CPU forwards of the same code at a scaled width, and re-measures the shipped coefficients.

Per model: three latent sizes with CFG batch 2, with forward chunking at a small limit (2^24 elements, so the pieces
are a small fixed part) and without: ``peak = kappa * P * 2 bytes + fixed`` with ``P = B*T*H*W``, fitted through the
smallest and largest size and checked on the middle one (the linearity test). ``memory_estimate.MEASURED`` ships both
kappas; the estimate adds the default piece. Then the real shapes are measured directly, chunked (default limit) and
not.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import statistics
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
    FIXED_BYTES,
    MEASURED,
    SAFETY,
    activation_bytes,
    measure_peak_bytes,
    measure_peak_bytes_tracked,
    scaled_unet_config,
)

#: Forward-chunking limit of the measurement: small, so the pieces are a small fixed part of the peak.
MEASURE_CHUNK = 2**24
#: Per model, three (T, H, W) with CFG batch 2; fitted on the first and last, the middle one checks linearity.
SIZES = {
    "refiner": [(24, 18, 32), (24, 26, 48), (24, 42, 80)],
    # from the shipped 256x256 up: below ~30,000 positions the base's peak has a fixed part (at 16x16: 66 MiB, of
    # which 21 MiB do not scale; FIXED_BYTES covers it), so a fit through smaller sizes is not linear
    "base": [(16, 32, 32), (16, 40, 64), (16, 64, 80)],
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


def fit_model(model: nn.Module, name: str) -> dict:
    """Chunked (``MEASURE_CHUNK``) and unchunked peaks at the three sizes of ``name``; each fitted through the
    smallest and largest size, the middle one checking linearity."""
    points = []
    for thw in SIZES[name]:
        points.append(Point(name, thw, meta_peak(model, name, thw, MEASURE_CHUNK), meta_peak(model, name, thw, 0)))
    out: dict = {"points": points}
    for attr in ("chunked", "unchunked"):
        kappa, fixed = line(points[0], points[-1], attr, 2)
        mid = points[1]
        out[attr] = (kappa, fixed, (kappa * 2 * mid.positions + fixed) / getattr(mid, attr) - 1)
    return out


def real_shapes(model: nn.Module, name: str) -> list[dict]:
    """The real shapes measured directly: the default limit (chunked) and 0 (unchunked)."""
    rows = []
    for label, thw in REAL[name]:
        positions = 2 * thw[0] * thw[1] * thw[2]
        rows.append(dict(label=label, thw=thw, positions=positions, chunked=meta_peak(model, name, thw, None),
                         unchunked=meta_peak(model, name, thw, 0),
                         estimate=activation_bytes(KIND[name], model_config(name), (2, 4, *thw), 2),
                         estimate_unchunked=activation_bytes(KIND[name], model_config(name), (2, 4, *thw), 2,
                                                             chunk_elements=0)))
    return rows


def print_memory(names: list[str]) -> None:
    from streamingt2v_core.models.blocks import DEFAULT_FF_CHUNK_ELEMENTS

    print("### bench_activation_memory: one CFG forward at the published widths (head size 64), fp16")
    print(f"Measured on the meta device (LiveTensorTracker); torch {torch.__version__}; "
          f"date {_dt.date.today().isoformat()}\n")
    print("| model | latent 2 x 4 x T x H x W | positions P | chunked MiB (2^24 pieces) | kappa = peak / 2P | "
          "unchunked MiB | kappa unchunked |")
    print("|---|---|---|---|---|---|---|")
    fits, reals = {}, {}
    for name in names:
        model = shared_weight_model(name, torch.device("meta"), torch.float16)
        fits[name] = fit_model(model, name)
        for p in fits[name]["points"]:
            print(f"| {name} | 2x4x{'x'.join(map(str, p.thw))} | {p.positions:,} | {p.chunked / 2**20:.1f} | "
                  f"{p.chunked / 2 / p.positions:,.0f} | {p.unchunked / 2**20:.1f} | {p.unchunked / 2 / p.positions:,.0f} |")
        reals[name] = real_shapes(model, name)
        del model
    print("\nFits through the smallest and largest size (kappa elements per position, fixed MiB); the middle size "
          "checks linearity:\n")
    print("| model | kappa chunked | fixed MiB | middle-size error | kappa unchunked | fixed MiB | middle-size error | "
          "shipped kappa | shipped kappa unchunked |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        (kc, fc, ec), (ku, fu, eu) = fits[name]["chunked"], fits[name]["unchunked"]
        shipped = MEASURED[KIND[name]]
        print(f"| {name} | {kc:,.0f} | {fc / 2**20:.1f} | {ec:+.2%} | {ku:,.0f} | {fu / 2**20:.1f} | {eu:+.2%} | "
              f"{shipped.kappa:,.0f} | {shipped.kappa_unchunked:,.0f} |")
    print(f"\nReal shapes measured directly (chunked = the default limit, 2^26 elements; unchunked = 0), the fit's "
          f"extrapolation (kappa x P + one default piece) and what our MODELs tell the host (`memory_required`, "
          f"x {SAFETY} margin + {FIXED_BYTES / 2**20:.0f} MiB):\n")
    print("| model | real shape | positions P | extrapolated GiB | measured chunked GiB | kappa | memory_required GiB | "
          "measured unchunked GiB | kappa | memory_required unchunked GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        kc = fits[name]["chunked"][0]
        for r in reals[name]:
            p = r["positions"]
            extrapolated = (kc * p + DEFAULT_FF_CHUNK_ELEMENTS) * 2 / 2**30
            print(f"| {name} | {r['label']} 2x4x{'x'.join(map(str, r['thw']))} | {p:,} | {extrapolated:.2f} | "
                  f"{r['chunked'] / 2**30:.3f} | {r['chunked'] / 2 / p:,.0f} | {r['estimate'] / 2**30:.2f} | "
                  f"{r['unchunked'] / 2**30:.3f} | {r['unchunked'] / 2 / p:,.0f} | {r['estimate_unchunked'] / 2**30:.2f} |")


def print_cuda(names: list[str]) -> None:
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


def chunking_time(repeats: int, scale: int = 16, thw: tuple[int, int, int] = (8, 26, 48)) -> dict:
    """CPU time of one CFG refiner forward at head size ``scale`` (the published architecture scaled, so a CPU
    forward takes seconds), unchunked vs chunked with the limit scaled alike (the pieces then hold as many tokens as
    at the published width with the default limit). One warm-up each, then ``repeats`` rounds, each timing both
    (the order alternating from round to round, so a slow spell of a shared machine falls on both); medians."""
    from streamingt2v_core.models.blocks import DEFAULT_FF_CHUNK_ELEMENTS

    limit = DEFAULT_FF_CHUNK_ELEMENTS * scale // 64
    torch.manual_seed(0)
    model = UNet3D(scaled_unet_config(scale, refiner=True)).eval()
    fn = forward_fn(model, "refiner", thw, torch.device("cpu"), torch.float32)
    times: dict[int, list[float]] = {0: [], limit: []}
    for lim in times:  # warm-up
        set_forward_chunking(model, lim)
        time_forward(fn, 1)
    for r in range(repeats):
        for lim in (list(times) if r % 2 == 0 else list(times)[::-1]):
            set_forward_chunking(model, lim)
            times[lim].append(time_forward(fn, 1))
    set_forward_chunking(model, None)
    pairs = [c / u - 1 for u, c in zip(times[0], times[limit])]
    return dict(scale=scale, thw=thw, limit=limit, unchunked=times[0], chunked=times[limit],
                median_unchunked=statistics.median(times[0]), median_chunked=statistics.median(times[limit]),
                median_pair_cost=statistics.median(pairs))


def print_timing(repeats: int) -> None:
    r = chunking_time(repeats)
    cost = r["median_chunked"] / r["median_unchunked"] - 1
    print(f"\nCPU time of one CFG refiner forward (head size {r['scale']}, 2x4x{'x'.join(map(str, r['thw']))}, fp32, "
          f"{device_name(torch.device('cpu'))}), unchunked vs chunked at 2^26 x {r['scale']}/64 elements (8,192 "
          f"tokens per feed-forward piece in transformer_in, as at the published width), one warm-up each, "
          f"{repeats} rounds alternating the order, medians:\n")
    print("| unchunked s (each round) | chunked s (each round) | median unchunked s | median chunked s | cost of medians | "
          "median of per-round costs | goal |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {', '.join(f'{t:.2f}' for t in r['unchunked'])} | {', '.join(f'{t:.2f}' for t in r['chunked'])} | "
          f"{r['median_unchunked']:.2f} | {r['median_chunked']:.2f} | {cost:+.1%} | {r['median_pair_cost']:+.1%} | "
          f"<= 5%: {'met' if cost <= 0.05 else 'missed'} |")


# --------------------------------------------------------------------------------------------------------------------
# the host's VAE decode (SD VAE), measured on the meta device
# --------------------------------------------------------------------------------------------------------------------
#: The SD 1.x/2.x VAE the host builds (comfy/sd.py, VAE.__init__: "default SD1.x/SD2.x VAE parameters"); ModelScope
#: T2V, the extender and the refiner all decode with it.
SD_VAE_DDCONFIG = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                   "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
#: Latent (rows, columns) decoded at once: one tile of the host's tiled decode (VAE.decode_tiled_ defaults 64x64 and
#: its 32x128 / 128x32 passes; VAEDecodeTiled's default tile_size 512 px = 64 latent), and whole frames at the
#: workflow sizes (the host's regular decode, whose smallest batch is one frame).
VAE_SHAPES = [("tile 512x512", (64, 64)), ("tile 256x1024", (32, 128)), ("frame 256x256", (32, 32)),
              ("frame 1024x592", (74, 128)), ("frame 1280x720", (90, 160))]


def host_vae_decoder(dtype: torch.dtype) -> nn.Module:
    """The host's ``AutoencoderKL`` with the SD VAE config on the meta device, with the attention the host picks on
    CUDA (``pytorch_attention``: SDPA; on meta one op returning its output, as the fused kernels). Needs the host
    importable (``comfy`` on ``sys.path``, its argument parsing off)."""
    import comfy.ldm.modules.diffusionmodules.model as vae_modules
    from comfy.ldm.models.autoencoder import AutoencoderKL

    with torch.device("meta"):
        model = AutoencoderKL(ddconfig=dict(SD_VAE_DDCONFIG), embed_dim=4)
    for module in model.modules():
        if isinstance(module, vae_modules.AttnBlock):
            module.optimized_attention = vae_modules.pytorch_attention
    return model.to(dtype).eval()


def vae_decode_peak(model: nn.Module, rows: int, cols: int) -> int:
    """Peak live bytes of the host's ``decode_fn`` on one latent (``first_stage_model.decode(z).float()``, as in
    ``VAE.decode_tiled_``; the regular decode moves the output off the GPU before ``.float()``, a few % less)."""
    dtype = next(model.parameters()).dtype
    z = torch.empty(1, 4, rows, cols, device="meta", dtype=dtype)
    return measure_peak_bytes_tracked(lambda: model.decode(z).float())


def boot_host_for_vae() -> None:
    """Make the host's modules importable here without starting it (``.host/ComfyUI`` or STREAMINGT2V_COMFYUI_DIR)."""
    import os

    host = Path(os.environ.get("STREAMINGT2V_COMFYUI_DIR", Path(__file__).resolve().parents[1] / ".host" / "ComfyUI"))
    if not (host / "comfy").is_dir():
        raise SystemExit(f"no ComfyUI host at {host} (scripts/setup.sh puts it there)")
    sys.path.insert(0, str(host))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args

    args.cpu = not torch.cuda.is_available()


def print_vae() -> None:
    from streamingt2v_core.memory_plan import VAE_DECODE_ELEMENTS

    boot_host_for_vae()
    print("\nThe host's SD VAE decode (comfy AutoencoderKL, its Decoder with pytorch attention as on CUDA), one call "
          "on the meta device under LiveTensorTracker, batch 1; elements = peak / dtype bytes / latent pixels "
          f"(memory_plan.VAE_DECODE_ELEMENTS ships {VAE_DECODE_ELEMENTS:,}; the host's own estimate, "
          "memory_used_decode, is 2178 x 64 = 139,392):\n")
    print("| call | latent rows x cols | dtype | peak MiB | elements per latent pixel |")
    print("|---|---|---|---|---|")
    for dtype in (torch.bfloat16, torch.float32):
        model = host_vae_decoder(dtype)
        for label, (rows, cols) in VAE_SHAPES:
            peak = vae_decode_peak(model, rows, cols)
            print(f"| {label} | {rows}x{cols} | {str(dtype).replace('torch.', '')} | {peak / 2**20:.1f} | "
                  f"{peak / (torch.finfo(dtype).bits // 8) / (rows * cols):,.0f} |")


# --------------------------------------------------------------------------------------------------------------------
# bench/gpu.sh part "activation_memory": the real peaks on a GPU against what was measured on the meta device
# --------------------------------------------------------------------------------------------------------------------
#: (model, label, (B, T, H, W)) of the part: the real shapes on a GPU; at CPU size (dry run) the tiny presets.
GPU_CASES = [("refiner", "1280x720", (2, 24, 90, 160)), ("refiner", "1024x592", (2, 24, 74, 128)),
             ("base", "256x256", (2, 16, 32, 32)), ("extender", "256x256", (2, 16, 32, 32))]
DRY_CASES = [("refiner", "tiny", (2, 8, 10, 16)), ("base", "tiny", (2, 8, 8, 8)), ("extender", "tiny", (2, 16, 8, 8))]
#: The dry run's chunk limit: small enough that the tiny presets' transformers are cut in pieces, large enough that a
#: forward stays a few hundred ops.
DRY_CHUNK = 2**16


def meta_prediction(kind: str, config, shape: tuple[int, ...], dtype_bytes: int, limit: int | None) -> int:
    """What ``MEASURED`` predicts before the margin and the fixed part: ``kappa x P`` + the feed-forward part, whole
    (unchunked) or one piece (chunked)."""
    from streamingt2v_core.models.memory_estimate import FITS, width_scale

    b, _, t, h, w = shape
    positions = b * t * h * w
    measured = MEASURED[kind]
    ratio = FITS[kind].kappa(width_scale(config)) / FITS[kind].kappa(64)
    ff = (measured.kappa_unchunked - measured.kappa) * ratio * positions
    from streamingt2v_core.models.blocks import DEFAULT_FF_CHUNK_ELEMENTS

    cap = DEFAULT_FF_CHUNK_ELEMENTS if limit is None else limit
    return int((measured.kappa * ratio * positions + (ff if cap == 0 else min(ff, cap))) * dtype_bytes)


def _models_rows(ctx, cases, dtype, dtype_bytes, chunked_limit, rows: list, write) -> None:
    """The UNet rows of :func:`part_activation_memory`, one model on the device at a time."""
    from bench.gpu_parts import build, config_for

    for name in dict.fromkeys(c[0] for c in cases):
        model = build(name, True, ctx.device, dtype) if ctx.dry else shared_weight_model(name, ctx.device, dtype)
        config = config_for(name, ctx.dry)
        unet_config = config.unet if name == "extender" else config
        for _, label, (b, t, h, w) in (c for c in cases if c[0] == name):
            shape = (b, 4, t, h, w)
            for chunking, limit in (("chunked", chunked_limit), ("unchunked", 0)):
                set_forward_chunking(model, limit)
                fn = forward_fn(model, name, (t, h, w), ctx.device, dtype, batch=b)
                try:
                    peak = peak_bytes(fn, ctx.device)
                except torch.cuda.OutOfMemoryError:
                    peak = None
                del fn
                ctx.free()
                meta = meta_prediction(KIND[name], unet_config, shape, dtype_bytes, limit)
                estimate = activation_bytes(KIND[name], unet_config, shape, dtype_bytes, chunk_elements=limit)
                rows.append(dict(model=name, label=label, shape=list(shape), chunking=chunking,
                                 measured_gib=(peak or 0) / 2**30, meta_gib=meta / 2**30,
                                 measured_over_meta=(peak or 0) / max(meta, 1), estimate_gib=estimate / 2**30,
                                 ratio=estimate / max(peak or 1, 1), out_of_memory=peak is None))
                write()
        del model
        ctx.free()


def part_activation_memory(ctx) -> dict:
    """bench/gpu.sh part: one CFG forward per model at the real shapes, chunked (default limit) and unchunked, fp16:
    ``torch.cuda.max_memory_allocated`` above the weights and inputs vs the meta-device measurement (``MEASURED``)
    and the estimate our MODELs give the host; then the host's SD VAE decode of one 512x512 tile and one 1280x720
    frame in bf16 vs ``memory_plan.VAE_DECODE_ELEMENTS``. Dry run (CPU): the tiny presets at small shapes with a small
    chunk limit, the CPU profiler's peak, fp32; the VAE at a 16x16 latent."""
    from streamingt2v_core.memory_plan import VAE_DECODE_ELEMENTS

    dtype = torch.float32 if ctx.dry else torch.float16
    dtype_bytes = torch.finfo(dtype).bits // 8
    chunked_limit = DRY_CHUNK if ctx.dry else None
    rows: list[dict] = []
    vae_rows: list[dict] = []

    def write() -> None:
        how = "CPU profiler peak (dry run: tiny presets, fp32)" if ctx.dry else "torch.cuda.max_memory_allocated, fp16"
        text = (f"One CFG forward per row, chunked ({'2^16-element pieces' if ctx.dry else 'default limit'}) and "
                f"unchunked: measured = {how}, above weights and inputs; meta = what the meta-device measurement "
                "(`memory_estimate.MEASURED`) predicts without margin; estimate = `memory_required` (x SAFETY + "
                "fixed part).\n\n| model | latent | chunking | measured GiB | meta GiB | measured / meta | "
                "estimate GiB | estimate / measured |\n|---|---|---|---|---|---|---|---|\n")
        text += "".join(f"| {r['model']} | {r['label']} {'x'.join(map(str, r['shape']))} | {r['chunking']} | "
                        f"{r['measured_gib']:.3f} | {r['meta_gib']:.3f} | {r['measured_over_meta']:.2f} | "
                        f"{r['estimate_gib']:.3f} | {r['ratio']:.2f} |\n" for r in rows)
        if vae_rows:
            text += ("\nThe host's SD VAE decode (`first_stage_model.decode(z).float()`, batch 1): measured vs "
                     f"`memory_plan.VAE_DECODE_ELEMENTS` ({VAE_DECODE_ELEMENTS:,} elements per latent pixel, no "
                     "margin).\n\n| call | latent | dtype | measured MiB | plan MiB | measured / plan |\n"
                     "|---|---|---|---|---|---|\n")
            text += "".join(f"| {r['call']} | {r['latent']} | {r['dtype']} | {r['measured_mib']:.1f} | "
                            f"{r['plan_mib']:.1f} | {r['measured_over_plan']:.2f} |\n" for r in vae_rows)
        ctx.table(text)
        ctx.save(rows=rows, vae=vae_rows)

    cases = DRY_CASES if ctx.dry else GPU_CASES
    threads = torch.get_num_threads()
    if ctx.dry:
        # one thread: on a shared CPU every multi-threaded op can wait a scheduler slice for its second thread, and
        # the chunked forwards are thousands of small ops (measured: a 100 s forward at 2 threads, 5 s at one)
        torch.set_num_threads(1)
    try:
        _models_rows(ctx, cases, dtype, dtype_bytes, chunked_limit, rows, write)
    finally:
        torch.set_num_threads(threads)

    try:
        boot_host_for_vae()
        importlib.import_module("comfy.ldm.models.autoencoder")  # the host's VAE, or a row saying why not
    except (SystemExit, ImportError) as exc:
        vae_rows.append(dict(call=f"skipped: {exc}", latent="-", dtype="-", measured_mib=0.0, plan_mib=0.0,
                             measured_over_plan=0.0))
        write()
        return ctx.data
    vae_dtype = torch.float32 if ctx.dry else torch.bfloat16
    vae = real_vae_decoder(vae_dtype, ctx.device)
    for call, (rows_, cols) in ([("frame 128x128", (16, 16))] if ctx.dry else
                                [("tile 512x512", (64, 64)), ("frame 1280x720", (90, 160))]):
        z = torch.randn(1, 4, rows_, cols).to(ctx.device, vae_dtype)
        peak = peak_bytes(lambda z=z: vae.decode(z).float(), ctx.device)
        plan = VAE_DECODE_ELEMENTS * rows_ * cols * (torch.finfo(vae_dtype).bits // 8)
        vae_rows.append(dict(call=call, latent=f"{rows_}x{cols}", dtype=str(vae_dtype).replace("torch.", ""),
                             measured_mib=peak / 2**20, plan_mib=plan / 2**20, measured_over_plan=peak / plan))
        write()
        del z
        ctx.free()
    return ctx.data


def real_vae_decoder(dtype: torch.dtype, device: torch.device) -> nn.Module:
    """:func:`host_vae_decoder` with real (random) weights on ``device``."""
    model = host_vae_decoder(dtype)
    g = torch.Generator().manual_seed(0)
    model = model.to_empty(device=device)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_((torch.randn(p.shape, generator=g) * 0.02 if p.ndim > 1 else torch.ones(p.shape)).to(dtype))
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the refiner only")
    parser.add_argument("--models", default=None, help="comma list of refiner,base,extender ('' = none)")
    parser.add_argument("--timing", action="store_true", help="also time chunked vs unchunked on the CPU")
    parser.add_argument("--repeats", type=int, default=7, help="rounds of the timing (median)")
    parser.add_argument("--vae", action="store_true", help="also measure the host's SD VAE decode (needs the host)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = "refiner" if args.quick else ("refiner,base,extender" if args.models is None else args.models)
    names = [n for n in models.split(",") if n]
    if names:
        print_memory(names)
        if torch.cuda.is_available():
            print_cuda(names)
    if args.timing:
        print_timing(args.repeats)
    if args.vae:
        print_vae()
    return 0


def model_config(name: str):
    return {"refiner": RefinerUNetConfig.full(), "base": UNet3DConfig.full(),
            "extender": ExtenderConfig.full().unet}[name]


if __name__ == "__main__":
    raise SystemExit(main())
