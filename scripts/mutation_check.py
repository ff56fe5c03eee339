"""A small mutation check: apply known regressions one at a time and see whether the tests that should catch each do.

Each mutation replaces one exact piece of source text (it must occur exactly once, or the mutation is reported as
"stale" instead of silently doing nothing) in a temporary copy of the repository's working tree, runs the tests named
for it there, and restores the file. The working tree itself is never modified. Not run in CI (minutes per mutation
on 2 cores); run it after changing tests or the code the mutations touch:

    .venv/bin/python scripts/mutation_check.py                 # every mutation
    .venv/bin/python scripts/mutation_check.py mawe_default_coeff refine_offsets_once
    .venv/bin/python scripts/mutation_check.py --list

Prints one row per mutation: caught (a named test failed), MISSED (all passed), stale (the text is gone), error.
Exit status 1 when any mutation was missed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    what: str


MUTATIONS = [
    # The four regressions issue 24's audit found uncaught.
    Mutation("extend_default_sampler", "nodes/extend.py",
             'options=comfy.samplers.KSampler.SAMPLERS, default="ddpm"',
             'options=comfy.samplers.KSampler.SAMPLERS, default="ddim"',
             ("tests/host/test_node_defaults.py",),
             "Extend's default sampler ddpm (DDIM eta = 1, official) -> ddim (eta = 0)"),
    Mutation("refine_offsets_once", "streamingt2v_core/sampling/refine.py",
             "        return draw_blend_offsets(len(overlaps), overlaps, blend_gen, variant)\n",
             "        if not hasattr(offsets, 'once'):\n"
             "            offsets.once = draw_blend_offsets(len(overlaps), overlaps, blend_gen, variant)\n"
             "        return offsets.once\n",
             ("tests/core/sampling/test_refine.py",),
             "core refine_video draws its blending offsets once instead of at every step"),
    Mutation("mawe_default_coeff", "streamingt2v_core/metrics/mawe.py",
             "DEFAULT_COEFF = 9.5\n", "DEFAULT_COEFF = 9.0\n",
             ("tests/core/metrics/test_metrics_mawe.py",),
             "MAWE's default coefficient 9.5 -> 9.0"),
    Mutation("spatial_groupnorm_eps", "streamingt2v_core/models/blocks.py",
             "        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)\n        self.proj_in = nn.Linear(channels, inner)\n"
             "        self.transformer_blocks = nn.ModuleList(\n            [BasicTransformerBlock(inner, heads, dim_head, context_dim,",
             "        self.norm = nn.GroupNorm(groups, channels, eps=1e-5)\n        self.proj_in = nn.Linear(channels, inner)\n"
             "        self.transformer_blocks = nn.ModuleList(\n            [BasicTransformerBlock(inner, heads, dim_head, context_dim,",
             ("tests/core/models/test_unet3d.py::test_matches_diffusers_reference_in_float64",),
             "GroupNorm eps 1e-6 -> 1e-5 in the spatial transformer"),
    # More regressions of the same kinds: defaults, constants, official quirks, values behind shape checks.
    Mutation("official_init_scaling_ignored", "streamingt2v_core/sampling/refine.py",
             "        x = x * float(sigma_vp)\n", "        x = x * 1.0\n",
             ("tests/core/sampling/test_refine.py",),
             "refine_video(official_init_scaling=True) no longer scales the start by 0.9724"),
    Mutation("refine_default_rescale", "nodes/refine.py",
             'io.Float.Input("guidance_rescale", default=0.2,', 'io.Float.Input("guidance_rescale", default=0.0,',
             ("tests/host/test_node_defaults.py",),
             "Refine's default guidance rescale 0.2 -> 0"),
    Mutation("initial_chunk_default_cfg", "nodes/initial_chunk.py",
             'io.Float.Input("cfg", default=9.0,', 'io.Float.Input("cfg", default=7.5,',
             ("tests/host/test_node_defaults.py",),
             "Initial Chunk's default CFG 9 -> 7.5"),
    Mutation("refine_seed_randomize", "js/runs.js",
             '  "StreamingT2VRefine",\n', "",
             ("tests/host/test_node_defaults.py",),
             "Refine's seed control no longer starts at fixed"),
    Mutation("paper_offsets_by_default", "streamingt2v_core/sampling/blending.py",
             'high = overlaps + (1 if variant == "paper" else 0)', 'high = overlaps + 1',
             ("tests/core/sampling/test_blending.py", "tests/core/sampling/test_refine.py"),
             "blend offsets drawn from {0..O} (the paper's text) instead of the code's {0..O-1}"),
    Mutation("no_end_aligned_window", "streamingt2v_core/sampling/plans.py",
             "        windows.append((num_frames - chunk, num_frames))\n",
             "        windows.append((windows[-1][0] + stride, num_frames))\n",
             ("tests/core/sampling/test_refine.py", "tests/core/sampling/test_plans.py"),
             "the last refiner window is no longer end-aligned (a short last window instead)"),
    Mutation("plot_bridges_gaps", "streamingt2v_core/metrics/plot.py",
             "        _draw_segment(draw, segment)\n        segment = []\n    _draw_segment",
             "        continue\n    _draw_segment",
             ("tests/core/metrics/test_metrics_plot.py",),
             "metric plots draw the series line across non-finite values"),
    Mutation("sdedit_sigma_squared", "streamingt2v_core/sampling/refine.py",
             "    x = latents + sigma * noise\n", "    x = latents + sigma * sigma * noise\n",
             ("tests/core/sampling/test_refine.py",),
             "the SDEdit start adds sigma^2 times the noise"),
]


def copy_tree(dest: Path) -> None:
    """The working tree's tracked and untracked-not-ignored files (what the suite runs on), not .venv/.host."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True, check=True).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = raw.decode()
        src = REPO_ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def run_mutation(m: Mutation, tree: Path, timeout: float) -> tuple[str, str, float]:
    target = tree / m.path
    original = target.read_text(encoding="utf-8")
    if original.count(m.old) != 1:
        return "stale", f"the text to replace occurs {original.count(m.old)} times in {m.path}", 0.0
    target.write_text(original.replace(m.old, m.new), encoding="utf-8")
    start = time.monotonic()
    try:
        env = dict(os.environ, STREAMINGT2V_COMFYUI_DIR=str(REPO_ROOT / ".host" / "ComfyUI"))
        cmd = [sys.executable, "-m", "pytest", *m.tests, "-x", "-q", "-p", "no:cacheprovider"]
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
        failed = [ln.split(" ")[1] for ln in proc.stdout.splitlines() if ln.startswith(("FAILED ", "ERROR "))]
        if proc.returncode == 0:
            return "MISSED", "all named tests passed", time.monotonic() - start
        if proc.returncode == 1 and failed:
            return "caught", failed[0], time.monotonic() - start
        return "error", f"pytest exit {proc.returncode}: {(proc.stdout + proc.stderr).strip().splitlines()[-1:]}", \
            time.monotonic() - start
    except subprocess.TimeoutExpired:
        return "error", f"timed out after {timeout:.0f} s", time.monotonic() - start
    finally:
        target.write_text(original, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per mutation (default 1800)")
    args = parser.parse_args(argv)
    by_name = {m.name: m for m in MUTATIONS}
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:<32} {m.what}\n{'':<32} tests: {' '.join(m.tests)}")
        return 0
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        parser.error(f"unknown mutation(s) {unknown}; --list shows them")
    chosen = [by_name[n] for n in args.names] or MUTATIONS
    width = max(len(m.name) for m in chosen)
    with tempfile.TemporaryDirectory(prefix="streamingt2v-mutants-") as tmp:
        tree = Path(tmp) / "repo"
        copy_tree(tree)
        print(f"{'mutation':<{width}}  {'result':<7}  {'s':>6}  detail", flush=True)
        missed = 0
        for m in chosen:
            result, detail, seconds = run_mutation(m, tree, args.timeout)
            missed += result == "MISSED"
            print(f"{m.name:<{width}}  {result:<7}  {seconds:>6.0f}  {detail}", flush=True)
    print(f"\n{sum(1 for _ in chosen) - missed} of {len(chosen)} mutations not missed")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
