"""Metric nodes: SCuts, MAWE and CLIP score of an IMAGE batch (the paper's Table 1 metrics).

Each node is an output node (it runs without a downstream consumer), returns its number(s), the
per-frame or per-pair series (``STREAMINGT2V_SERIES``) and a plot of that series over time as an
IMAGE with scene cuts and the chunk seams of a chosen plan marked, and writes a JSON report to the
output folder. The computation lives in :mod:`streamingt2v_core.metrics`.

Model folders registered here (under the host's models directory):
* ``raft``: torchvision RAFT-large weights (``raft_large_C_T_SKHT_V2-ff5fadd5.pth``) for MAWE;
* ``streamingt2v_metrics``: open_clip checkpoints for the CLIP score (the host's ``clip`` /
  ``text_encoders`` folder is searched too).
Their dropdowns list only the files that can work (a full open_clip ViT checkpoint, a RAFT-large
state dict), told from tensor names alone (:mod:`streamingt2v_core.metrics.weight_files`).

Each node shows its numbers and its plot on the node after a run. At start-up the pack writes a
small synthetic sample video into the host's input folder when it is missing, so
``workflows/evaluate_video.json`` opens with its video in place and runs on a fresh install.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any

import logging

import folder_paths
import torch
from comfy_api.latest import io, ui

from streamingt2v_core.metrics import weight_files
from streamingt2v_core.metrics.clip_score import OpenClipBundle, clip_score, load_open_clip, supported_architectures
from streamingt2v_core.metrics.mawe import DEFAULT_COEFF, DEFAULT_SIZE, load_raft_large, make_flow_backend, motion_aware_warp_error
from streamingt2v_core.metrics.plot import PLAN_CHOICES, chunk_marks, plot_series
from streamingt2v_core.metrics.scuts import count_scene_cuts

from .validation import check_rgb_frames

RAFT_FOLDER = "raft"
CLIP_FOLDER = "streamingt2v_metrics"
HOST_CLIP_FOLDER = "text_encoders"  # the host maps the legacy "clip" folder name onto this one
NO_FILE = "none"
AUTO = "auto"
FIRST_TRY_MAWE_SIZE = 256
"""MAWE's default working size: the extender's own 256 px frames, seconds per video on any device.
The paper's protocol (720, ``DEFAULT_SIZE``) is one widget edit away, and the node says which
numbers are comparable to the paper's."""


def _register_folder(name: str) -> None:
    """Make models/<name> a model folder with the usual weight extensions (idempotent)."""
    path = os.path.join(folder_paths.models_dir, name)
    if name in folder_paths.folder_names_and_paths:
        folder_paths.add_model_folder_path(name, path)
    else:
        folder_paths.folder_names_and_paths[name] = ([path], set(folder_paths.supported_pt_extensions))


_register_folder(RAFT_FOLDER)
_register_folder(CLIP_FOLDER)


def _ensure_sample_video() -> None:
    """Write the evaluation workflow's sample video into the input folder when it is missing.

    ``workflows/evaluate_video.json`` loads ``streamingt2v_sample.mp4`` (2 synthetic scenes of 16
    frames, one cut): with it in place the workflow opens without missing files and runs as
    shipped. A read-only input folder only costs the sample, never the pack.
    """
    from streamingt2v_core.metrics.synthetic import SAMPLE_VIDEO_NAME, write_evaluation_video

    import tempfile

    folder = folder_paths.get_input_directory()
    path = os.path.join(folder, SAMPLE_VIDEO_NAME)
    if os.path.isfile(path):
        return
    partial = None
    try:
        os.makedirs(folder, exist_ok=True)
        # Written under a temporary name and moved into place: a second server starting on the
        # same folder, or a listing of the folder meanwhile, never sees half a video.
        handle, partial = tempfile.mkstemp(prefix=".streamingt2v_sample_", suffix=".mp4", dir=folder)
        os.close(handle)
        write_evaluation_video(partial)
        os.replace(partial, path)
    except Exception as exc:  # noqa: BLE001 - the sample is a convenience, the nodes work without it
        logging.warning("StreamingT2V: could not write the sample video %s (%s); "
                        "evaluate_video.json needs a video of your own", path, exc)
        if partial and os.path.exists(partial):
            os.remove(partial)


_ensure_sample_video()

Series = io.Custom("STREAMINGT2V_SERIES")
"""A metric series: dict with ``metric``, ``name``, ``x`` (frame positions; i + 0.5 for pairs),
``values``, ``num_frames``, ``cut_frames`` and the report's other fields."""


# ---------------------------------------------------------------------------------------------
# Helpers shared by the three nodes
# ---------------------------------------------------------------------------------------------


def _plan_input() -> io.Combo.Input:
    return io.Combo.Input(
        "chunk_plan", options=list(PLAN_CHOICES), default="extension",
        tooltip="Whose chunk seams to mark on the plot: the extender's chunks (first 16 frames, then 8 new "
                "frames per chunk), the refiner's 24-frame windows overlapping by 8, or none.",
    )


def _prefix_input(default: str) -> io.String.Input:
    return io.String.Input("filename_prefix", default=default,
                           tooltip="Where the JSON report goes, relative to the output folder.")


def _progress(total: int):
    import comfy.model_management
    import comfy.utils

    bar = comfy.utils.ProgressBar(total)

    def update(done: int, _total: int) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar.update_absolute(done, total)

    return update


def _write_report(filename_prefix: str, report: dict[str, Any]) -> str:
    output_dir = folder_paths.get_output_directory()
    folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, output_dir)
    os.makedirs(folder, exist_ok=True)
    name = f"{filename}_{counter:05}_.json"
    with open(os.path.join(folder, name), "w", encoding="utf-8") as handle:
        json.dump(_json_safe(report), handle, indent=2, allow_nan=False)
    return os.path.join(subfolder, name)


def _json_safe(value: Any) -> Any:
    """Strict JSON: NaN/inf become null (the reports say which values are undefined)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _plot_image(array) -> torch.Tensor:
    return torch.from_numpy(array).float().div(255.0).unsqueeze(0)


PLOT_UI_KEY = "streamingt2v_plot"
"""UI output key of a metric node's plot. Not the host's ``images`` key on purpose: the host would
grow the node by a 220 px preview after every run and push it over its neighbours; our result
box (js/streamingt2v.js) shows the plot as a thumbnail of fixed height instead."""


def _result_ui(node_cls, plot: torch.Tensor, summary: str) -> dict:
    """What a metric node shows after a run: its summary text and its plot (saved to the temp
    folder the way the host's Preview Image saves one), both drawn in the node's result box."""
    saved = ui.PreviewImage(plot, cls=node_cls).as_dict()["images"]
    return {PLOT_UI_KEY: saved, **ui.PreviewText(summary).as_dict()}


def _series(metric: str, name: str, x: list[float], values: list[float], num_frames: int,
            cut_frames: list[int] | None = None, **extra: Any) -> dict[str, Any]:
    return {"metric": metric, "name": name, "x": x, "values": values, "num_frames": num_frames,
            "cut_frames": list(cut_frames or []), **extra}


def _device() -> torch.device:
    import comfy.model_management

    return comfy.model_management.get_torch_device()


_RAFT_CACHE: dict[tuple, torch.nn.Module] = {}
_CLIP_CACHE: dict[tuple, OpenClipBundle] = {}


def _cached(cache: dict, key: tuple, load):
    if key not in cache:
        cache.clear()  # keep one model of each kind: they are big and rarely alternate
        cache[key] = load()
    return cache[key]


def _file_key(path: str) -> tuple:
    return (path, os.path.getmtime(path), os.path.getsize(path))


# ---------------------------------------------------------------------------------------------
# SCuts
# ---------------------------------------------------------------------------------------------


class SCutsNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StreamingT2VSCuts",
            display_name="StreamingT2V SCuts",
            category="StreamingT2V/metrics",
            description="Scene cuts PySceneDetect's AdaptiveDetector finds with its default parameters (the paper's "
                        "SCuts; a consistent long video has none), with the per-frame content change plotted.",
            inputs=[
                io.Image.Input("images", tooltip="The video frames to evaluate."),
                io.Float.Input("fps", default=8.0, min=0.1, max=240.0, step=0.1,
                               tooltip="Frame rate of the video (for the detector's timecodes; its minimum scene "
                                       "length of 15 is counted in frames)."),
                _plan_input(),
                _prefix_input("StreamingT2V/metrics/scuts"),
            ],
            outputs=[
                io.Int.Output("scuts", display_name="scuts", tooltip="Number of scene cuts (SCuts)."),
                io.String.Output("cut_frames", display_name="cut_frames", tooltip="First frame of each new scene, comma separated."),
                Series.Output("series", display_name="series", tooltip="Per-frame content change (content_val) with the cuts."),
                io.Image.Output("plot", display_name="plot", tooltip="The series over time; red lines: cuts, grey: chunk seams."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images: torch.Tensor, fps: float, chunk_plan: str, filename_prefix: str) -> io.NodeOutput:
        images, input_notes = check_rgb_frames(images, "images", consequence="SCuts compares the colours of "
                                               "consecutive frames and cannot compare NaN pixels, so it measures "
                                               "nothing; drop or replace those frames")
        result = count_scene_cuts(images, fps=fps)
        _log_notes("SCuts", input_notes)
        _log_notes("SCuts", result.notes)
        num_frames = int(images.shape[0])
        marks = chunk_marks(chunk_plan, num_frames)
        plot = plot_series(result.content_val, title=f"SCuts = {result.num_cuts} (AdaptiveDetector content_val)",
                           y_label="content_val", num_frames=num_frames, cut_frames=result.cut_frames, marks=marks)
        report = {**result.to_report(), "num_frames": num_frames, "fps": fps, "chunk_plan": chunk_plan}
        path = _write_report(filename_prefix, report)
        series = _series("SCuts", "content_val", [float(i) for i in range(num_frames)], result.content_val,
                         num_frames, result.cut_frames, scuts=result.num_cuts)
        cuts_text = ", ".join(str(c) for c in result.cut_frames)
        summary = (f"SCuts: {result.num_cuts}" + (f" (at frames {cuts_text})" if cuts_text else "")
                   + "".join(f"\nnote (images): {n}" for n in result.notes)
                   + "".join(f"\nnote: {n}" for n in input_notes) + f"\nreport: {path}")
        plot_image = _plot_image(plot)
        return io.NodeOutput(result.num_cuts, cuts_text, series, plot_image, ui=_result_ui(cls, plot_image, summary))


# ---------------------------------------------------------------------------------------------
# MAWE
# ---------------------------------------------------------------------------------------------


class MAWENode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StreamingT2VMAWE",
            display_name="StreamingT2V MAWE",
            category="StreamingT2V/metrics",
            description="Motion-aware warp error as the official mawe.py computes it (forward warp, c = 9.5; lower "
                        "is better). RAFT-large from the models/raft folder at size 720 gives the paper's number; "
                        "without it OpenCV DIS flow is used, and the node says when a number is not comparable.",
            inputs=[
                io.Image.Input("images", tooltip="The video frames to evaluate (at least 2)."),
                io.Combo.Input("flow_backend", options=[AUTO, "raft", "dis"], default=AUTO,
                               tooltip="Optical flow: auto = RAFT-large when a weights file is selected or present "
                                       "in models/raft, else OpenCV DIS; raft = require RAFT; dis = always DIS."),
                io.Combo.Input("raft_weights", options=[NO_FILE] + _raft_files(),
                               default=NO_FILE,
                               tooltip="torchvision RAFT-large weights in models/raft "
                                       "(raft_large_C_T_SKHT_V2-ff5fadd5.pth, the official metric's weights). "
                                       "Only files holding exactly RAFT-large's tensors are listed."),
                io.Float.Input("coeff", default=DEFAULT_COEFF, min=0.01, max=1000.0, step=0.1,
                               tooltip="The c in W_t / (c * OF_t); the official default is 9.5."),
                io.Int.Input("size", default=FIRST_TRY_MAWE_SIZE, min=64, max=2048, step=8,
                             tooltip=f"Frames are resized to size x size first. {FIRST_TRY_MAWE_SIZE} (default) is "
                                     f"quick on any device; the paper's protocol is {DEFAULT_SIZE}, and only "
                                     f"RAFT-large at {DEFAULT_SIZE} gives numbers comparable to the paper."),
                _plan_input(),
                _prefix_input("StreamingT2V/metrics/mawe"),
            ],
            outputs=[
                io.Float.Output("mawe", display_name="mawe", tooltip="MAWE as the official code defines it: mean over pairs of "
                                                "W_t / (c * OF_t) (explodes on near-static pairs)."),
                io.Float.Output("mawe_robust", display_name="mawe_robust", tooltip="Robust variant (ours): mean(W_t) / (c * mean(OF_t)), the "
                                                       "ratio of means."),
                io.String.Output("flow_used", display_name="flow_used", tooltip="The flow backend that produced the numbers (raft_large "
                                                         "is comparable to the paper, opencv_dis_medium is not)."),
                Series.Output("series", display_name="series", tooltip="Per-pair W_t / (c * OF_t), with warp errors and motions."),
                io.Image.Output("plot", display_name="plot", tooltip="The per-pair series over time with chunk seams marked."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images: torch.Tensor, flow_backend: str, raft_weights: str, coeff: float, size: int,
                chunk_plan: str, filename_prefix: str) -> io.NodeOutput:
        images, input_notes = check_rgb_frames(
            images, "images", min_frames=2, min_frames_reason="MAWE compares pairs of consecutive frames",
            consequence="optical flow and warp errors of NaN pixels are undefined, so MAWE measures nothing; drop or "
                        "replace those frames")
        _log_notes("MAWE", input_notes)
        raft_path = cls._raft_path(flow_backend, raft_weights)
        device = _device()
        raft_model, fallback = cls._load_raft(flow_backend, raft_path)
        backend = make_flow_backend("raft" if raft_model is not None else "dis", raft_model=raft_model,
                                    device=device if raft_model is not None else "cpu")
        try:
            result = motion_aware_warp_error(images, backend, coeff=coeff, size=size,
                                             progress=_progress(int(images.shape[0]) - 1))
        finally:
            if raft_model is not None:
                raft_model.to("cpu")
        num_frames = int(images.shape[0])
        x = [i + 0.5 for i in range(num_frames - 1)]
        marks = chunk_marks(chunk_plan, num_frames)
        note = "" if result.comparable_to_paper else " - not comparable to the paper"
        plot = plot_series(result.ratios, x=x, num_frames=num_frames, marks=marks,
                           title=f"MAWE = {result.mawe:.3g} (robust {result.mawe_robust:.3g}), {result.backend}{note}",
                           y_label="W_t / (c OF_t)", x_label="frame (pair t, t+1 at t + 0.5)")
        flow_used = result.backend if fallback is None else f"{result.backend} (flow_backend auto fell back: {fallback})"
        report = {**result.to_report(), "num_frames": num_frames, "chunk_plan": chunk_plan,
                  "raft_weights": os.path.basename(raft_path) if raft_path else None, "flow_used": flow_used}
        path = _write_report(filename_prefix, report)
        series = _series("MAWE", "W_t / (c * OF_t)", x, result.ratios, num_frames,
                         warp_errors=result.warp_errors, motions=result.motions, backend=result.backend)
        _log_notes("MAWE", result.notes)
        summary = (f"MAWE (official, mean of ratios): {result.mawe:.4g}\n"
                   f"MAWE (robust, ratio of means): {result.mawe_robust:.4g}\n"
                   f"flow: {flow_used}" + ("" if result.comparable_to_paper else
                                           " (NOT comparable to the paper's RAFT-large numbers)")
                   + (f"\n{len(result.low_motion_pairs)} near-static pair(s)" if result.low_motion_pairs else "")
                   + "".join(f"\nnote (images): {n}" for n in result.notes)
                   + "".join(f"\nnote: {n}" for n in input_notes)
                   + f"\nreport: {path}")
        plot_image = _plot_image(plot)
        return io.NodeOutput(result.mawe, result.mawe_robust, flow_used, series, plot_image,
                             ui=_result_ui(cls, plot_image, summary))

    @staticmethod
    def _load_raft(flow_backend: str, raft_path: str | None) -> tuple[torch.nn.Module | None, str | None]:
        """RAFT-large from ``raft_path``, or ``(None, why)`` in ``auto`` mode when it cannot be used.

        ``auto`` promises a number with the best flow available: a file that will not load (damaged, not
        RAFT-large, refused by the safe loader) falls back to DIS and says so in ``flow_used`` and the log.
        ``raft`` promises RAFT: the same file is an error naming ``raft_weights``.
        """
        if raft_path is None:
            return None, _unusable_raft_files() if flow_backend == AUTO else None
        name = os.path.basename(raft_path)
        try:
            return _cached(_RAFT_CACHE, _file_key(raft_path), lambda: load_raft_large(raft_path, "cpu")), None
        except ValueError as err:
            reason = _raft_reason(err, raft_path)
            if flow_backend != AUTO:
                raise ValueError(f"raft_weights: {name!r} cannot be used: {reason}; pick another file, or "
                                 f"flow_backend 'dis'/'auto'") from None
            why = f"raft_weights {name!r} could not be loaded ({reason})"
            logging.warning("StreamingT2V MAWE: %s; using OpenCV DIS flow instead (not comparable to the paper)", why)
            return None, why

    @staticmethod
    def _raft_path(flow_backend: str, raft_weights: str) -> str | None:
        if flow_backend == "dis":
            return None
        if raft_weights != NO_FILE:
            return folder_paths.get_full_path_or_raise(RAFT_FOLDER, raft_weights)
        available = _raft_files()
        if available:
            return folder_paths.get_full_path_or_raise(RAFT_FOLDER, available[0])
        if flow_backend == "raft":
            raise ValueError("raft_weights: flow_backend is 'raft' but no RAFT-large weights file is selected or "
                             f"present in {folder_paths.get_folder_paths(RAFT_FOLDER)}; put torchvision's "
                             "raft_large_C_T_SKHT_V2-ff5fadd5.pth there, or use 'auto'/'dis'")
        return None


# ---------------------------------------------------------------------------------------------
# CLIP score
# ---------------------------------------------------------------------------------------------


def _candidates(folder: str) -> list[tuple[str, str]]:
    out = []
    for name in folder_paths.get_filename_list(folder):
        path = folder_paths.get_full_path(folder, name)
        if path is not None:
            out.append((name, path))
    return out


def _raft_files() -> list[str]:
    """Files in models/raft that hold torchvision's RAFT-large state dict (names read cheaply)."""
    return weight_files.usable_files(_candidates(RAFT_FOLDER), weight_files.is_raft_large_state_dict)


def _unusable_raft_files() -> str | None:
    """In ``auto`` mode without a usable RAFT file: the files in models/raft that are not one (None if none)."""
    names = [name for name, _ in _candidates(RAFT_FOLDER)]
    if not names:
        return None
    shown = ", ".join(repr(n) for n in names[:3]) + (", ..." if len(names) > 3 else "")
    why = f"models/raft holds no RAFT-large state dict ({shown} {'is' if len(names) == 1 else 'are'} not one)"
    logging.warning("StreamingT2V MAWE: %s; using OpenCV DIS flow (not comparable to the paper)", why)
    return why


def _raft_reason(err: Exception, path: str) -> str:
    """The loader's reason without its argument name and the full path (the node names the file itself)."""
    text = str(err)
    for prefix in ("weights_path: ",):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text.replace(f"from {path!r}: ", "").replace(f"{path!r} ", "the file ")


def _log_notes(metric: str, notes: list[str]) -> None:
    for note in notes:
        logging.info("StreamingT2V %s: %s", metric, note)


def _clip_files() -> list[str]:
    """Full open_clip ViT checkpoints (image and text towers) in models/streamingt2v_metrics, then
    in the host's text encoder folder; text-only encoders (SD2's) and other files are left out."""
    files: list[str] = []
    for folder in (CLIP_FOLDER, HOST_CLIP_FOLDER):
        for name in weight_files.usable_files(_candidates(folder), weight_files.is_open_clip_checkpoint):
            if name not in files:
                files.append(name)
    return files


def _clip_path(name: str) -> str:
    for folder in (CLIP_FOLDER, HOST_CLIP_FOLDER):
        path = folder_paths.get_full_path(folder, name)
        if path is not None:
            return path
    raise ValueError(f"clip_checkpoint: {name!r} not found in models/{CLIP_FOLDER} or models/clip")


class CLIPScoreNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StreamingT2VCLIPScore",
            display_name="StreamingT2V CLIP Score",
            category="StreamingT2V/metrics",
            description="Text-video alignment: mean over frames of 100 x cosine(text, frame) with an open_clip "
                        "model from a local checkpoint (the paper's CLIP score; OpenCLIP ViT-H-14 by default).",
            inputs=[
                io.Image.Input("images", tooltip="The video frames to evaluate."),
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="The text the video was generated from."),
                io.Combo.Input("clip_checkpoint", options=_clip_files(),
                               tooltip=f"A full open_clip checkpoint (image and text towers) in models/{CLIP_FOLDER} "
                                       "or models/text_encoders, e.g. open_clip_model.safetensors of "
                                       "laion/CLIP-ViT-H-14-laion2B-s32B-b79K. Only such files are listed (a "
                                       "text-only encoder cannot score images). ViT-H-14 needs about 4 GB "
                                       "(fp32), 16 frames per batch."),
                io.Combo.Input("architecture", options=[AUTO] + supported_architectures(), default=AUTO,
                               tooltip="open_clip architecture; auto reads it from the file (its shapes or its "
                                       "open_clip_config metadata)."),
                _plan_input(),
                _prefix_input("StreamingT2V/metrics/clip_score"),
            ],
            outputs=[
                io.Float.Output("clip_score", display_name="clip_score", tooltip="Mean over frames of 100 x cosine similarity."),
                Series.Output("series", display_name="series", tooltip="Per-frame 100 x cosine similarity."),
                io.Image.Output("plot", display_name="plot", tooltip="The per-frame score over time with chunk seams marked."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images: torch.Tensor, prompt: str, clip_checkpoint: str, architecture: str, chunk_plan: str,
                filename_prefix: str) -> io.NodeOutput:
        if not prompt.strip():
            raise ValueError("prompt: the CLIP score needs the text the video was generated from; got an empty prompt")
        images, input_notes = check_rgb_frames(images, "images", consequence="CLIP would embed NaN pixels into NaN "
                                               "and the mean score would be NaN; drop or replace those frames")
        _log_notes("CLIP score", input_notes)
        path = _clip_path(clip_checkpoint)
        bundle = _cached(_CLIP_CACHE, (*_file_key(path), architecture),
                         lambda: load_open_clip(path, architecture, device="cpu"))
        device = _device()
        try:
            result = clip_score(images, prompt, bundle, device=device, progress=_progress(int(images.shape[0])))
        except ValueError as err:
            text = str(err)
            if text.startswith("model: "):  # the model's embeddings came out NaN: the checkpoint input's problem
                raise ValueError(f"clip_checkpoint: {text[len('model: '):]}") from None
            raise
        finally:
            bundle.model.to("cpu")
        num_frames = int(images.shape[0])
        marks = chunk_marks(chunk_plan, num_frames)
        plot = plot_series(result.per_frame, num_frames=num_frames, marks=marks,
                           title=f"CLIP score = {result.score:.2f} ({result.architecture})", y_label="100 x cos")
        report = {**result.to_report(), "num_frames": num_frames, "chunk_plan": chunk_plan,
                  "other_matching_architectures": bundle.other_matches}
        report_path = _write_report(filename_prefix, report)
        series = _series("CLIP score", "100 x cos(text, frame)", [float(i) for i in range(num_frames)],
                         result.per_frame, num_frames, architecture=result.architecture)
        summary = (f"CLIP score: {result.score:.2f} ({result.architecture})"
                   + "".join(f"\nnote: {n}" for n in input_notes) + f"\nreport: {report_path}")
        plot_image = _plot_image(plot)
        return io.NodeOutput(result.score, series, plot_image, ui=_result_ui(cls, plot_image, summary))


NODES = [SCutsNode, MAWENode, CLIPScoreNode]
