"""The model-level parts of ``bench/gpu.sh`` (plain PyTorch, no host): forwards, profile by module type, compile.

Each part is a function ``part(ctx) -> dict`` that measures, writes its table with :meth:`Ctx.table` as soon as it
has rows (so a part stopped by its time limit keeps what it measured) and returns data for the summary. Full size on
a GPU; ``ctx.dry`` selects the tiny presets at small shapes on the CPU (the same code, for the CI dry run).
"""
from __future__ import annotations

import gc
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from streamingt2v_core.models import (
    ExtenderConfig,
    RefinerUNetConfig,
    StreamingT2VExtender,
    UNet3D,
    UNet3DConfig,
)
from streamingt2v_core.models.attention import DEFAULT_MAX_BATCH_HEADS, sdpa_attention
from streamingt2v_core.models.memory_estimate import activation_bytes, measure_peak_bytes

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
GIB = 2**30


@dataclass
class Ctx:
    """What a part needs: full or dry size, the device, and where its results go."""

    dry: bool
    device: torch.device
    work: Path
    name: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def table(self, markdown: str) -> None:
        """(Re)write this part's Markdown section now: a part killed later keeps it."""
        (self.work / f"{self.name}.md").write_text(markdown)

    def save(self, **data: Any) -> None:
        self.data.update(data)
        (self.work / f"{self.name}.json").write_text(json.dumps(self.data, indent=1, default=str))

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class Case:
    label: str
    kind: str  # "extender" | "base" | "refiner"
    shape: tuple[int, int, int, int]  # B, T, H, W of the latent
    goal_ms: float | None = None
    goal_gib: float | None = None

    @property
    def memory_kind(self) -> str:
        return "extender" if self.kind == "extender" else "unet3d"


def model_cases(dry: bool) -> list[Case]:
    """The goals' shapes (issue #17): extender and base at 16x32x32, refiner at 24x90x160, CFG batch 2."""
    if dry:
        return [Case("extender CFG", "extender", (2, 16, 8, 8), 35.0), Case("base UNet3D CFG", "base", (2, 4, 8, 8)),
                Case("refiner CFG", "refiner", (2, 4, 10, 16), 520.0, 10.0),
                Case("refiner one branch", "refiner", (1, 4, 10, 16))]
    return [Case("extender CFG", "extender", (2, 16, 32, 32), 35.0), Case("base UNet3D CFG", "base", (2, 16, 32, 32)),
            Case("refiner CFG", "refiner", (2, 24, 90, 160), 520.0, 10.0),
            Case("refiner one branch", "refiner", (1, 24, 90, 160))]


def config_for(kind: str, dry: bool) -> Any:
    if kind == "extender":
        return ExtenderConfig.tiny() if dry else ExtenderConfig.full()
    if kind == "refiner":
        return RefinerUNetConfig.tiny() if dry else RefinerUNetConfig.full()
    return UNet3DConfig.tiny() if dry else UNet3DConfig.full()


def build(kind: str, dry: bool, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """A model with random weights, created on ``device`` in ``dtype`` (no fp32 copy of 2 B parameters, no
    host-to-device transfer)."""
    torch.manual_seed(0)
    config = config_for(kind, dry)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = StreamingT2VExtender(config) if kind == "extender" else UNet3D(config)
    finally:
        torch.set_default_dtype(previous)
    return model.to(dtype).eval()


def unet_config(kind: str, dry: bool) -> UNet3DConfig:
    config = config_for(kind, dry)
    return config.unet if kind == "extender" else config


def inputs_for(case: Case, device: torch.device, dtype: torch.dtype) -> tuple:
    g = torch.Generator().manual_seed(1)
    b, t, h, w = case.shape

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    args = (randn(b, 4, t, h, w), torch.full((b,), 501.0, device=device), randn(b, 77, 1024))
    if case.kind == "extender":
        # the host concatenates cond and uncond: the CAM frames arrive once per batch item
        args += (randn(b, 1024), (torch.rand(b, 8, 3, 8 * h, 8 * w, generator=g) * 2 - 1).to(device, dtype))
    return args


class AttentionCounter:
    """Our SDPA, counting calls and the largest batch x heads one kernel call got."""

    def __init__(self) -> None:
        self.calls = 0
        self.max_batch_heads = 0

    def __call__(self, q, k, v, heads):
        self.calls += 1
        self.max_batch_heads = max(self.max_batch_heads, q.shape[0] * heads)
        return sdpa_attention(q, k, v, heads)


def time_forward(ctx: Ctx, fn: Callable[[], Any], warmup: int, repeats: int) -> tuple[float, float]:
    """(median ms, activation bytes at peak) of ``fn``; the peak is above what was allocated before the call."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        ctx.sync()
        if not ctx.cuda:  # the CPU's memory comes from the profiler: one profiled call, timed as well
            start = time.perf_counter()
            activation = measure_peak_bytes(fn)
            return (time.perf_counter() - start) * 1000, activation
        ctx.free()
        base = torch.cuda.memory_allocated(ctx.device)
        torch.cuda.reset_peak_memory_stats(ctx.device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            ctx.sync()
            times.append((time.perf_counter() - start) * 1000)
        activation = torch.cuda.max_memory_allocated(ctx.device) - base
    return statistics.median(times), activation


# --------------------------------------------------------------------------------------------------------------------
# part: model forwards at the goals' shapes, memory estimate vs measurement, attention calls
# --------------------------------------------------------------------------------------------------------------------
def part_models(ctx: Ctx) -> dict:
    dtypes = ["fp32"] if ctx.dry else ["bf16", "fp16"]
    warmup, repeats = (0, 1) if ctx.dry else (2, 10)
    rows: list[dict] = []
    header = (f"One forward per row (random weights, latents B x T x H x W), median of "
              f"{repeats if ctx.cuda else 1} after {warmup} warm-up; activation = peak {'torch.cuda.max_memory_allocated' if ctx.cuda else 'CPU profiler'} "
              f"above weights and inputs; estimate = `memory_estimate.activation_bytes` (what our MODELs report to "
              f"the host); attention calls are cut at {DEFAULT_MAX_BATCH_HEADS} batch x heads.\n\n"
              "| case | latent | dtype | ms | goal ms | weights GiB | activation GiB | total GiB | goal GiB | "
              "estimate GiB | estimate / measured | attention calls | max batch x heads |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    for dtype_name in dtypes:
        dtype = DTYPES[dtype_name]
        for kind in ("extender", "base", "refiner"):
            cases = [c for c in model_cases(ctx.dry) if c.kind == kind]
            model = build(kind, ctx.dry, ctx.device, dtype)
            counter = AttentionCounter()
            model.set_attention_function(counter)
            weights = sum(p.numel() * p.element_size() for p in model.parameters())
            for case in cases:
                args = inputs_for(case, ctx.device, dtype)
                counter.calls = counter.max_batch_heads = 0
                ms, activation = time_forward(ctx, lambda: model(*args), warmup, repeats)
                per_forward_calls = counter.calls // max(1, warmup + (repeats if ctx.cuda else 1))
                estimate = activation_bytes(case.memory_kind, unet_config(kind, ctx.dry), (case.shape[0], 4) + case.shape[1:],
                                            torch.finfo(dtype).bits // 8)
                rows.append(dict(case=case.label, kind=kind, shape=list(case.shape), dtype=dtype_name, ms=ms,
                                 goal_ms=case.goal_ms, goal_gib=case.goal_gib, weights_gib=weights / GIB,
                                 activation_gib=activation / GIB, total_gib=(weights + activation) / GIB,
                                 estimate_gib=estimate / GIB, ratio=estimate / max(activation, 1),
                                 attention_calls=per_forward_calls, max_batch_heads=counter.max_batch_heads))
                del args
                ctx.save(rows=rows)
                ctx.table(header + "".join(_model_row(r) for r in rows))
            del model
            ctx.free()
    return ctx.data


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _model_row(r: dict) -> str:
    return (f"| {r['case']} | {'x'.join(map(str, r['shape']))} | {r['dtype']} | {r['ms']:.1f} | {_fmt(r['goal_ms'], '.0f')} | "
            f"{r['weights_gib']:.2f} | {r['activation_gib']:.2f} | {r['total_gib']:.2f} | {_fmt(r['goal_gib'], '.0f')} | "
            f"{r['estimate_gib']:.2f} | {r['ratio']:.2f} | {r['attention_calls']} | {r['max_batch_heads']} |\n")


# --------------------------------------------------------------------------------------------------------------------
# part: where the time goes (profile by module type)
# --------------------------------------------------------------------------------------------------------------------
CATEGORIES = ("attention", "convolution", "linear (matmul)", "normalization", "elementwise / copies / other")


def categorize(op: str) -> str:
    """The kind of work an ATen op name stands for."""
    name = op.lower()
    if "attention" in name or "sdpa" in name or "softmax" in name:
        return "attention"
    if "conv" in name:
        return "convolution"
    if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear") or "gemm" in name:
        return "linear (matmul)"
    if "norm" in name:
        return "normalization"
    return "elementwise / copies / other"


def profile_forward(ctx: Ctx, fn: Callable[[], Any]) -> tuple[dict[str, float], float, float]:
    """(ms per category, busy ms, wall ms) of one forward: device time on a GPU, CPU time on a CPU, attributed to
    the ATen op that launched each kernel (self time, so nothing is counted twice)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ctx.cuda else [])
    with torch.inference_mode():
        fn()
        ctx.sync()
        with profile(activities=activities) as prof:
            start = time.perf_counter()
            fn()
            ctx.sync()
            wall = (time.perf_counter() - start) * 1000
    per = dict.fromkeys(CATEGORIES, 0.0)
    for evt in prof.key_averages():
        if not evt.key.startswith("aten::"):
            continue
        us = evt.self_device_time_total if ctx.cuda else evt.self_cpu_time_total
        per[categorize(evt.key)] += us / 1000
    return per, sum(per.values()), wall


def part_profile(ctx: Ctx) -> dict:
    dtype_name = "fp32" if ctx.dry else "bf16"
    dtype = DTYPES[dtype_name]
    unit = "GPU kernel time" if ctx.cuda else "CPU time"
    rows = []
    # (the dry run profiles one case: the same code, half the CPU time)
    profiled = ("refiner CFG",) if ctx.dry else ("extender CFG", "refiner CFG")
    for case in [c for c in model_cases(ctx.dry) if c.label in profiled]:
        model = build(case.kind, ctx.dry, ctx.device, dtype)
        args = inputs_for(case, ctx.device, dtype)
        per, busy, wall = profile_forward(ctx, lambda: model(*args))
        overhead = max(0.0, wall - busy)
        parts = dict(per, **{"host overhead (wall - busy)": overhead})
        dominant = max(parts, key=parts.get)
        rows.append(dict(case=case.label, dtype=dtype_name, wall_ms=wall, busy_ms=busy, per=parts, dominant=dominant))
        del model, args
        ctx.free()
        ctx.save(rows=rows)
        lines = [f"One profiled forward ({dtype_name}, {unit} per ATen op, self time, grouped; profiler overhead "
                 "included in the wall time).\n\n| case | wall ms | " + " | ".join(parts) + " | dominant |",
                 "|---|---|" + "---|" * (len(parts) + 1)]
        for r in rows:
            cells = " | ".join(f"{v:.1f} ({v / max(r['wall_ms'], 1e-9):.0%})" for v in r["per"].values())
            lines.append(f"| {r['case']} | {r['wall_ms']:.1f} | {cells} | {r['dominant']} |")
        ctx.table("\n".join(lines) + "\n")
    return ctx.data


# --------------------------------------------------------------------------------------------------------------------
# part: torch.compile of the extender forward
# --------------------------------------------------------------------------------------------------------------------
def part_compile(ctx: Ctx) -> dict:
    """Eager vs ``torch.compile`` of the extender's CFG forward (the goal's 35 ms case) with inductor on a GPU. The
    dry run traces the tiny refiner at a few frames with the ``eager`` backend: inductor's C++ build of a UNet takes
    minutes on a CPU (tests/host/test_torch_compile.py checks the compiled result there)."""
    backend = "eager" if ctx.dry else "inductor"
    dtype_name = "fp32" if ctx.dry else "bf16"
    dtype = DTYPES[dtype_name]
    if ctx.dry:  # a two-level UNet3D (the same modules, a quarter of the ops to trace)
        case = Case("two-level UNet3D", "base", (2, 2, 8, 8))
        torch.manual_seed(0)
        model = UNet3D(UNet3DConfig(block_out_channels=(16, 16), down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                                    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), layers_per_block=1,
                                    attention_head_dim=8, norm_num_groups=8)).eval()
    else:
        case = model_cases(ctx.dry)[0]
        model = build(case.kind, ctx.dry, ctx.device, dtype)
    args = inputs_for(case, ctx.device, dtype)
    warmup, repeats = (0, 1) if ctx.dry else (2, 10)
    eager_ms, _ = time_forward(ctx, lambda: model(*args), warmup, repeats)
    with torch.inference_mode():
        reference = model(*args).float()
        compiled = torch.compile(model, backend=backend)
        start = time.perf_counter()
        out = compiled(*args).float()
        ctx.sync()
        compile_s = time.perf_counter() - start
    compiled_ms, _ = time_forward(ctx, lambda: compiled(*args), warmup, repeats)
    diff = ((out - reference).abs().max() / reference.abs().max().clamp_min(1e-12)).item()
    ctx.save(backend=backend, dtype=dtype_name, eager_ms=eager_ms, compiled_ms=compiled_ms, compile_s=compile_s,
             max_rel_diff=diff)
    ctx.table(f"`torch.compile(model, backend='{backend}')` of the {case.label} forward "
              f"({'x'.join(map(str, case.shape))}, {dtype_name}).\n\n"
              "| eager ms | compiled ms | speed-up | first call (compile) s | max rel. diff |\n|---|---|---|---|---|\n"
              f"| {eager_ms:.1f} | {compiled_ms:.1f} | {eager_ms / max(compiled_ms, 1e-9):.2f}x | {compile_s:.1f} | "
              f"{diff:.1e} |\n")
    return ctx.data
