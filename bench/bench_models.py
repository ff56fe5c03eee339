"""Benchmark our models against diffusers' ``UNet3DConditionModel`` (random weights; speed does not depend on them).

One classifier-free-guidance forward (batch 2) per case; median wall time over ``--repeats`` after ``--warmup``
runs, and peak CUDA memory (weights included) on a GPU. Every UNet3D case also times diffusers'
``UNet3DConditionModel`` at the same config in the same run, with the same weights, and reports the largest
relative difference of the two outputs (a free correctness check). The extender case is compared with diffusers'
plain UNet3D at the same size: the difference is the price of the CAM, the 13 mergers and the 16 APM mixers.

Cases (``--full``, for a GPU: the published presets at the published sizes):
- ``base``: ModelScope UNet3D, 16 frames, 32x32 latents (256x256 pixels);
- ``extender``: StreamingT2V extender (base + CAM on 8 cond frames + APM), 16 frames, 32x32 latents;
- ``refiner``: MS-Vid2Vid-XL UNet3D (v-prediction), 24 frames, 90x160 latents (720x1280 pixels).
Default (CPU, well under two minutes): the ``tiny()`` presets, 16 frames at 8x8, refiner 24 frames at 10x16.

    python bench/bench_models.py                       # CPU, tiny presets, fp32
    python bench/bench_models.py --full                # GPU: full presets, fp32/fp16/bf16
    python bench/bench_models.py --full --dtypes fp16 --cases extender

Prints a Markdown table with the device and date.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamingt2v_core.models import (  # noqa: E402
    ExtenderConfig,
    RefinerUNetConfig,
    StreamingT2VExtender,
    UNet3D,
    UNet3DConfig,
)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class Case:
    name: str
    frames: int
    height: int
    width: int


@dataclass
class Result:
    case: str
    shape: str
    dtype: str
    ours_ms: float
    ref_ms: float | None
    ours_peak: float | None
    ref_peak: float | None
    max_rel_diff: float | None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _time(
    fn: Callable[[], torch.Tensor], device: torch.device, warmup: int, repeats: int
) -> tuple[float, float | None, torch.Tensor]:
    """Median ms and peak GiB (CUDA) of ``fn``; returns its last output."""
    with torch.inference_mode():
        for _ in range(warmup):
            out = fn()
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn()
            _sync(device)
            times.append((time.perf_counter() - t0) * 1000)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return statistics.median(times), peak, out


def _diffusers_unet(cfg: UNet3DConfig, device: torch.device, dtype: torch.dtype):
    try:
        from diffusers import UNet3DConditionModel
        from diffusers.utils import logging as diffusers_logging
    except ImportError:
        return None
    diffusers_logging.set_verbosity_error()  # its "cast with to()" advice does not apply to random weights
    with torch.device(device):
        kwargs = cfg.diffusers_kwargs()
        kwargs.pop("downsample_padding")  # timing reference: diffusers' own ModelScope resampling
        model = UNet3DConditionModel(**kwargs)
    return model.to(dtype).eval()


def _inputs(case: Case, device: torch.device, dtype: torch.dtype, with_extender: bool) -> dict:
    gen = torch.Generator(device="cpu").manual_seed(0)
    b = 2  # one CFG forward: uncond + cond

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    inputs = dict(
        sample=randn(b, 4, case.frames, case.height, case.width),
        timestep=torch.tensor([501.0] * b, device=device),
        encoder_hidden_states=randn(b, 77, 1024),
    )
    if with_extender:
        inputs["image_embeds"] = randn(b, 1024)
        # The same 8 conditioning frames for both CFG halves (broadcast inside).
        inputs["cond_frames"] = randn(1, 8, 3, case.height * 8, case.width * 8).clamp(-1, 1)
    return inputs


def bench_unet(case: Case, cfg: UNet3DConfig, device, dtype_name, warmup, repeats, reference: bool) -> Result:
    dtype = DTYPES[dtype_name]
    inputs = _inputs(case, device, dtype, with_extender=False)
    ref_ms = ref_peak = rel = None
    ref_out = None
    state = None
    if reference:
        ref = _diffusers_unet(cfg, device, dtype)
        if ref is not None:
            ref_ms, ref_peak, ref_out = _time(
                lambda: ref(inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"]).sample,
                device,
                warmup,
                repeats,
            )
            state = ref.state_dict()
            del ref
            _free(device)
    with torch.device(device):
        ours = UNet3D(cfg)
    ours = ours.to(dtype).eval()
    if state is not None:
        ours.load_state_dict(state, strict=True)  # same weights -> outputs comparable
        del state
    ours_ms, ours_peak, out = _time(
        lambda: ours(inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"]), device, warmup, repeats
    )
    # diffusers has no MS-Vid2Vid-XL resampling (row trim, asymmetric padding): timing reference only.
    same_math = cfg.upsample_trim_rows == 0 and cfg.downsample_padding == 1
    if ref_out is not None and same_math:
        rel = ((out.float() - ref_out.float()).abs().max() / ref_out.float().abs().max().clamp_min(1e-12)).item()
    del ours, out, ref_out
    _free(device)
    shape = f"{case.frames}x{case.height}x{case.width}"
    return Result(case.name, shape, dtype_name, ours_ms, ref_ms, ours_peak, ref_peak, rel)


def bench_extender(case: Case, cfg: ExtenderConfig, device, dtype_name, warmup, repeats, reference: bool) -> Result:
    dtype = DTYPES[dtype_name]
    inputs = _inputs(case, device, dtype, with_extender=True)
    ref_ms = ref_peak = None
    if reference:
        ref = _diffusers_unet(cfg.unet, device, dtype)
        if ref is not None:
            ref_ms, ref_peak, _ = _time(
                lambda: ref(inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"]).sample,
                device,
                warmup,
                repeats,
            )
            del ref
            _free(device)
    with torch.device(device):
        ours = StreamingT2VExtender(cfg)
    ours = ours.to(dtype).eval()
    ours_ms, ours_peak, _ = _time(lambda: ours(**inputs), device, warmup, repeats)
    del ours
    _free(device)
    shape = f"{case.frames}x{case.height}x{case.width}"
    return Result(case.name, shape, dtype_name, ours_ms, ref_ms, ours_peak, ref_peak, None)


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="full presets at the published sizes (for a GPU)")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda if available)")
    p.add_argument(
        "--dtypes", default=None, help="comma list of fp32,fp16,bf16 (default: all three on CUDA, fp32 on CPU)"
    )
    p.add_argument("--cases", default="base,extender,refiner", help="comma list of base,extender,refiner")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per case (default 10 on CUDA, 3 on CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 3 on CUDA, 1 on CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is steadier on a busy machine)")
    p.add_argument("--no-reference", action="store_true", help="skip diffusers' UNet3DConditionModel")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    dtypes = (args.dtypes or ("fp32,fp16,bf16" if cuda else "fp32")).split(",")
    for d in dtypes:
        if d not in DTYPES:
            p.error(f"--dtypes: unknown dtype {d!r}; expected some of {sorted(DTYPES)}")
    repeats = args.repeats or (10 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    cases = args.cases.split(",")

    if args.full:
        unet_cfg, ext_cfg, ref_cfg = UNet3DConfig.full(), ExtenderConfig.full(), RefinerUNetConfig.full()
        sizes = {
            "base": Case("base UNet3D", 16, 32, 32),
            "extender": Case("extender (CAM+APM)", 16, 32, 32),
            "refiner": Case("refiner UNet3D", 24, 90, 160),
        }
    else:
        unet_cfg, ext_cfg, ref_cfg = UNet3DConfig.tiny(), ExtenderConfig.tiny(), RefinerUNetConfig.tiny()
        sizes = {
            "base": Case("base UNet3D", 16, 8, 8),
            "extender": Case("extender (CAM+APM)", 16, 8, 8),
            "refiner": Case("refiner UNet3D", 24, 10, 16),
        }
    for c in cases:
        if c not in sizes:
            p.error(f"--cases: unknown case {c!r}; expected some of {sorted(sizes)}")

    results: list[Result] = []
    for dtype_name in dtypes:
        for c in cases:
            if c == "extender":
                r = bench_extender(sizes[c], ext_cfg, device, dtype_name, warmup, repeats, not args.no_reference)
            else:
                cfg = unet_cfg if c == "base" else ref_cfg
                r = bench_unet(sizes[c], cfg, device, dtype_name, warmup, repeats, not args.no_reference)
            results.append(r)
            ref = _fmt(r.ref_ms, ".1f")
            print(f"# {r.case} {r.dtype}: ours {r.ours_ms:.1f} ms, diffusers {ref} ms", file=sys.stderr)

    if cuda:
        dev_name = torch.cuda.get_device_name(device)
    else:
        dev_name = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    preset = "full presets" if args.full else "tiny presets"
    print(f"### bench_models: {preset}, one CFG forward (batch 2), random weights")
    print(
        f"Device: {dev_name}; torch {torch.__version__}; date {_dt.date.today().isoformat()}; "
        f"median of {repeats} after {warmup} warm-up\n"
    )
    print(
        "| case | frames x H x W (latent) | dtype | ours ms | diffusers ms | ours/diffusers "
        "| ours peak GiB | diffusers peak GiB | max rel. diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ratio = None if r.ref_ms is None else r.ours_ms / r.ref_ms
        print(
            f"| {r.case} | {r.shape} | {r.dtype} | {r.ours_ms:.1f} | {_fmt(r.ref_ms, '.1f')} | {_fmt(ratio, '.2f')} | "
            f"{_fmt(r.ours_peak, '.2f')} | {_fmt(r.ref_peak, '.2f')} | {_fmt(r.max_rel_diff, '.1e')} |"
        )
    if any(r.case.startswith("extender") for r in results):
        print("\nThe extender row's diffusers column is the plain UNet3D at the same size (diffusers has no CAM/APM).")
    if any(r.case.startswith("refiner") for r in results):
        print(
            "The refiner's diffusers column is the ModelScope UNet3D at the same size; its outputs are not compared "
            "because MS-Vid2Vid-XL resamples differently (downsample padding (2, 1), row trim after upsampling)."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
