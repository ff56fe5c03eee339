"""The host-level parts of ``bench/gpu.sh``: our nodes in the real ComfyUI host, its model management and samplers.

- ``extend``: one extension chunk (16 frames at 256x256, 50 steps, CFG) through the Extend node.
- ``refine``: one refiner window at 1280x720 through the Refine node's stages (VAE encode, sampling, decode), and the
  per-step time with 1, 2 and 4 windows per model call.
- ``pipeline``: the demo workflow's nodes in order (Initial Chunk, Extend, Refine) at full size on a GPU made to look
  like a 12 GB card (the rest of its memory is taken by a ballast allocation before the host starts), peak memory per
  stage: the issue's "within 12 GB with the host's own offloading".

Weights are random (speed and memory do not depend on them), built from the published configs; the host's encoders
are its own classes at full size with random weights (``scripts/demo_weights``). Text conditioning is random
(the text encoder runs once per video). The dry run uses the tiny presets, the host's TAESD as the VAE and a
random-embedding stand-in for CLIP ViT-H (a full-size ViT-H takes a minute on two CPU cores).
"""
from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.gpu_parts import GIB, Ctx

REPO = Path(__file__).resolve().parents[1]


def host_dir() -> Path:
    return Path(os.environ.get("STREAMINGT2V_COMFYUI_DIR", REPO / ".host" / "ComfyUI")).resolve()


def boot(ctx: Ctx, memory_cap_gib: float | None = None):
    """Import the host in this process (no server) on ctx's device and our ``nodes`` package.

    ``memory_cap_gib``: leave only that much GPU memory free (a ballast tensor takes the rest) before the host
    measures the card, so its model management behaves as on a card of that size. Returns (nodes package, ballast
    bytes).
    """
    if "streamingt2v_nodes" in sys.modules:  # booted before in this process (the dry run's single process)
        return sys.modules["streamingt2v_nodes"], 0
    hdir = host_dir()
    if not (hdir / "comfy").is_dir():
        raise RuntimeError(f"no ComfyUI host at {hdir}: run scripts/setup.sh, carry .host/ComfyUI, or set "
                           "STREAMINGT2V_COMFYUI_DIR")
    ballast = 0
    if memory_cap_gib is not None and ctx.cuda:
        free, total = torch.cuda.mem_get_info(ctx.device)
        used_outside = total - free  # CUDA context etc., as on a real card of that size
        ballast = int(free - (memory_cap_gib * GIB - used_outside))
        if ballast > 0:
            _BALLAST.append(torch.empty(ballast, dtype=torch.uint8, device=ctx.device))
        else:
            ballast = 0
    sys.path.insert(0, str(hdir))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args

    args.cpu = not ctx.cuda
    import folder_paths

    temp = tempfile.mkdtemp(prefix="st2v_gpu_bench_")
    for setter, sub in ((folder_paths.set_temp_directory, "temp"), (folder_paths.set_output_directory, "output"),
                        (folder_paths.set_input_directory, "input")):
        os.makedirs(os.path.join(temp, sub), exist_ok=True)
        setter(os.path.join(temp, sub))
    spec = importlib.util.spec_from_file_location("streamingt2v_nodes", REPO / "nodes" / "__init__.py",
                                                  submodule_search_locations=[str(REPO / "nodes")])
    package = importlib.util.module_from_spec(spec)
    sys.modules["streamingt2v_nodes"] = package
    spec.loader.exec_module(package)
    import streamingt2v_nodes.comfy_model  # noqa: F401
    import streamingt2v_nodes.extend  # noqa: F401
    import streamingt2v_nodes.initial_chunk  # noqa: F401
    import streamingt2v_nodes.refine  # noqa: F401

    return package, ballast


#: Host MODEL kinds -> the benchmark's names for them (gpu_parts.build).
BENCH_KIND = {"extender": "extender", "base_unet3d": "base", "refiner_unet": "refiner"}
#: The GPU memory taken away from the host in the pipeline part (kept alive for the process).
_BALLAST: list[torch.Tensor] = []


def our_model(package, kind: str, ctx: Ctx, dtype: torch.dtype, build_on_device: bool = True):
    """A host MODEL of one of our UNets, published config (tiny in the dry run), random weights. Built on the GPU
    (fast random init) unless ``build_on_device`` is False (under a memory cap); wrapping puts it on the host's offload
    device, from where the host's model management loads it."""
    from bench.gpu_parts import build, config_for

    net = build(BENCH_KIND[kind], ctx.dry, ctx.device if build_on_device else torch.device("cpu"), dtype)
    return package.comfy_model.wrap_core_model(net, kind, config_for(BENCH_KIND[kind], ctx.dry))


def host_vae(ctx: Ctx):
    import comfy.sd

    if ctx.dry:
        return comfy.sd.VAE(sd=_random_taesd())
    from scripts.demo_weights import _random_fill, host_vae_shapes

    return comfy.sd.VAE(sd=_random_fill(host_vae_shapes(), 0, torch.float16))


def _random_taesd() -> dict[str, torch.Tensor]:
    """The host's TAESD (a tiny VAE of the SD latent space) with random weights, as VAELoader would give it."""
    import comfy.taesd.taesd

    g = torch.Generator().manual_seed(0)
    taesd = comfy.taesd.taesd.TAESD()
    sd = {}
    for prefix, module in (("taesd_encoder.", taesd.taesd_encoder), ("taesd_decoder.", taesd.taesd_decoder)):
        for k, v in module.state_dict().items():
            fan_in = max(1, v[0].numel()) if v.ndim > 1 else 1
            sd[prefix + k] = torch.randn(v.shape, generator=g) / fan_in**0.5 if v.ndim > 1 else torch.zeros(v.shape)
    sd["vae_scale"], sd["vae_shift"] = torch.tensor(0.18215), torch.tensor(0.0)
    return sd


class _EmbeddingStandIn:
    """Dry run only: returns random pooled CLIP ViT-H embeddings of the right shape."""

    def encode_image(self, images, crop=True):
        g = torch.Generator().manual_seed(int(images.shape[0]))
        return {"image_embeds": torch.randn(images.shape[0], 1024, generator=g)}


def clip_vision(ctx: Ctx):
    if ctx.dry:
        return _EmbeddingStandIn()
    import comfy.clip_vision
    from scripts.demo_weights import _random_fill, host_clip_vision_h_shapes

    return comfy.clip_vision.load_clipvision_from_sd(_random_fill(host_clip_vision_h_shapes(), 1, torch.float16))


def text_conds() -> tuple[list, list]:
    g = torch.Generator().manual_seed(0)
    return [[torch.randn(1, 77, 1024, generator=g), {}]], [[torch.randn(1, 77, 1024, generator=g), {}]]


class StepClock:
    """Timestamps of the host's progress-bar updates of sampler steps (``total == steps``)."""

    def __init__(self, steps: int) -> None:
        import comfy.utils

        self.steps, self.stamps = steps, []
        comfy.utils.set_progress_bar_global_hook(self._hook)

    def _hook(self, value, total, preview=None, node_id=None):
        if total == self.steps:
            self.stamps.append(time.perf_counter())

    def per_step(self) -> float | None:
        if len(self.stamps) < 2:
            return None
        return (self.stamps[-1] - self.stamps[0]) / (len(self.stamps) - 1)


def peak_gib(ctx: Ctx, ballast: int = 0) -> float | None:
    if not ctx.cuda:
        return None
    return (torch.cuda.max_memory_allocated(ctx.device) - ballast) / GIB


def reset_peak(ctx: Ctx) -> None:
    if ctx.cuda:
        torch.cuda.synchronize(ctx.device)
        torch.cuda.reset_peak_memory_stats(ctx.device)


# --------------------------------------------------------------------------------------------------------------------
def part_extend(ctx: Ctx) -> dict:
    package, _ = boot(ctx)
    dtype = torch.float32 if ctx.dry else torch.float16
    size, steps = (64, 2) if ctx.dry else (256, 50)
    model = our_model(package, "extender", ctx, dtype)
    vae, vision = host_vae(ctx), clip_vision(ctx)
    positive, negative = text_conds()
    first = torch.rand(16, size, size, 3, generator=torch.Generator().manual_seed(0))
    extend_node = package.extend.ExtendNode
    anchor_start = time.perf_counter()
    package.extend.anchor_embeddings(vision, first[:1])
    anchor_s = time.perf_counter() - anchor_start
    rows = []
    # the warm-up loads the models to the GPU and tunes kernels (the dry run only checks the code path)
    runs = (("timed", 1),) if ctx.dry else (("warm-up", 0), ("timed", 1))
    for run, seed in runs:
        clock = StepClock(steps)
        reset_peak(ctx)
        start = time.perf_counter()
        out = extend_node.execute(model=model, positive=positive, negative=negative, clip_vision=vision, vae=vae,
                                  first_chunk=first, total_frames=24, seed=seed, steps=steps, cfg=7.5,
                                  sampler_name="ddpm", scheduler="ddim_uniform", width=size, height=size,
                                  disk_cache=False)
        if ctx.cuda:
            torch.cuda.synchronize(ctx.device)
        total = time.perf_counter() - start
        frames = out.result[0]
        assert frames.shape[0] == 24 and bool(torch.isfinite(frames).all()), "extension produced no finite frames"
        per_step = clock.per_step()
        sampling = per_step * steps if per_step else None
        rows.append(dict(run=run, chunk_s=total, per_step_s=per_step, sampling_s=sampling,
                         other_s=None if sampling is None else total - sampling, peak_gib=peak_gib(ctx)))
        _extend_table(ctx, rows, steps, size, anchor_s, dtype)
    return ctx.data


def _extend_table(ctx: Ctx, rows: list[dict], steps: int, size: int, anchor_s: float, dtype: torch.dtype) -> None:
    timed = rows[-1]
    ctx.save(rows=rows, steps=steps, size=size, anchor_s=anchor_s, chunk_s=timed["chunk_s"],
             per_step_s=timed["per_step_s"], peak_gib=timed["peak_gib"])
    lines = [f"One extension chunk through the Extend node (extender {'tiny' if ctx.dry else 'full'}, "
             f"{str(dtype)[6:]}, 16 frames at {size}x{size}, {steps} steps ddpm + ddim_uniform, CFG 7.5, 8 new frames "
             f"kept); anchor + grey CLIP embedding once per video: {anchor_s:.2f} s.\n",
             "| run | chunk s | sampling s | per step s | VAE decode + host s | peak GiB |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['chunk_s']:.2f} | {_f(r['sampling_s'])} | {_f(r['per_step_s'], '.3f')} | "
                     f"{_f(r['other_s'])} | {_f(r['peak_gib'])} |")
    ctx.table("\n".join(lines) + "\n")


def _f(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


# --------------------------------------------------------------------------------------------------------------------
def part_refine(ctx: Ctx) -> dict:
    package, _ = boot(ctx)
    refine = package.refine
    dtype = torch.float32 if ctx.dry else torch.float16
    if ctx.dry:
        width, height, frames, chunk, overlap, steps, src = 64, 80, 8, 8, 2, 1, 32
    else:
        width, height, frames, chunk, overlap, steps, src = 1280, 720, 24, 24, 8, 5, 256
    model = our_model(package, "refiner_unet", ctx, dtype)
    vae = host_vae(ctx)
    positive, negative = text_conds()
    images = torch.rand(frames, src, src, 3, generator=torch.Generator().manual_seed(0))
    setup = refine.RefineInputs(images, model, vae, width, height, chunk, overlap, "randomized", "pad", "bilinear",
                                "images")
    timings: dict[str, Any] = {}
    with torch.inference_mode():
        for run in ("timed",) if ctx.dry else ("warm-up", "timed"):
            reset_peak(ctx)
            t0 = time.perf_counter()
            latent = refine.encode_video(images, vae, setup.box, setup.segments, "bilinear")
            t1 = time.perf_counter()
            clock = StepClock(steps)
            samples = refine.refine_latent(model, latent, positive, negative, seed=0, steps=steps, cfg=7.5,
                                           denoise=0.6, sampler_name="dpmpp_2m_sde",
                                           scheduler=refine.TRAILING_SCHEDULER, chunk=chunk, overlap=overlap,
                                           blend_mode="randomized", guidance_rescale=0.2, max_batch=1)
            t2 = time.perf_counter()
            decoded = []
            refine.decode_video(samples, vae, setup.box, setup.segments, True, lambda i, f: decoded.append(f.shape[0]))
            if ctx.cuda:
                torch.cuda.synchronize(ctx.device)
            t3 = time.perf_counter()
            assert sum(decoded) == frames and bool(torch.isfinite(samples).all())
            timings = dict(encode_s=t1 - t0, sampling_s=t2 - t1, decode_s=t3 - t2, per_step_s=clock.per_step(),
                           peak_gib=peak_gib(ctx))
    per_step = timings["per_step_s"] or timings["sampling_s"] / steps
    ctx.save(window=dict(width=width, height=height, frames=frames, steps=steps, **timings,
                         encode_s_per_frame=timings["encode_s"] / frames, decode_s_per_frame=timings["decode_s"] / frames,
                         window_step_s=per_step))
    lines = [f"One refiner window through the Refine node's stages (MS-Vid2Vid-XL {'tiny' if ctx.dry else 'full'}, "
             f"{str(dtype)[6:]}, {frames} frames {src}x{src} fitted into {width}x{height}, {steps} steps DPM++ 2M SDE, "
             "CFG 7.5 with rescale 0.2).\n",
             "| VAE encode s (per frame) | sampling s | per step s (CFG, one window) | VAE decode s (per frame) | "
             "peak GiB |", "|---|---|---|---|---|",
             f"| {timings['encode_s']:.2f} ({timings['encode_s'] / frames:.3f}) | {timings['sampling_s']:.2f} | "
             f"{per_step:.3f} | {timings['decode_s']:.2f} ({timings['decode_s'] / frames:.3f}) | "
             f"{_f(timings['peak_gib'])} |"]
    ctx.table("\n".join(lines) + "\n")

    # several windows per model call: 4 windows of `chunk` frames, per-step time for 1, 2 and 4 windows per call
    latent_frames = chunk + 3 * (chunk - overlap)
    h, w = height // 8, width // 8
    latent = torch.randn(1, 4, latent_frames, h, w, generator=torch.Generator().manual_seed(2))
    batch_steps = 1 if ctx.dry else 2
    rows = []
    for per_call in (1, 2, 4):
        with torch.inference_mode():
            if per_call == 1 or not ctx.dry:  # warm-up (kernel selection for this batch size; first-call costs)
                refine.refine_latent(model, latent, positive, negative, seed=0, steps=1, cfg=7.5, denoise=0.6,
                                     sampler_name="dpmpp_2m_sde", scheduler=refine.TRAILING_SCHEDULER, chunk=chunk,
                                     overlap=overlap, blend_mode="randomized", guidance_rescale=0.2,
                                     max_batch=per_call)
            reset_peak(ctx)
            start = time.perf_counter()
            refine.refine_latent(model, latent, positive, negative, seed=0, steps=batch_steps, cfg=7.5, denoise=0.6,
                                 sampler_name="dpmpp_2m_sde", scheduler=refine.TRAILING_SCHEDULER, chunk=chunk,
                                 overlap=overlap, blend_mode="randomized", guidance_rescale=0.2, max_batch=per_call)
            if ctx.cuda:
                torch.cuda.synchronize(ctx.device)
            step = (time.perf_counter() - start) / batch_steps
        rows.append(dict(windows_per_call=per_call, step_s=step, window_step_s=step / 4, peak_gib=peak_gib(ctx)))
        ctx.save(batching=dict(latent=[latent_frames, h, w], rows=rows))
        _batching_table(ctx, lines, rows, chunk, latent_frames, h, w, batch_steps)
    return ctx.data


def _batching_table(ctx, lines, rows, chunk, latent_frames, h, w, batch_steps) -> None:
    base = rows[0]["step_s"]
    lines = lines + ["", f"Several windows per model call: 4 windows of {chunk} latent frames ({latent_frames} frames, latents "
              f"{h}x{w}), one solver step (CFG) through the host sampler, {batch_steps} timed after one warm-up"
              f"{' (of the first row only)' if ctx.dry else ''}.\n",
              "| windows per call | s per step | s per window | speed-up | peak GiB |", "|---|---|---|---|---|"]
    lines += [f"| {r['windows_per_call']} | {r['step_s']:.3f} | {r['window_step_s']:.3f} | {base / r['step_s']:.2f}x | "
              f"{_f(r['peak_gib'])} |" for r in rows]
    ctx.table("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------------------------------
def part_pipeline(ctx: Ctx) -> dict:
    cap = None if ctx.dry else 12.0
    package, ballast = boot(ctx, memory_cap_gib=cap)
    dtype = torch.float32 if ctx.dry else torch.float16
    if ctx.dry:
        size, steps, r_steps, width, height = 64, 1, 1, 64, 80
    else:
        size, steps, r_steps, width, height = 256, 50, 3, 1280, 720
    positive, negative = text_conds()
    stages = []

    def stage(name: str, fn):
        reset_peak(ctx)
        start = time.perf_counter()
        try:
            result = fn()
            error = None
        except Exception as err:  # noqa: BLE001 - an OOM is a result here
            result, error = None, f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
        if ctx.cuda:
            torch.cuda.synchronize(ctx.device)
        stages.append(dict(stage=name, s=time.perf_counter() - start, peak_gib=peak_gib(ctx, ballast), error=error))
        ctx.save(stages=stages, cap_gib=cap, ballast_gib=ballast / GIB)
        _pipeline_table(ctx, stages, cap, size, steps, r_steps, width, height)
        if error:
            raise RuntimeError(f"pipeline stage {name}: {error}")
        return result

    vae = stage("load VAE", lambda: host_vae(ctx))
    vision = stage("load CLIP ViT-H", lambda: clip_vision(ctx))
    base = stage("build base UNet3D", lambda: our_model(package, "base_unet3d", ctx, dtype, False))
    first = stage("Initial Chunk", lambda: package.initial_chunk.InitialChunkNode.execute(
        model=base, positive=positive, negative=negative, vae=vae, width=size, height=size, frames=16, seed=0,
        steps=steps, cfg=9.0, sampler_name="dpmpp_2m", scheduler="normal").result[0])
    extender = stage("build extender", lambda: our_model(package, "extender", ctx, dtype, False))
    video = stage("Extend (1 chunk)", lambda: package.extend.ExtendNode.execute(
        model=extender, positive=positive, negative=negative, clip_vision=vision, vae=vae, first_chunk=first,
        total_frames=24, seed=0, steps=steps, cfg=7.5, sampler_name="ddpm", scheduler="ddim_uniform", width=size,
        height=size, disk_cache=False).result[0])
    refiner = stage("build refiner", lambda: our_model(package, "refiner_unet", ctx, dtype, False))
    stage("Refine (24 frames)", lambda: package.refine.Refine.execute(
        images=video, model=refiner, vae=vae, positive=positive, negative=negative, width=width, height=height,
        resize_mode="pad", upscale_method="bilinear", chunk=24 if not ctx.dry else 8, overlap=8 if not ctx.dry else 2,
        denoise=0.6, steps=r_steps, cfg=7.5, guidance_rescale=0.2, sampler_name="dpmpp_2m_sde",
        scheduler="streamingt2v_trailing", seed=0, blend_mode="randomized", crop_padding=True, output="images",
        fps=8.0).result[0])
    return ctx.data


def _pipeline_table(ctx, stages, cap, size, steps, r_steps, width, height) -> None:
    where = f"a GPU limited to {cap:.0f} GiB (ballast)" if cap else "the CPU"
    overall = max((s["peak_gib"] or 0.0) for s in stages) if ctx.cuda else None
    lines = [f"The demo workflow's nodes in order at {'tiny' if ctx.dry else 'full'} size on {where}, the host's model "
             f"management loading and offloading: Initial Chunk {size}x{size} x16 ({steps} steps), Extend to 24 frames "
             f"({steps} steps), Refine 24 frames at {width}x{height} ({r_steps} steps). Peak = "
             "torch.cuda.max_memory_allocated per stage (ballast excluded).\n",
             "| stage | s | peak GiB | result |", "|---|---|---|---|"]
    lines += [f"| {s['stage']} | {s['s']:.1f} | {_f(s['peak_gib'])} | {s['error'] or 'ok'} |" for s in stages]
    if overall is not None:
        lines.append(f"\nWhole pipeline peak: {overall:.2f} GiB" + (f" (cap {cap:.0f} GiB)" if cap else ""))
    ctx.table("\n".join(lines) + "\n")
