"""RSS while extending a long video through the Extend node's run logic, with the run store on disk.

Measured: ``nodes/extend_run.ExtensionRun`` (the Extend node's chunk loop: digests, in-memory cache,
verified run store writes, the core extension loop, the float32 IMAGE built at the end) with a
cheap stand-in for the host sampler (the frames of a chunk: its conditioning frames shifted plus
seeded noise; a real sampler's memory is freed after each chunk and does not grow with the length).
The goal (issue #12): RSS growth while extending <= the uint8 size of the frames made so far plus a
constant; with ``frames_output = last 16 frames`` the growth is constant.

    python bench/bench_run_memory.py                       # 2000 frames at 256x256 (CPU, about a minute)
    python bench/bench_run_memory.py --frames 400 --size 128

The run store is written to a temporary folder (deleted afterwards). The same command runs unchanged
on a GPU machine: nothing here uses the GPU, the numbers are host RAM.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time

from _common import REPO_ROOT, device_name

HOST = REPO_ROOT / ".host" / "ComfyUI"


def boot_host_modules():
    """The host's modules the node code imports (no server), and the pack's nodes package."""
    sys.path.insert(0, str(HOST))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args

    args.cpu = True
    spec = importlib.util.spec_from_file_location("streamingt2v_nodes", REPO_ROOT / "nodes" / "__init__.py",
                                                  submodule_search_locations=[str(REPO_ROOT / "nodes")])
    package = importlib.util.module_from_spec(spec)
    sys.modules["streamingt2v_nodes"] = package
    spec.loader.exec_module(package)
    import streamingt2v_nodes.extend_run as extend_run  # noqa: E402

    return extend_run


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def measure(mode: str, frames: int, size: int) -> list[tuple]:
    """One mode in this (fresh) process: rows (mode, frames done, RSS growth MiB, uint8 so far MiB)."""
    extend_run = boot_host_modules()
    import torch

    from streamingt2v_core.runs import ChunkCache, RunStore

    first = torch.rand(16, size, size, 3, generator=torch.Generator().manual_seed(0))

    def sample_chunk(job, index, cond, seed, callback):
        noise = torch.rand(16, size, size, 3, generator=torch.Generator().manual_seed(seed % 2**63))
        return (0.8 * torch.cat([cond, cond.roll(1, dims=1)]) + 0.2 * noise).clamp(0, 1)

    root = tempfile.mkdtemp(prefix="st2v_bench_runs_")
    rows = []
    try:
        job = extend_run.ExtensionJob(
            model=None, vae=None, positive=[[torch.zeros(1, 77, 1024), {}]], negative=[], anchor_embeds=None,
            grey_embeds=None, steps=1, cfg=7.5, sampler_name="ddpm", scheduler="ddim_uniform", width=size,
            height=size, _base="bench")
        run = RunStore(root).open_or_create("bench", "b" * 64, {"width": size}, [size, size, 3])
        whole = mode == "whole video"
        ext = extend_run.ExtensionRun(job, sample_chunk, run=run, cache=ChunkCache() if whole else None,
                                      keep_frames=None if whole else 16)
        ext._step_callback = lambda index: None  # no host previews without a model
        samples = []
        finished = ext.chunk_finished

        def on_chunk(report, chunk_frames):
            finished(report, chunk_frames)
            samples.append((report.new_range[1], rss()))

        ext.chunk_finished = on_chunk
        gc.collect()
        start = rss()
        t0 = time.perf_counter()
        result = ext.execute(first, frames, seed=1)
        seconds = time.perf_counter() - t0
        end = rss()
        assert result.frames.shape[0] == (frames if whole else 16)
        frame_bytes = size * size * 3
        so_far = (lambda f: f * frame_bytes) if whole else (lambda f: 0)
        worst = max(r - start - so_far(f) for f, r in samples)
        marks = {samples[0][0], samples[len(samples) // 4][0], samples[len(samples) // 2][0], samples[-1][0]}
        for f, r in samples:
            if f in marks:
                rows.append((mode, str(f), (r - start) / 2**20, so_far(f) / 2**20))
        rows.append((mode, f"{frames} + IMAGE output", (end - start) / 2**20, None))
        rows.append((mode, "max (growth - uint8 so far)", worst / 2**20, None))
        rows.append((mode, "wall time (s)", seconds, None))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--mode", help=argparse.SUPPRESS)  # one mode, in a child process
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode, args.frames, args.size)))
        return
    import torch

    rows = []
    for mode in ("whole video", "last 16 frames"):  # each in a fresh process: RSS is not shared between them
        out = subprocess.run([sys.executable, __file__, "--frames", str(args.frames), "--size", str(args.size),
                              "--mode", mode], capture_output=True, text=True, check=True)
        rows += json.loads(out.stdout.strip().splitlines()[-1])
    print(f"StreamingT2V run memory, {_dt.datetime.now():%Y-%m-%d %H:%M}, {device_name('cpu')}, "
          f"torch {torch.__version__}")
    print(f"{args.frames} frames at {args.size}x{args.size}, every chunk written to a run store on disk, stand-in "
          f"chunk sampler")
    print()
    print("| frames_output | frames done | RSS growth (MiB) | uint8 frames so far (MiB) |")
    print("|---|---|---|---|")
    for mode, frames, growth, u8 in rows:
        value = f"{growth:.1f}"
        print(f"| {mode} | {frames} | {value} | {'' if u8 is None else f'{u8:.1f}'} |")


if __name__ == "__main__":
    main()
