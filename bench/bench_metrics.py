"""Time of each paper metric (SCuts, MAWE, CLIP score) on a synthetic video; prints a Markdown table.

Default (CPU): 240 frames at 256x256 (an extender output: 8 fps, 30 s), MAWE at the official
720x720. SCuts and MAWE with DIS flow run on every frame; RAFT-large and the ViT-H-14 CLIP
score are slow on a CPU, so by default they run on a few pairs/frames and the table gives the
time per pair/frame and the whole-video time extrapolated from it (marked "~"). Weights are
random (speed does not depend on their values). ``--full`` runs everything on every frame on the
GPU. ``--frames`` shrinks the video for a quick run.

    python bench/bench_metrics.py                 # CPU, 240 frames
    python bench/bench_metrics.py --frames 48     # quick
    python bench/bench_metrics.py --full          # GPU, all pairs/frames through RAFT and ViT-H-14
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import device_name  # noqa: E402

import torch  # noqa: E402

from streamingt2v_core.metrics import clip_score, count_scene_cuts, make_flow_backend, motion_aware_warp_error  # noqa: E402
from streamingt2v_core.metrics.clip_score import OpenClipBundle  # noqa: E402
from streamingt2v_core.metrics.synthetic import scenes_video  # noqa: E402


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def random_vit_h_bundle(arch: str, device: torch.device) -> OpenClipBundle:
    """A full-size open_clip model with random weights, preprocessing and tokenizer as loaded ones."""
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    cfg = open_clip.get_model_config(arch)
    model = open_clip.CLIP(**cfg).to(device).eval()
    preprocess = image_transform_v2(PreprocessCfg(size=model.visual.image_size), is_train=False)
    tokenizer = open_clip.SimpleTokenizer(context_length=cfg["text_cfg"].get("context_length", 77))
    return OpenClipBundle(model, preprocess, tokenizer, f"{arch} (random weights)", cfg, "random")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=240, help="video length (default 240)")
    parser.add_argument("--resolution", type=int, default=256, help="frame side (default 256)")
    parser.add_argument("--size", type=int, default=720, help="MAWE resize (official 720)")
    parser.add_argument("--raft-pairs", type=int, default=2, help="pairs timed through RAFT (default 2; --full: all)")
    parser.add_argument("--clip-frames", type=int, default=8, help="frames timed through CLIP (default 8; --full: all)")
    parser.add_argument("--clip-arch", default="ViT-H-14", help="open_clip architecture (default ViT-H-14)")
    parser.add_argument("--device", default=None, help="torch device for RAFT and CLIP (default cpu; --full: cuda)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["scuts", "dis", "raft", "clip"])
    parser.add_argument("--full", action="store_true", help="GPU, every pair through RAFT, every frame through CLIP")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if args.full else "cpu"))
    frames_n = args.frames
    raft_pairs = frames_n - 1 if args.full else min(args.raft_pairs, frames_n - 1)
    clip_frames = frames_n if args.full else min(args.clip_frames, frames_n)

    per_scene = max(16, frames_n // 4)
    video = scenes_video(num_scenes=-(-frames_n // per_scene), frames_per_scene=per_scene,
                         height=args.resolution, width=args.resolution, shift=2, seed=0)[:frames_n]
    rows: list[tuple[str, str, str, str, str, str]] = []

    def add(metric: str, backend: str, units: int, unit: str, total_units: int, wall: float, cpu: float, setup: float):
        per = wall / units
        whole = f"{wall:.2f}" if units == total_units else f"~{per * total_units:.1f}"
        rows.append((metric, backend, f"{units} {unit}", f"{per * 1000:.1f}", whole, f"{cpu:.2f}", f"{setup:.1f}"))

    if "scuts" not in args.skip:
        result, wall, cpu = timed(lambda: count_scene_cuts(video))
        add(f"SCuts (= {result.num_cuts})", "scenedetect AdaptiveDetector", frames_n, "frames", frames_n, wall, cpu, 0.0)
    if "dis" not in args.skip:
        backend = make_flow_backend("dis")
        _, wall, cpu = timed(lambda: motion_aware_warp_error(video, backend, size=args.size))
        add(f"MAWE at {args.size}", "OpenCV DIS (medium), CPU", frames_n - 1, "pairs", frames_n - 1, wall, cpu, 0.0)
    if "raft" not in args.skip:
        from torchvision.models.optical_flow import raft_large

        (model, setup, _) = timed(lambda: raft_large(weights=None, progress=False).eval())
        backend = make_flow_backend("raft", raft_model=model, device=device)
        clip = video[:raft_pairs + 1]
        motion_aware_warp_error(video[:2], backend, size=args.size)  # warm-up (allocations, cudnn)
        _, wall, cpu = timed(lambda: motion_aware_warp_error(clip, backend, size=args.size))
        add(f"MAWE at {args.size}", f"RAFT-large, {device.type}", raft_pairs, "pairs", frames_n - 1, wall, cpu, setup)
    if "clip" not in args.skip:
        bundle, setup, _ = timed(lambda: random_vit_h_bundle(args.clip_arch, device))
        clip_score(video[:1], "warm-up", bundle)
        _, wall, cpu = timed(lambda: clip_score(video[:clip_frames], "a cat running on the grass", bundle))
        add("CLIP score", f"open_clip {args.clip_arch}, {device.type}", clip_frames, "frames", frames_n, wall, cpu, setup)

    date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    print(f"### bench_metrics: {frames_n} frames at {args.resolution}x{args.resolution}, MAWE resized to "
          f"{args.size}x{args.size}")
    print(f"Device: {device_name(device)}; date {date}; torch {torch.__version__}\n")
    print("| metric | backend | timed on | ms per frame/pair | whole video s | CPU s (timed part) | model setup s |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("\n`~`: extrapolated from the timed pairs/frames to the whole video.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
