"""Where runs live, the Load Run node, and the server route the web readout asks about a run.

Runs live in ``<output>/StreamingT2V/runs/<run_name>/`` (see :mod:`streamingt2v_core.runs.store`). A
``streamingt2v_runs`` entry in the host's ``extra_model_paths.yaml`` points them elsewhere (e.g. a
network share two servers use). The host's output folder is kept when ComfyUI restarts; its temp
folder is not, which is why runs are not there.

``StreamingT2V Load Run`` reads a run (by name, or the latest, or one exact video of it: ``<run>@<timeline id>``,
as Extend's ``run`` output gives), verifies every chunk, and gives its
frames as IMAGE (refused, before reading, when they would not fit in RAM), as the host's VIDEO
type backed by an mp4 file in the run folder (encoded chunk by chunk, so any length works), and
its manifest as text: an old run can be refined or measured without sampling it again.

``GET /streamingt2v/runs`` lists the runs; ``GET /streamingt2v/runs/{name}`` returns a run's
timeline and stored chunk versions (with their seeds and settings), for js/runs.js. Both also give
``timelines``: every video Extend nodes made from the run (id, ``ref``, base seed as text, frames,
chunks, when made, prompt, whether current, a short label), and ``note`` when the manifest was
rebuilt from the chunk files in memory.

One run folder per first chunk: with ``run_name = auto``, two seeds (or lengths, prompts...) of one
first chunk share the folder, as re-rolls of one video do. That is deliberate: their chunks sit side
by side and going back to a seed reuses its chunks instead of sampling them again. Each Extend's
``run`` output names its own video (``<run>@<timeline id>``), and the listing tells them apart.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from typing import Any

import torch

import folder_paths
from comfy_api.latest import InputImpl, io

from streamingt2v_core.runs import RunFolderError, RunStore, RunStoreError, split_ref, video_frames
from streamingt2v_core.runs.errors import ChunkCorruptError
from streamingt2v_core.runs import files as run_files
from streamingt2v_core.runs.files import commit_temp, temp_path_for
from streamingt2v_core.runs import memory as run_memory
from streamingt2v_core.runs.memory import float_video_bytes, format_bytes
from streamingt2v_core.video import StreamingVideoWriter, uint8_to_frames

from .extend_digests import digest

__all__ = ["RUNS_FOLDER_KEY", "runs_root", "run_store", "open_run", "run_summary", "runs_listing", "LoadRunNode", "NODES"]

logger = logging.getLogger(__name__)

#: The folder_paths key (extra_model_paths.yaml) that moves the runs folder.
RUNS_FOLDER_KEY = "streamingt2v_runs"
LATEST = "latest"
WHOLE_VIDEO = "whole video"
FIRST_FRAME = "first frame only (use the video output)"


def runs_root() -> str:
    """The runs folder: the ``streamingt2v_runs`` path if configured, else ``<output>/StreamingT2V/runs``."""
    configured = folder_paths.folder_names_and_paths.get(RUNS_FOLDER_KEY)
    if configured and configured[0]:
        return configured[0][0]
    return os.path.join(folder_paths.get_output_directory(), "StreamingT2V", "runs")


def run_store() -> RunStore:
    return RunStore(runs_root())


def open_run(run_name: str, identity: str, hint: str, base: dict[str, Any], frame_shape: list[int],
             store_advice: str = "") -> Any:
    """The run an extension node writes to: ``auto`` (or empty) finds or makes the run of this first chunk, any
    other name opens or creates that run. Errors become ``ValueError``s naming ``run_name``; ``store_advice`` is
    appended to a store error (Extend's way out: extending in memory only)."""
    store = run_store()
    name = (run_name or "").strip()
    try:
        if name in ("", "auto"):
            return store.open_auto(identity, hint, base, frame_shape)
        return store.open_or_create(name, identity, base, frame_shape)
    except RunFolderError as err:
        message = str(err)
        raise ValueError(message if message.startswith("run_name") else f"run_name: {message}") from None
    except RunStoreError as err:
        raise ValueError(f"run_name: {err}{store_advice}") from None


def runs_listing() -> dict[str, Any]:
    store = run_store()
    return {"root": store.root, "latest": store.latest(),
            "runs": [r.__dict__ for r in sorted(store.list_runs(), key=lambda r: r.updated, reverse=True)]}


def run_summary(name: str) -> dict[str, Any]:
    """A run's timeline and stored versions for the web readout; ``{"exists": False, ...}`` when there is none."""
    store = run_store()
    name = split_ref(name)[0]
    if name == LATEST:
        name = store.latest() or ""
    try:
        return store.open(name).summary()
    except RunStoreError as err:
        return {"exists": False, "name": name, "root": store.root, "reason": str(err)}


def _register_routes() -> None:
    """Adds the two GET routes to the host's server (once, and only where a server exists: scripts and
    benchmarks that import the nodes without a server do not import it)."""
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None or getattr(instance, "_streamingt2v_run_routes", False):
        return
    from aiohttp import web

    @instance.routes.get("/streamingt2v/runs")
    async def _list(request):
        return web.json_response(await asyncio.to_thread(runs_listing))

    @instance.routes.get("/streamingt2v/runs/{name}")
    async def _summary(request):
        return web.json_response(await asyncio.to_thread(run_summary, request.match_info["name"]))

    instance._streamingt2v_run_routes = True


_register_routes()


def _run_options() -> list[str]:
    """'latest', every run, and every video of the runs that hold several (``<run>@<id> (seed .., .. frames, date)``:
    two seeds of one first chunk share a run folder)."""
    try:
        options = [LATEST]
        for info in run_store().list_runs():
            options.append(info.name)
            if len(info.timelines) > 1:
                options += [f"{t['ref']} ({t['label']})" for t in info.timelines]
        return options
    except OSError:
        return [LATEST]


def _resolve(store: RunStore, run_name: str, run: str | None) -> tuple[str, str | None, str]:
    """(run name, timeline id or None for the run's current timeline, the input it came from)."""
    source = "run" if (run or "").strip() else "run_name"
    name, tid = split_ref((run or "").strip() or run_name)
    if name == LATEST:
        latest = store.latest()
        if latest is None:
            raise ValueError(f"run_name: there are no runs in {store.root} yet; make one with StreamingT2V Extend "
                             f"(disk_cache on)")
        return latest, None, source
    return name, tid, source


def _video_path(stored, name: str, key: str) -> tuple[str, bool]:
    """Where Load Run's mp4 goes: the run's videos/ folder, or (a read-only run) the host's temp folder; True when it
    is there already."""
    filename = f"{name.replace(' ', '_')}_{key}.mp4"
    path = os.path.join(stored.videos_dir, filename)
    if os.path.isfile(path):
        return path, True
    try:
        os.makedirs(stored.videos_dir, exist_ok=True)
        probe = temp_path_for(path, suffix=".probe")
        os.close(run_files._open_new(probe))
        os.remove(probe)
        return path, False
    except OSError as err:
        folder = os.path.join(folder_paths.get_temp_directory(), "StreamingT2V", "videos")
        os.makedirs(folder, exist_ok=True)
        logger.info("StreamingT2V Load Run: run %r is read-only (%s): its video goes to %s", name,
                    err.strerror or err, folder)
        path = os.path.join(folder, filename)
        return path, os.path.isfile(path)


class LoadRunNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StreamingT2VLoadRun",
            display_name="StreamingT2V Load Run",
            category="StreamingT2V/runs",
            description=(
                "Loads a stored run of StreamingT2V Extend (output/StreamingT2V/runs) without sampling: every chunk is "
                "verified; frames as IMAGE, a file-backed VIDEO for any length, and the run's manifest."
            ),
            inputs=[
                io.Combo.Input("run_name", options=_run_options(), default=LATEST,
                               tooltip="The run folder's name (its current video), or 'latest' (the most recently "
                                       "updated run). A run holding several videos (two seeds of one first chunk "
                                       "share a run) also lists each: '<run>@<id> (seed, frames, date made)'. Runs "
                                       "made after the page loaded appear after refreshing the node definitions (R)."),
                io.Float.Input("fps", default=8.0, min=0.1, max=240.0, step=0.5,
                               tooltip="Frame rate of the video output (StreamingT2V: 8)."),
                io.Combo.Input("frames_output", options=[WHOLE_VIDEO, FIRST_FRAME], default=WHOLE_VIDEO,
                               tooltip="'whole video': every frame as IMAGE (float32, 4 bytes per value: refused when "
                                       "it would not fit in RAM). 'first frame only': for very long runs, use the "
                                       "file-backed video output instead."),
                io.String.Input("run", optional=True, force_input=True,
                                tooltip="StreamingT2V Extend's run output ('<run>@<timeline id>'): loads exactly the "
                                        "video that Extend made, even when another Extend of the same run made "
                                        "another since (or says why it cannot); overrides run_name and makes this "
                                        "node run after that Extend."),
            ],
            outputs=[
                io.Image.Output("frames", display_name="frames",
                                tooltip="The run's frames [T, H, W, 3] (its first frame only with 'first frame only')."),
                io.Video.Output("video", display_name="video",
                                tooltip="The whole run as the host's VIDEO, backed by an mp4 (H.264) in the run's "
                                        "videos/ folder, encoded chunk by chunk."),
                io.String.Output("manifest", display_name="manifest",
                                 tooltip="The run's manifest.json: every chunk with its seed, prompt, settings and "
                                         "hash."),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, run_name: str, fps: float, frames_output: str, run: str | None = None) -> Any:
        # Re-run when the run changes on disk (another queue extended or re-rolled it).
        store = run_store()
        try:
            name, tid, _ = _resolve(store, run_name, run)
            m = store.open(name).manifest()
            return f"{name}|{tid}|{m.updated}|{fps}|{frames_output}"
        except Exception:  # noqa: BLE001 - execute() reports the problem
            return float("nan")

    @classmethod
    def execute(cls, run_name: str, fps: float, frames_output: str, run: str | None = None) -> io.NodeOutput:
        if not fps or fps <= 0:
            raise ValueError(f"fps: must be > 0, got {fps}")
        store = run_store()
        name, tid, source = _resolve(store, run_name, run)
        try:
            stored = store.open(name)
            m = stored.manifest()
            # A timeline id: exactly the video that Extend made (or a refusal saying the run no longer holds it).
            records, n_frames = stored.resolve(tid) if tid else (m.timeline_records(), video_frames(m))
        except RunFolderError as err:
            # Name the input the name came from: the run input (a wire from Extend) wins over the dropdown.
            raise ValueError(f"{source}: {err}") from None
        if m.rebuilt:
            logger.warning("StreamingT2V Load Run: %s (in memory; written when the run is next extended)", m.rebuilt)
        if not records:
            raise ValueError(f"{source}: run {name!r} holds no chunks yet; queue its StreamingT2V Extend")
        height, width = m.frame_shape[0], m.frame_shape[1]
        whole = frames_output == WHOLE_VIDEO
        if whole:
            needed = float_video_bytes(n_frames, height, width)
            available = run_memory.available_ram_bytes()
            if not run_memory.fits_in_ram(needed, available):
                raise ValueError(
                    f"frames_output: the {n_frames} frames of run {name!r} at {width}x{height} need "
                    f"{format_bytes(needed)} of RAM as an IMAGE (float32), more than fits in the "
                    f"{format_bytes(available)} available; choose '{FIRST_FRAME}' and use the video "
                    f"output, which is file-backed for any length")
        key = digest([r.file for r in records], n_frames, float(fps))[:12]
        video_path, exists = _video_path(stored, name, key)
        writer = None
        temp = None
        if not exists:
            temp = temp_path_for(video_path, suffix=".mp4")
            writer = StreamingVideoWriter(temp, width=width, height=height, fps=float(fps))
        images = torch.empty((n_frames, height, width, 3), dtype=torch.float32) if whole else None
        first = None
        pos = 0
        try:
            for record, frames in stored.timeline_chunks(records=records):
                n = min(frames.shape[0], n_frames - pos)
                if n <= 0:
                    break
                part = frames[:n]
                if first is None:
                    first = uint8_to_frames(part[:1])
                if images is not None:
                    images[pos:pos + n].copy_(part).div_(255.0)
                if writer is not None:
                    writer.write(part)
                pos += n
            if writer is not None:
                writer.close()
                commit_temp(temp, video_path)
        except ChunkCorruptError as err:
            raise ValueError(f"{err}. Nothing was loaded; queue this run's StreamingT2V Extend again (same "
                             f"settings) and it samples that chunk again") from None
        finally:
            if writer is not None:
                writer.close()
            if temp is not None:
                with contextlib.suppress(OSError):
                    os.remove(temp)  # our own unfinished encode (the finished one was renamed)
        if pos != n_frames:
            raise ValueError(f"{source}: run {name!r} lists {n_frames} frames but its chunks hold {pos}")
        manifest_text = m.to_json()  # (a rebuilt manifest exists in memory only, on a read-only or damaged folder)
        if not m.rebuilt:
            with contextlib.suppress(OSError), open(stored.manifest_path, encoding="utf-8") as f:
                manifest_text = f.read()
        logger.info("StreamingT2V Load Run: %s, %d frames at %dx%d, video %s", name, n_frames, width, height,
                    video_path)
        return io.NodeOutput(images if whole else first, InputImpl.VideoFromFile(video_path), manifest_text)


NODES: list[type[io.ComfyNode]] = [LoadRunNode]
