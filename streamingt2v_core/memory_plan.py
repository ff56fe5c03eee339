"""Whole-pipeline GPU memory plan of the refined text-to-long-video workflow.

    python -m streamingt2v_core memory-plan --gpu-gib 12 [--workflow workflows/text_to_long_video_refined.json]
                                            [--weights fp16|fp8]

For each stage (initial chunk, extension, refinement) it prints the model resident, its weights, the activation peak
of one CFG model call (``models.memory_estimate.activation_bytes``: measured at the published width, with forward
chunking on, x 1.15 margin) and the VAE decode peak at the stage's frame size (measured, x 1.15), and whether the stage
fits the GPU.
The host's model management offloads between stages (each stage's UNet is loaded for its sampling; the VAE decode
loads the VAE and frees what it needs), so a stage's need is ``max(UNet weights + activations, VAE weights + decode)``
plus :data:`RESERVE_GIB` for the CUDA context and the host's own reserve. It also finds the largest refine size that
fits.

VAE decode: measured (:data:`VAE_DECODE_ELEMENTS`), not the host's own estimate. The host's regular decode
(``VAE.decode``) decodes as many frames per call as its estimate (``memory_used_decode``: 2178 x 64 elements per
latent pixel, 3.4 x the measured peak) says fit in free memory, one frame at least: a stage's decode needs one frame's
peak. When even one frame runs out of memory the host retries with its tiled decode (64 x 64 latent tiles, 512 x 512
pixels), whose peak is one tile's: the plan prints it as the floor.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .models.config import ExtenderConfig, RefinerUNetConfig, UNet3DConfig
from .models.memory_estimate import SAFETY, activation_bytes

__all__ = ["RESERVE_GIB", "PARAMETERS", "VAE_DECODE_ELEMENTS", "VAE_TILES", "Stage", "plan_stages", "largest_refine_size", "format_plan", "main"]

GIB = 2**30
#: CUDA context and the host's reserved VRAM (``--reserve-vram`` default, ~0.6 GiB) that no model can use.
RESERVE_GIB = 1.0
#: Published parameter counts (``python -m streamingt2v_core inspect --preset full``); the SD VAE's is 83.7 M.
PARAMETERS = {"base_unet3d": 1_411_233_860, "extender": 2_124_760_372, "refiner_unet": 1_411_233_860,
              "vae": 83_653_863}
#: The shipped sizes of the refined workflow, used when no workflow file is given: (width, height, frames per call).
SHIPPED = {"initial": (256, 256, 16), "extend": (256, 256, 16), "refine": (1024, 592, 24)}


def _refine_candidates() -> list[tuple[int, int]]:
    """Refine sizes tried, largest first: widths 1280, 1216, ... 512 pixels, each with the height nearest 16:9 whose
    latent the refiner's resampling takes (90 latent rows for 720 pixels, 74 for 592...)."""
    config = RefinerUNetConfig.full()
    valid = []
    for rows in range(8, 121):
        try:
            config.check_latent_size(rows, 160)
        except ValueError:
            continue
        valid.append(rows)
    out = []
    for width in range(1280, 511, -64):
        rows = min(valid, key=lambda r: (abs(r - width * 9 / 16 / 8), r))
        out.append((width, rows * 8))
    return out


REFINE_CANDIDATES = _refine_candidates()


#: Peak elements held while the host's SD VAE decodes, per latent pixel (the same in bf16 and fp32, exactly linear
#: from a 32x32 latent to a 90x160 one: it peaks in the last up level, five 128-channel tensors at full resolution,
#: 5 x 128 x 64 = 40,960, + the 4-channel latent). Measured by ``bench/bench_activation_memory.py --vae``: the host's
#: own ``AutoencoderKL`` with its SD 1.x/2.x config (``comfy/sd.py``), the attention it picks on CUDA (SDPA), run on
#: the meta device under ``LiveTensorTracker`` for one 64x64 tile of its tiled decode and whole frames at 256x256,
#: 1024x592 and 1280x720; ``tests/host/test_memory_estimate.py`` re-measures it (bench/RESULTS.md, issue 25). Kernel
#: workspaces (cuDNN's convolutions) are not seen: the plan adds :data:`SAFETY` as for the UNets.
VAE_DECODE_ELEMENTS = 40_964
#: Latent (rows, cols) of the host's decode tiles: ``VAE.decode_tiled_`` (its fallback when a frame runs out of
#: memory) passes 64x64, 32x128 and 128x32 tiles (``VAEDecodeTiled``'s default 512 px is the same 64x64).
VAE_TILES = ((64, 64), (32, 128), (128, 32))
#: Bytes per element of the VAE on a GPU: the host decodes in bf16 where the card has it (its working dtypes are
#: bf16 and fp32; an fp32-only card, before Ampere, needs twice the decode memory).
VAE_DTYPE_BYTES = 2


def _vae_decode_bytes(width: int, height: int, dtype_bytes: int = VAE_DTYPE_BYTES) -> int:
    """Peak bytes of the host's regular decode of one frame (its smallest batch), measured x :data:`SAFETY`."""
    return int(VAE_DECODE_ELEMENTS * (height // 8) * (width // 8) * dtype_bytes * SAFETY)


def _vae_tile_bytes(width: int, height: int, dtype_bytes: int = VAE_DTYPE_BYTES) -> int:
    """Peak bytes of the host's tiled decode (the largest of its tiles, cut to the frame), measured x SAFETY."""
    rows, cols = height // 8, width // 8
    latent = max(min(rows, r) * min(cols, c) for r, c in VAE_TILES)
    return int(VAE_DECODE_ELEMENTS * latent * dtype_bytes * SAFETY)


@dataclass
class Stage:
    name: str
    model: str
    width: int
    height: int
    frames: int
    weights: int
    activations: int
    vae_decode: int
    vae_tile: int

    def need(self) -> int:
        vae = PARAMETERS["vae"] * 2 + self.vae_decode
        return max(self.weights + self.activations, vae) + int(RESERVE_GIB * GIB)


def _sizes_from_workflow(path: str | Path | None) -> dict[str, tuple[int, int, int]]:
    sizes = dict(SHIPPED)
    if path is None:
        return sizes
    nodes = json.loads(Path(path).read_text(encoding="utf-8")).get("nodes", [])
    for node in nodes:
        values = node.get("widgets_values") or []
        kind = node.get("type")
        # widget order of our nodes: InitialChunk (width, height, frames, ...), Extend (..., width, height at 7, 8),
        # Refine (width, height, ..., chunk frames at 4)
        if kind == "StreamingT2VInitialChunk" and len(values) >= 3:
            sizes["initial"] = (int(values[0]), int(values[1]), int(values[2]))
        elif kind == "StreamingT2VExtend" and len(values) >= 9:
            sizes["extend"] = (int(values[7]), int(values[8]), 16)
        elif kind == "StreamingT2VRefine" and len(values) >= 5:
            sizes["refine"] = (int(values[0]), int(values[1]), int(values[4]))
    return sizes


def _stage(name: str, model: str, width: int, height: int, frames: int, weight_bytes: float) -> Stage:
    config = {"base_unet3d": UNet3DConfig.full(), "extender": ExtenderConfig.full().unet,
              "refiner_unet": RefinerUNetConfig.full()}[model]
    kind = "extender" if model == "extender" else "unet3d"
    shape = (2, 4, frames, height // 8, width // 8)  # CFG: cond and uncond in one batch
    return Stage(name, model, width, height, frames, int(PARAMETERS[model] * weight_bytes),
                 activation_bytes(kind, config, shape, 2), _vae_decode_bytes(width, height),
                 _vae_tile_bytes(width, height))


def plan_stages(workflow: str | Path | None = None, weights: str = "fp16") -> list[Stage]:
    """The three stages at the workflow's sizes (the shipped sizes without a workflow); ``weights`` fp16 or fp8."""
    if weights not in ("fp16", "fp8"):
        raise ValueError(f"weights: expected fp16 or fp8, got {weights!r}")
    wb = 2.0 if weights == "fp16" else 1.0
    sizes = _sizes_from_workflow(workflow)
    return [
        _stage("initial chunk", "base_unet3d", *sizes["initial"], wb),
        _stage("extend", "extender", *sizes["extend"], wb),
        _stage("refine", "refiner_unet", *sizes["refine"], wb),
    ]


def largest_refine_size(gpu_gib: float, frames: int = 24, weights: str = "fp16") -> tuple[int, int] | None:
    """The largest of :data:`REFINE_CANDIDATES` whose refine stage fits ``gpu_gib`` (None if none does)."""
    wb = 2.0 if weights == "fp16" else 1.0
    for width, height in REFINE_CANDIDATES:
        if _stage("refine", "refiner_unet", width, height, frames, wb).need() <= gpu_gib * GIB:
            return width, height
    return None


def format_plan(stages: list[Stage], gpu_gib: float, weights: str = "fp16") -> str:
    lines = [f"Memory plan for a {gpu_gib:g} GiB GPU ({weights} weights, fp16 compute, CFG batch 2, forward "
             f"chunking on, VAE in bf16, {RESERVE_GIB:g} GiB reserved):", "",
             "| stage | model resident | size | weights GiB | activation peak GiB | VAE decode peak GiB (one frame) | "
             "VAE tiled decode GiB (one tile) | need GiB | fits |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in stages:
        lines.append(f"| {s.name} | {s.model} | {s.width}x{s.height}x{s.frames} | {s.weights / GIB:.2f} | "
                     f"{s.activations / GIB:.2f} | {s.vae_decode / GIB:.2f} | {s.vae_tile / GIB:.2f} | {s.need() / GIB:.2f} | "
                     f"{'yes' if s.need() <= gpu_gib * GIB else 'NO'} |")
    fits = all(s.need() <= gpu_gib * GIB for s in stages)
    lines.append("")
    lines.append(f"Whole pipeline: {'fits' if fits else 'does NOT fit'} {gpu_gib:g} GiB.")
    best = largest_refine_size(gpu_gib, stages[-1].frames, weights)
    lines.append(f"Largest refine size that fits: {'none' if best is None else f'{best[0]}x{best[1]}'}.")
    for w, h in ((1280, 720), (1024, 592)):
        need = _stage("refine", "refiner_unet", w, h, stages[-1].frames, 2.0 if weights == "fp16" else 1.0).need()
        lines.append(f"Refine at {w}x{h}: needs {need / GIB:.2f} GiB: {'fits' if need <= gpu_gib * GIB else 'does not fit'}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m streamingt2v_core memory-plan", description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-gib", type=float, default=12.0, help="GPU memory in GiB")
    parser.add_argument("--workflow", default=None, help="a workflow JSON to read the sizes from (default: shipped)")
    parser.add_argument("--weights", default="fp16", choices=["fp16", "fp8"])
    args = parser.parse_args(argv)
    if args.gpu_gib <= 0:
        parser.error(f"--gpu-gib: expected a positive size, got {args.gpu_gib}")
    print(format_plan(plan_stages(args.workflow, args.weights), args.gpu_gib, args.weights))
    return 0
