"""Every full-size benchmark in one run, within a time budget, appending dated tables to bench/RESULTS.md.

Called by ``bench/gpu.sh`` (which finds the Python and the host); ``--dry-run`` runs the same parts at CPU size.

Each part runs in its own process with its own time limit, so one that crashes, runs out of memory or hangs costs
only its own slot: the orchestrator appends every part's table to the results file as soon as that part ends
(a part killed by its limit keeps the rows it had written), then a summary of the issue's goals and the 1200-frame
plan. Plan for 8 minutes on one H100/H200 (the budget, ``--budget``, is what ``gpu.sh`` has left after its set-up):

| part | limit s | what |
|---|---|---|
| models | 110 | extender / base / refiner forwards at the goals' shapes, bf16 and fp16: time, peak memory, our memory estimate vs measured, attention calls under the kernel limit |
| profile | 35 | one profiled bf16 forward of the extender and the refiner: GPU time by kind (attention, convolution, matmul, norm, elementwise) and host overhead |
| extend | 75 | one extension chunk through the Extend node in the host (256x256, 50 steps, CFG) |
| refine | 100 | one 720p refiner window through the Refine node's stages; per-step time with 1, 2, 4 windows per call |
| pipeline | 100 | Initial Chunk -> Extend -> Refine at full size on a GPU limited to 12 GiB, host offloading |
| activation_memory | 40 | refiner (720p, 1024x592), base and extender (256x256) CFG forwards in fp16, chunked and unchunked: torch.cuda.max_memory_allocated vs the meta-device measurement (`memory_estimate.MEASURED`) and `memory_required`; the host's SD VAE decode (one tile, one 720p frame, bf16) vs `memory_plan.VAE_DECODE_ELEMENTS` |
| compile | rest (>= 20 to start) | torch.compile (inductor) of the extender forward |

The summary (goals, 1200-frame plan) is computed from the parts' JSON, so it needs no GPU time of its own.

    python bench/gpu_full.py --dry-run --results /tmp/dry.md     # what the CI test runs
    python bench/gpu_full.py                                      # on a GPU (use bash bench/gpu.sh)
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Part:
    name: str
    title: str
    limit_s: float  # full size on a GPU
    dry_limit_s: float  # CPU dry run (generous: CI machines are slow and shared)
    needs_host: bool = False


PARTS = [
    Part("models", "Model forwards at the goals' shapes (bench/gpu_parts.py: part_models)", 110, 150),
    Part("profile", "Where the time goes (bench/gpu_parts.py: part_profile)", 35, 150),
    Part("extend", "One extension chunk through the host (bench/gpu_host_parts.py: part_extend)", 75, 150, True),
    Part("refine", "One refiner window through the host, and windows per call (part_refine)", 100, 150, True),
    Part("pipeline", "Whole pipeline within 12 GiB (part_pipeline)", 100, 150, True),
    Part("activation_memory", "Activation memory vs the meta-device measurement (bench/bench_activation_memory.py: "
         "part_activation_memory)", 40, 150),
    Part("compile", "torch.compile of the extender (part_compile)", 0, 150),
]
#: The smallest slot worth starting a part in.
MIN_SLOT_S = 20
#: Test hook: "part:raise" or "part:hang" (comma-separated) makes that part fail or hang, to check that the others'
#: tables survive.
FAULT_ENV = "STREAMINGT2V_GPU_BENCH_FAULT"
#: Test hook: time limits replacing the planned ones, "part:seconds" (comma-separated) or seconds for every part.
LIMIT_ENV = "STREAMINGT2V_GPU_BENCH_PART_LIMIT_S"


def part_limit_override(name: str) -> float | None:
    value = os.environ.get(LIMIT_ENV, "").strip()
    if not value:
        return None
    if ":" not in value:
        return float(value)
    limits = dict(item.split(":", 1) for item in value.split(",") if ":" in item)
    return float(limits[name]) if name in limits else None
#: Seconds kept back for the summary and for appending the results.
RESERVE_S = 5

# The performance goals.
GOAL_EXTENDER_MS = 35.0
GOAL_REFINER_MS = 520.0
GOAL_REFINER_GIB = 10.0
GOAL_1200_S = 300.0
GOAL_PIPELINE_GIB = 12.0
PLAN_FRAMES, REFINE_STEPS = 1200, 30


# --------------------------------------------------------------------------------------------------------------------
# one part (worker process)
# --------------------------------------------------------------------------------------------------------------------
def run_part(name: str, dry: bool, work: Path) -> int:
    import torch

    from bench import bench_activation_memory, gpu_host_parts, gpu_parts

    fault = dict(item.split(":", 1) for item in os.environ.get(FAULT_ENV, "").split(",") if ":" in item)
    if fault.get(name) == "raise":
        raise RuntimeError(f"{FAULT_ENV} asked part {name} to fail")
    if fault.get(name) == "hang":
        time.sleep(3600)
    device = torch.device("cpu" if dry or not torch.cuda.is_available() else "cuda")
    if dry:
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    ctx = gpu_parts.Ctx(dry=dry, device=device, work=work, name=name)
    funcs = {"models": gpu_parts.part_models, "profile": gpu_parts.part_profile, "compile": gpu_parts.part_compile,
             "extend": gpu_host_parts.part_extend, "refine": gpu_host_parts.part_refine,
             "pipeline": gpu_host_parts.part_pipeline,
             "activation_memory": bench_activation_memory.part_activation_memory}
    funcs[name](ctx)
    return 0


# --------------------------------------------------------------------------------------------------------------------
# the orchestrator
# --------------------------------------------------------------------------------------------------------------------
def device_line(dry: bool) -> str:
    import torch

    from bench._common import device_name

    if not dry and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        return (f"{torch.cuda.get_device_name(0)} ({total / 2**30:.0f} GiB), torch {torch.__version__}, CUDA "
                f"{torch.version.cuda}")
    return f"{device_name(torch.device('cpu'))}, torch {torch.__version__}"


#: What the host parts import beyond torch (the host's own requirements that an image with PyTorch may lack).
HOST_MODULES = ("av", "torchsde", "einops", "safetensors", "scipy", "psutil", "transformers", "PIL", "yaml")


def missing_requirements(part: Part) -> str:
    """Why a part cannot run here ('' if it can): the host parts need the ComfyUI source and its requirements."""
    import importlib.util

    if not part.needs_host:
        return ""
    from bench.gpu_host_parts import host_dir

    if not (host_dir() / "comfy").is_dir():
        return (f"no ComfyUI host at {host_dir()} (run scripts/setup.sh, or carry .host/ComfyUI to this machine, "
                "see bench/gpu_prepare.sh)")
    absent = [m for m in HOST_MODULES if importlib.util.find_spec(m) is None]
    if absent:
        return (f"the host needs Python packages missing here: {', '.join(absent)} (install them, or carry wheels "
                "made by bench/gpu_prepare.sh in .whl/)")
    return ""


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


def tail(path: Path, lines: int = 6) -> str:
    try:
        content = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(content[-lines:])


def orchestrate(args) -> int:
    start = time.monotonic()
    dry = args.dry_run
    results = Path(args.results)
    work = Path(args.work or tempfile.mkdtemp(prefix="st2v_gpu_"))
    work.mkdir(parents=True, exist_ok=True)
    selected = [p for p in PARTS if not args.parts or p.name in args.parts.split(",")]
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    mode = "DRY RUN at CPU size (tiny presets; numbers mean nothing)" if dry else "full size"
    # A process per part on a GPU (a crash, an OOM or a hang costs only that part); the CPU dry run keeps one process
    # (starting the host takes most of a small run) and stops a part at its limit with an alarm instead.
    isolate = args.isolate == "yes" or (args.isolate == "auto" and not dry)
    how = "in its own process" if isolate else "in one process"
    append(results, f"\n## bench/gpu.sh, {mode}: {when}\n\nDevice: {device_line(dry)}. Budget {args.budget:.0f} s; "
                    f"each part ran {how} with its own time limit.\n")
    status: dict[str, str] = {}
    for index, part in enumerate(selected):
        elapsed = time.monotonic() - start
        remaining = args.budget - elapsed - RESERVE_S
        planned = part_limit_override(part.name)
        if planned is None:
            planned = part.dry_limit_s if dry else part.limit_s
        limit = remaining if planned <= 0 else min(planned, remaining)
        header = f"\n### {part.title}\n\n"
        if limit < min(MIN_SLOT_S, planned if planned > 0 else MIN_SLOT_S):
            status[part.name] = f"skipped: {remaining:.0f} s of the budget left"
            append(results, header + f"Skipped: only {max(0, remaining):.0f} s of the budget left.\n")
            continue
        missing = missing_requirements(part)
        if missing:
            status[part.name] = f"skipped: {missing}"
            append(results, header + f"Skipped: {missing}.\n")
            print(f"[gpu_full] {part.name}: skipped ({missing})", flush=True)
            continue
        log = work / f"{part.name}.log"
        part_start, cpu_start = time.monotonic(), _cpu_seconds()
        if isolate:
            outcome = run_isolated(part, dry, work, log, limit)
        else:
            outcome = run_in_process(part, dry, work, log, limit)
        seconds = time.monotonic() - part_start
        status[part.name] = outcome
        table = work / f"{part.name}.md"
        body = table.read_text() if table.exists() else ""
        note = f"Part {outcome} after {seconds:.0f} s."
        if outcome != "ok":
            note += " Last lines of its log:\n\n```\n" + tail(log) + "\n```\n"
            if body:
                note += "\nRows measured before that:\n"
        append(results, header + note + "\n\n" + body)
        print(f"[gpu_full] {part.name}: {outcome} ({seconds:.0f} s, {_cpu_seconds() - cpu_start:.0f} CPU-s)", flush=True)

    summary = summarize(work, dry, status)
    append(results, summary)
    print(f"[gpu_full] {len([s for s in status.values() if s == 'ok'])}/{len(selected)} parts ok in "
          f"{time.monotonic() - start:.0f} s; tables appended to {results}", flush=True)
    return 0 if all(s == "ok" for s in status.values()) else 1


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (a load-independent measure of a part's cost)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_isolated(part: Part, dry: bool, work: Path, log: Path, limit: float) -> str:
    """The part in its own process, killed at ``limit`` seconds."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--part", part.name, "--work", str(work)]
    if dry:
        cmd.append("--dry-run")
    with log.open("w") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=str(REPO),
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return f"stopped at its {limit:.0f} s limit"
    return "ok" if rc == 0 else f"failed (exit {rc})"


class _PartTimeout(Exception):
    pass


def run_in_process(part: Part, dry: bool, work: Path, log: Path, limit: float) -> str:
    """The part in this process, stopped by SIGALRM at ``limit`` seconds (between Python bytecodes)."""
    import contextlib
    import signal

    def on_alarm(signum, frame):
        raise _PartTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        with log.open("w") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
            try:
                run_part(part.name, dry, work)
                return "ok"
            except _PartTimeout:
                return f"stopped at its {limit:.0f} s limit"
            except Exception:  # noqa: BLE001 - recorded with its log
                traceback.print_exc()
                return "failed"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------------------------------------------------
# summary: the goals and the 1200-frame plan, from the parts' JSON
# --------------------------------------------------------------------------------------------------------------------
def load(work: Path, name: str) -> dict:
    try:
        return json.loads((work / f"{name}.json").read_text())
    except (OSError, ValueError):
        return {}


def verdict(measured: float | None, goal: float) -> str:
    if measured is None:
        return "not measured"
    if measured <= goal:
        return "met"
    return f"missed by {measured / goal - 1:.0%}"


def dominant(profile: dict, case: str) -> str:
    for row in profile.get("rows", []):
        if row["case"] == case:
            parts = sorted(row["per"].items(), key=lambda kv: -kv[1])
            return ", ".join(f"{name} {ms / row['wall_ms']:.0%}" for name, ms in parts[:3])
    return "not profiled"


def summarize(work: Path, dry: bool, status: dict[str, str]) -> str:
    from streamingt2v_core.sampling.plans import refiner_plan

    models, profile, extend, refine, pipeline, compiled = (load(work, n) for n in
                                                           ("models", "profile", "extend", "refine", "pipeline",
                                                            "compile"))

    def model_row(case: str, dtype: str = "bf16") -> dict:
        for row in models.get("rows", []):
            if row["case"] == case and (row["dtype"] == dtype or dry):
                return row
        return {}

    ext, ref = model_row("extender CFG"), model_row("refiner CFG")
    chunks = (PLAN_FRAMES - 16) // 8
    chunk_s = extend.get("chunk_s")
    extension_s = None if chunk_s is None else chunks * chunk_s + extend.get("anchor_s", 0.0)
    window = refine.get("window", {})
    windows = len(refiner_plan(PLAN_FRAMES, 24, 8))
    batching = refine.get("batching", {}).get("rows", [])
    best_window_step = min((r["window_step_s"] for r in batching), default=window.get("window_step_s"))
    refine_s = None
    if window and best_window_step:
        refine_s = (windows * REFINE_STEPS * best_window_step
                    + PLAN_FRAMES * (window["encode_s_per_frame"] + window["decode_s_per_frame"]))
    stages = pipeline.get("stages", [])
    pipe_peak = max((s["peak_gib"] or 0.0 for s in stages), default=None) if stages and not dry else None
    pipe_ok = bool(stages) and not any(s["error"] for s in stages) and status.get("pipeline") == "ok"

    lines = ["\n### Summary: the issue's goals" + (" (dry run: CPU sizes, verdicts meaningless)" if dry else "") + "\n",
             "| goal | target | measured | verdict | what dominates |", "|---|---|---|---|---|"]
    lines.append(f"| extender CFG forward, 16x32x32, bf16 | <= {GOAL_EXTENDER_MS:.0f} ms | "
                 f"{_ms(ext.get('ms'))} | {verdict(ext.get('ms'), GOAL_EXTENDER_MS)} | "
                 f"{dominant(profile, 'extender CFG')} |")
    lines.append(f"| refiner CFG forward, 24x90x160 | <= {GOAL_REFINER_MS:.0f} ms | {_ms(ref.get('ms'))} | "
                 f"{verdict(ref.get('ms'), GOAL_REFINER_MS)} | {dominant(profile, 'refiner CFG')} |")
    lines.append(f"| refiner CFG forward memory | <= {GOAL_REFINER_GIB:.0f} GiB | {_gib(ref.get('total_gib'))} | "
                 f"{verdict(ref.get('total_gib'), GOAL_REFINER_GIB)} | weights {_gib(ref.get('weights_gib'))}, "
                 f"activations {_gib(ref.get('activation_gib'))} (peak: transformer_in's feed-forward, see "
                 "memory_estimate.py) |")
    lines.append(f"| 1200 frames at 256x256, extension only | <= {GOAL_1200_S:.0f} s | {_s(extension_s)} | "
                 f"{verdict(extension_s, GOAL_1200_S)} | {chunks} chunks x {_s(chunk_s)}: {_extend_split(extend)} |")
    lines.append(f"| whole pipeline at full size | <= {GOAL_PIPELINE_GIB:.0f} GiB | {_gib(pipe_peak)} | "
                 f"{'met' if pipe_ok and pipe_peak is not None and pipe_peak <= GOAL_PIPELINE_GIB else ('failed: ' + next((s['stage'] + ': ' + s['error'] for s in stages if s['error']), status.get('pipeline', 'not run')) if not pipe_ok else verdict(pipe_peak, GOAL_PIPELINE_GIB))} | "
                 f"{_stage_peaks(stages)} |")
    if compiled:
        lines.append(f"| (extender with torch.compile, {compiled.get('backend')}) | <= {GOAL_EXTENDER_MS:.0f} ms | "
                     f"{_ms(compiled.get('compiled_ms'))} | {verdict(compiled.get('compiled_ms'), GOAL_EXTENDER_MS)} | "
                     f"compile {_s(compiled.get('compile_s'))} once |")
    lines += ["", f"1200-frame plan estimated from the measured parts: extension {chunks} chunks x {_s(chunk_s)} "
                  f"+ anchor {_s(extend.get('anchor_s'))} = {_s(extension_s)}; refinement {windows} windows x "
                  f"{REFINE_STEPS} steps x {_s(best_window_step, '.3f')} per window-step (best windows-per-call "
                  f"setting) + {PLAN_FRAMES} frames x VAE encode+decode "
                  f"{_s((window.get('encode_s_per_frame') or 0) + (window.get('decode_s_per_frame') or 0), '.3f')} = "
                  f"{_s(refine_s)}; total {_s(None if extension_s is None or refine_s is None else extension_s + refine_s)}."
                  " (The official code: 1710 s for the extension and 10,225 s with the refiner on an A100.)",
              "", "Parts: " + ", ".join(f"{k} {v}" for k, v in status.items()) + "\n"]
    return "\n".join(lines)


def _extend_split(extend: dict) -> str:
    """Where one extension chunk's time goes: the sampler (UNet forwards) vs VAE decode and host work."""
    rows = extend.get("rows") or []
    if not rows or not rows[-1].get("sampling_s"):
        return "not measured"
    row = rows[-1]
    return (f"sampling {row['sampling_s'] / row['chunk_s']:.0%} ({_s(row['per_step_s'], '.3f')} per step x "
            f"{extend.get('steps', '?')}), VAE decode + host {row['other_s'] / row['chunk_s']:.0%}")


def _ms(value) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _s(value, spec: str = ".1f") -> str:
    return "-" if value is None else f"{format(value, spec)} s"


def _gib(value) -> str:
    return "-" if value is None else f"{value:.2f} GiB"


def _stage_peaks(stages: list[dict]) -> str:
    if not stages:
        return "-"
    top = sorted((s for s in stages if s.get("peak_gib") is not None), key=lambda s: -s["peak_gib"])[:2]
    return ", ".join(f"{s['stage']} {s['peak_gib']:.2f} GiB" for s in top) or "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="the same parts at CPU size (tiny presets)")
    parser.add_argument("--budget", type=float, default=None, help="seconds for all parts (default 470; dry 600)")
    parser.add_argument("--results", default=None, help="Markdown file to append to (default bench/RESULTS.md; "
                                                        "dry run: a temp file)")
    parser.add_argument("--parts", default=None, help="comma list of parts (default all)")
    parser.add_argument("--work", default=None, help="folder for the parts' tables, JSON and logs")
    parser.add_argument("--isolate", choices=("auto", "yes", "no"), default="auto",
                        help="a process per part (auto: on a GPU yes, in the dry run no)")
    parser.add_argument("--part", default=None, help=argparse.SUPPRESS)  # worker mode
    args = parser.parse_args(argv)
    if args.part:
        try:
            return run_part(args.part, args.dry_run, Path(args.work))
        except Exception:  # noqa: BLE001 - the orchestrator shows the log
            traceback.print_exc()
            return 1
    if args.budget is None:
        args.budget = 600.0 if args.dry_run else 470.0
    if args.results is None:
        args.results = (str(Path(tempfile.gettempdir()) / "streamingt2v_gpu_dry_run.md") if args.dry_run
                        else str(REPO / "bench" / "RESULTS.md"))
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            print("bench/gpu_full.py: no CUDA GPU visible to torch; use --dry-run for the CPU-size run", file=sys.stderr)
            return 2
    return orchestrate(args)


if __name__ == "__main__":
    raise SystemExit(main())
