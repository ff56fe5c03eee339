"""Benchmark one StreamingT2V extension chunk end to end through the ComfyUI host (random weights).

What one chunk costs in the extend node: the host's CLIP vision tower on the anchor (+ the grey frame, once per
video), one host sampling run of the extender MODEL (CAM + APM, classifier-free guidance, the host's ``ddpm``
sampler on ``ddim_uniform`` timesteps = DDIM eta 1) and the host's SD VAE decoding the 8 kept frames. Everything goes
through the pack's node code (``nodes.extend.run_extension``) and the host's model management, attention and
samplers; weights are random (speed and memory do not depend on their values).

    python bench/bench_extend_host.py            # CPU: tiny extender preset, 64x64, 3 steps (runs every session)
    python bench/bench_extend_host.py --full     # GPU: full extender preset, 256x256, 50 steps, fp16

Prints a Markdown table with the device and date. The host's own encoders are always full size (the host accepts
no other); the text conditioning is random (encoded once per video, not per chunk).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
HOST = Path(os.environ.get("STREAMINGT2V_COMFYUI_DIR", REPO / ".host" / "ComfyUI")).resolve()
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def boot_host(use_gpu: bool):
    """Import the host in-process (no server) and the pack's `nodes` package under its own name."""
    sys.path.insert(0, str(HOST))
    sys.path.insert(0, str(REPO))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args

    args.cpu = not use_gpu
    import folder_paths

    folder_paths.set_temp_directory(tempfile.mkdtemp(prefix="st2v_bench_"))
    spec = importlib.util.spec_from_file_location("streamingt2v_nodes", REPO / "nodes" / "__init__.py",
                                                  submodule_search_locations=[str(REPO / "nodes")])
    package = importlib.util.module_from_spec(spec)
    sys.modules["streamingt2v_nodes"] = package
    spec.loader.exec_module(package)
    import streamingt2v_nodes.extend as extend  # noqa: E402

    return extend


def host_encoders(dtype: torch.dtype):
    """The host's SD VAE and CLIP ViT-H vision model with random weights (full size, built from host classes)."""
    import comfy.clip_vision
    import comfy.sd
    from scripts.demo_weights import _random_fill, host_clip_vision_h_shapes, host_vae_shapes

    vae = comfy.sd.VAE(sd=_random_fill(host_vae_shapes(), 0, torch.float16))
    clip_vision = comfy.clip_vision.load_clipvision_from_sd(_random_fill(host_clip_vision_h_shapes(), 1, torch.float16))
    return vae, clip_vision


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full extender preset at 256x256, 50 steps (GPU)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default 50 full, 3 small)")
    parser.add_argument("--size", type=int, default=None, help="frame size in pixels (default 256 full, 64 small)")
    parser.add_argument("--dtype", choices=list(DTYPES), default=None, help="default fp16 on a GPU, fp32 on a CPU")
    parser.add_argument("--cfg", type=float, default=7.5)
    parser.add_argument("--repeats", type=int, default=1, help="timed chunks after one warm-up chunk")
    args = parser.parse_args(argv)

    use_gpu = args.full and torch.cuda.is_available()
    if args.full and not use_gpu:
        print("warning: --full without a GPU runs the full preset on the CPU (very slow)", file=sys.stderr)
    extend = boot_host(use_gpu)
    import comfy.model_management as mm
    from comfy.ldm.modules.attention import optimized_attention

    from streamingt2v_core.models.config import ExtenderConfig
    from streamingt2v_core.models.loading import build_model

    steps = args.steps or (50 if args.full else 3)
    size = args.size or (256 if args.full else 64)
    dtype = DTYPES[args.dtype or ("fp16" if use_gpu else "fp32")]
    config = ExtenderConfig.full() if args.full else ExtenderConfig.tiny()
    comfy_model = sys.modules["streamingt2v_nodes.comfy_model"]

    torch.manual_seed(0)
    net = build_model("extender", config, device="cpu").to(dtype)
    params = sum(p.numel() for p in net.parameters())
    model = comfy_model.wrap_core_model(net, "extender", config)
    vae, clip_vision = host_encoders(dtype)
    g = torch.Generator().manual_seed(0)
    positive = [[torch.randn(1, 77, 1024, generator=g), {}]]
    negative = [[torch.randn(1, 77, 1024, generator=g), {}]]
    first = torch.rand(16, size, size, 3, generator=g)

    device = mm.get_torch_device()
    rows = []
    for run in range(args.repeats + 1):
        extend._EMBEDS_CACHE.clear()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        sync()
        t0 = time.perf_counter()
        anchor, grey = extend.anchor_embeddings(clip_vision, first[:1])
        sync()
        t1 = time.perf_counter()
        timings = {}
        original = extend.decode_video_latent

        def timed_decode(vae_, latent):
            sync()
            timings["sampled"] = time.perf_counter()
            out = original(vae_, latent)
            sync()
            timings["decoded"] = time.perf_counter()
            return out

        extend.decode_video_latent = timed_decode
        try:
            video, counters = extend.run_extension(model, positive, negative, anchor, grey, vae, first, 24, 0, steps,
                                                   args.cfg, "ddpm", "ddim_uniform", cache=None)
        finally:
            extend.decode_video_latent = original
        sync()
        t2 = time.perf_counter()
        assert video.shape == (24, size, size, 3) and bool(video.isfinite().all()) and counters["sampled"] == 1
        peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
        if run == 0:
            continue  # warm-up: model loading to the device, kernel selection
        sampling = timings["sampled"] - t1
        rows.append((t1 - t0, sampling, sampling / steps, timings["decoded"] - timings["sampled"], t2 - t1, peak))

    name = torch.cuda.get_device_name(0) if use_gpu else (platform.processor() or platform.machine())
    print(f"StreamingT2V extension chunk through the host, {_dt.date.today().isoformat()}, device {device} ({name}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, host attention "
          f"{optimized_attention.__name__}")
    print(f"extender preset {'full' if args.full else 'tiny'} ({params / 1e6:.1f} M parameters, {str(dtype)[6:]}), "
          f"16 frames at {size}x{size} (latents {size // 8}x{size // 8}), {steps} steps, CFG {args.cfg} (batch 2), "
          f"sampler ddpm + ddim_uniform; host SD VAE and CLIP ViT-H at full size, random weights\n")
    print("| run | anchor + grey CLIP embed (s) | sampling (s) | per step (s) | VAE decode of the 8 kept frames (s) | "
          "chunk total (s) | peak GPU memory (GiB) |")
    print("|---|---|---|---|---|---|---|")
    for i, (embed, sampling, per_step, decode, total, peak) in enumerate(rows, 1):
        print(f"| {i} | {embed:.2f} | {sampling:.2f} | {per_step:.3f} | {decode:.2f} | {total:.2f} | {peak:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
