"""The main job, headless: run a shipped workflow end to end in the real ComfyUI host.

    bash scripts/demo.sh [--prompt "..."] [--frames N] [--models DIR] [--steps N] [--workflow NAME]

It boots the host in this process with this pack, loads `workflows/<NAME>` (the UI file an artist
opens in the web UI), converts it to the API format, applies the options (prompt, frames,
steps, size), executes it, prints each step as the host runs it, and prints the path of the final
video (the refined one when the workflow refines) as its last line.

Weights: with real weights in the models folder (see README, "Where weights go") it makes the
real video. Missing files are filled with tiny random demo weights in the real key layouts, and
the demo says, before and after, that the output is noise.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from scripts.comfy_host import WORKFLOWS_DIR, boot_host  # noqa: E402
from scripts.workflow_format import workflow_to_api  # noqa: E402

# Preferred order: the whole pipeline first, then what exists.
WORKFLOW_PREFERENCE = ["text_to_long_video_refined.json", "text_to_long_video.json", "frame_plan.json"]
VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".gif"}

NOISE_WARNING = (
    "NOTE: {missing} not found in {models}: using tiny RANDOM demo weights in the real key layouts. "
    "The pipeline runs for real, but the video is noise. Put real weights there for a real video (README: Where weights go)."
)


def pick_workflow(name: str | None) -> Path:
    if name:
        path = Path(name) if Path(name).is_file() else WORKFLOWS_DIR / name
        if not path.is_file():
            raise SystemExit(f"--workflow: no workflow file {name!r} (have: {', '.join(p.name for p in sorted(WORKFLOWS_DIR.glob('*.json')))})")
        return path
    for candidate in WORKFLOW_PREFERENCE:
        if (WORKFLOWS_DIR / candidate).is_file():
            return WORKFLOWS_DIR / candidate
    raise SystemExit(f"no workflow in {WORKFLOWS_DIR}")


def apply_options(api: dict, args: argparse.Namespace) -> dict:
    """Set the demo options on whichever nodes have the matching inputs."""
    for node in api.values():
        inputs = node["inputs"]
        title = node.get("_meta", {}).get("title", "").lower()
        if args.prompt is not None and node["class_type"] == "CLIPTextEncode" and "negative" not in title:
            inputs["text"] = args.prompt
        if args.frames is not None and "total_frames" in inputs and not isinstance(inputs["total_frames"], list):
            inputs["total_frames"] = args.frames
        if args.steps is not None and "steps" in inputs and not isinstance(inputs["steps"], list):
            inputs["steps"] = args.steps
        sizes = {"StreamingT2VInitialChunk": (args.width, args.height), "StreamingT2VExtend": (args.width, args.height),
                 "StreamingT2VRefine": (args.refine_width, args.refine_height)}.get(node["class_type"])
        for key, value in zip(("width", "height"), sizes or ()):
            if value is not None and key in inputs and not isinstance(inputs[key], list):
                inputs[key] = value
        if args.metric_size is not None and node["class_type"] == "StreamingT2VMAWE":
            inputs["size"] = args.metric_size
    return api


def files_from_ui(ui_outputs: dict, output_dir: Path) -> dict[str, list[Path]]:
    """The files each output node reported (its UI output), by node id."""
    found: dict[str, list[Path]] = {}
    for node_id, node_out in ui_outputs.items():
        for entries in node_out.values():
            if not isinstance(entries, list):
                continue
            for entry in entries:
                if isinstance(entry, dict) and "filename" in entry:
                    base = output_dir if entry.get("type", "output") == "output" else output_dir.parent / entry["type"]
                    found.setdefault(str(node_id), []).append(base / entry.get("subfolder", "") / entry["filename"])
    return found


def _upstream_types(api: dict, node_id: str) -> set[str]:
    seen, todo, types = set(), [node_id], set()
    while todo:
        current = todo.pop()
        if current in seen or current not in api:
            continue
        seen.add(current)
        types.add(api[current]["class_type"])
        todo += [v[0] for v in api[current]["inputs"].values() if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)]
    return types


def final_video(api: dict, files: dict[str, list[Path]]) -> Path | None:
    """The video the workflow is for: one saved downstream of StreamingT2V Refine when there is one
    (the refined video), else the last video saved."""
    videos = [(node_id, f) for node_id, paths in files.items() for f in paths if f.suffix.lower() in VIDEO_SUFFIXES]
    refined = [f for node_id, f in videos if "StreamingT2VRefine" in _upstream_types(api, node_id)]
    return (refined or [f for _n, f in videos] or [None])[-1]


def print_steps(api: dict):
    """A listener for the host's messages that prints each node as it starts."""
    total = len(api)
    done: list[str] = []

    def listener(event: str, data) -> None:
        node_id = (data or {}).get("node") if isinstance(data, dict) else None
        if event == "executing" and node_id is not None and node_id in api and node_id not in done:
            done.append(node_id)
            title = api[node_id].get("_meta", {}).get("title") or api[node_id]["class_type"]
            print(f"[demo] step {len(done)}/{total}: {title} ({api[node_id]['class_type']})", flush=True)

    return listener


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a StreamingT2V workflow headless in the real ComfyUI host.")
    parser.add_argument("--prompt", default=None, help="text prompt (default: the workflow's)")
    parser.add_argument("--frames", type=int, default=None, help="total frames of the long video (default: 48 on demo weights, else the workflow's)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps per stage (default: 4 on demo weights, else the workflow's)")
    parser.add_argument("--width", type=int, default=None, help="first-chunk width (default: 64 on demo weights)")
    parser.add_argument("--height", type=int, default=None, help="first-chunk height (default: 64 on demo weights)")
    parser.add_argument("--refine-width", dest="refine_width", type=int, default=None, help="refiner working width (default: 128 on demo weights)")
    parser.add_argument("--refine-height", dest="refine_height", type=int, default=None, help="refiner working height (default: 144 on demo weights; the MS-Vid2Vid-XL UNet takes heights of 16 + 64k px)")
    parser.add_argument("--metric-size", dest="metric_size", type=int, default=None, help="MAWE working size, for a workflow with a MAWE node such as evaluate_video.json (default: 720, the paper's; 128 on demo weights)")
    parser.add_argument("--models", type=Path, default=REPO_ROOT / "models", help="models folder (ComfyUI layout; default ./models)")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / ".demo", help="host base folder: output/, input/, temp/")
    parser.add_argument("--workflow", default=None, help="workflow file name in workflows/ (default: the full pipeline)")
    args = parser.parse_args(argv)

    workflow = pick_workflow(args.workflow)
    args.models.mkdir(parents=True, exist_ok=True)
    print(f"[demo] workflow: {workflow.name}; models folder: {args.models}", flush=True)
    host = boot_host(args.workdir, models_dir=args.models)
    for note in host.notes:
        print(f"[demo] host: {note}", flush=True)

    from scripts.demo_weights import WEIGHT_FILES, install_demo_loader_hooks, write_all

    # Demo files with tiny encoders (what the tests write) load only through these hooks; real files are untouched.
    install_demo_loader_hooks()

    wf_text = workflow.read_text()
    needed = {k: v for k, v in WEIGHT_FILES.items() if Path(v).name in wf_text}
    missing = [v for v in needed.values() if not (args.models / v).is_file()]
    demo_weights = bool(missing)
    if demo_weights:
        print(NOISE_WARNING.format(missing=", ".join(missing), models=args.models), flush=True)
        write_all(args.models)
        # small defaults: random weights make noise at any size, so keep the demo quick on a CPU
        args.frames = args.frames or 48
        args.steps = args.steps or 4
        args.width = args.width or 64
        args.height = args.height or 64
        args.refine_width = args.refine_width or 128
        args.refine_height = args.refine_height or 144
        args.metric_size = args.metric_size or 128

    api = apply_options(workflow_to_api(workflow, host.object_info()), args)
    started = time.time()
    host.server.listeners.append(print_steps(api))
    host.run_prompt(api)
    elapsed = time.time() - started
    files = files_from_ui(host.ui_outputs(), host.output_dir)
    all_files = [f for paths in files.values() for f in paths]
    video = final_video(api, files)
    report = host.output_dir / "streamingt2v_demo_run.json"
    report.write_text(json.dumps({"workflow": workflow.name, "seconds": round(elapsed, 1), "demo_weights": demo_weights,
                                  "video": str(video) if video else None, "files": [str(f) for f in all_files]}, indent=2))
    print(f"[demo] finished in {elapsed:.1f} s; files written: {len(all_files)}; run report: {report}", flush=True)
    if demo_weights:
        print(NOISE_WARNING.format(missing=", ".join(missing), models=args.models), flush=True)
    print(video if video else (all_files[-1] if all_files else report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
