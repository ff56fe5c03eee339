"""Randomized blending as the host's own context-window mechanism.

The host runs a long latent through a model in windows when ``model_options["context_handler"]``
holds a handler (``comfy/context_windows.py``): ``calc_cond_batch`` calls ``handler.execute``,
which evaluates the model on each window and fuses the window results into one whole-video
result. :class:`RandomizedBlendContextHandler` is such a handler whose windows are the refiner's
chunk plan (:func:`streamingt2v_core.sampling.plans.refiner_plan`) and whose fuse step is
:func:`streamingt2v_core.sampling.blending.fuse_windows` (randomized / linear / none), with fresh
offsets per solver step. Because it lives in ``model_options``, it works with any host sampler,
scheduler and video model whose latents are ``[B, C, T, H, W]`` (frames on dim 2).

What is fused: x0-predictions. The paper (and the official code) blends the x0-predictions of the
chunks. In the host, ``calc_cond_batch`` returns what ``BaseModel.apply_model`` returns, and that
is already ``model_sampling.calculate_denoised(sigma, output, x)``: the denoised x0 of every
window and every cond. So this handler fuses x0 directly; no conversion is needed, and the fused
x0 of the cond and uncond branches go on to CFG and to the solver as usual.

Why fusing x0 equals fusing the raw model outputs (eps / v / flow velocity) here: for a given
sigma every host parameterisation is affine, ``x0 = a(sigma) * x + b(sigma) * out``. All windows
of one step see the same sigma, and a frame shared by two windows is the same slice of the one
global ``x`` (windows are index views of ``x_in``), so on that frame ``a * x`` is identical for
both windows. Every fuse mode gives per-frame weights that sum to 1 (randomized and none pick
one window per frame; linear normalises its ramps), hence
``sum_i w_i x0_i = a x + b sum_i w_i out_i``: blending outputs and blending x0 are the same map.
The same argument shows that CFG (``u + s (c - u)``, per frame linear with weights summing to 1)
commutes with the fuse. It would fail only if windows saw different inputs for a shared frame
(e.g. per-window noise), which the shared global latent rules out.

The one non-linear step is the guidance rescale (0.2 in the refiner): the official code computes
the standard deviations per chunk, in v-space, over all elements of the chunk. The host's
``RescaleCFG`` would compute them over the whole video (and over the wrong axes for 5-D latents),
so :func:`windowed_guidance_rescale` does it per window on the windows' own predictions (kept by
the handler for that step) and then fuses the guided windows with the same offsets.

Shared noise: windows are slices of one whole-video latent, so the initial noise (one
``prepare_noise`` tensor over the whole latent) and the SDE noise of the solver (one Brownian
tree over the whole latent) are shared by construction; ``window_observer`` exposes what each
window sees (a test hook).

Several windows per model call (``max_batch``): the windows of one step are independent, so up to
``max_batch`` of them go through the model as one batch (stacked on the batch axis, the timestep
and the text conditioning repeated by the host as for any batch). A GPU with room for several
windows then does not idle between small calls. ``max_batch = 0`` picks the number from free
memory with the host's own rule (``memory_required(batch) * 1.5 < free memory``, as
``calc_cond_batch`` uses for cond/uncond) and our fitted memory model, at most
:data:`AUTO_MAX_BATCH`. Windows are batched only when nothing in the conditioning is per frame
(text models such as our refiner); per-frame conditioning (image-to-video concat latents,
ControlNet hints) runs one window per call. The memory estimate the host loads the model by
counts ``max_batch`` windows of ``chunk`` frames, never the whole video (the host's own context
windows count one window; ComfyUI issue #9574 is the same question).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import torch

import comfy.context_windows as cw
import comfy.model_management
import comfy.patcher_extension
from comfy_api.latest import io

from streamingt2v_core.sampling.blending import BLEND_MODES, OFFSET_VARIANTS, draw_blend_offsets, fuse_windows
from streamingt2v_core.sampling.plans import refiner_plan, window_overlaps

#: Frame axis of host video latents ``[B, C, T, H, W]``.
VIDEO_FRAME_DIM = 2
#: Most windows per model call that ``max_batch = 0`` (auto) picks.
AUTO_MAX_BATCH = 8

WindowObserver = Callable[[int, int, tuple[int, int], torch.Tensor, torch.Tensor], None]


def validate_window_settings(chunk: int, overlap: int, mode: str) -> None:
    """Raise ValueError naming the input when chunk/overlap/mode are not usable."""
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < chunk:
        raise ValueError(f"overlap must be an integer in [0, chunk - 1] = [0, {chunk - 1}], got {overlap!r} "
                         f"(overlap >= chunk would never advance through the video)")
    if mode not in BLEND_MODES:
        raise ValueError(f"blend_mode must be one of {BLEND_MODES}, got {mode!r}")
    if mode == "randomized" and overlap < 1:
        raise ValueError("overlap must be >= 1 for blend_mode 'randomized' (nothing to blend otherwise)")


def validate_max_batch(max_batch: int, input_name: str = "max_batch") -> None:
    """Raise ValueError naming the input unless ``max_batch`` is an int >= 0 (0 = automatic)."""
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 0:
        raise ValueError(f"{input_name} must be an integer >= 0 (windows per model call; 0 = as many as free "
                         f"memory allows), got {max_batch!r}")


def check_video_model(model, input_name: str = "model") -> None:
    """Raise ValueError unless the host MODEL works on video latents ``[B, C, T, H, W]``."""
    latent_format = model.get_model_object("latent_format")
    dims = getattr(latent_format, "latent_dimensions", 2)
    if dims != 3:
        raise ValueError(
            f"{input_name} must be a video model with latents [B, C, T, H, W] (latent_format with 3 "
            f"latent dimensions, e.g. our refiner UNet, Wan, HunyuanVideo, LTX-Video, Mochi, Cosmos); "
            f"got {type(latent_format).__name__} with {dims} latent dimensions (an image model?)")


@dataclass
class StepRecord:
    """Per-window predictions of one ``execute`` call, kept for the windowed guidance rescale."""

    x: torch.Tensor
    windows: list[tuple[int, int]]
    offsets: torch.Tensor | None
    predictions: list[list[torch.Tensor] | None]  # per cond: one x0 per window


def _check_concat_frames(concat, x_in: torch.Tensor, dim: int) -> None:
    """A latent concatenated to the model input (``c_concat``: image-to-video latents, Wan Fun-Control's control
    video) must have the video's frame count to be cut per window; say so instead of a shape error deep in the
    model."""
    if isinstance(concat, torch.Tensor) and concat.ndim == x_in.ndim and concat.size(dim) != x_in.size(dim):
        raise ValueError(
            f"positive/negative: the per-frame latent concatenated to the model input (c_concat, e.g. the control "
            f"video of WanFunControlToVideo) has {concat.size(dim)} latent frames, the video being sampled has "
            f"{x_in.size(dim)}; make the control video exactly as long as the video (for Wan: the node's length = "
            f"the video's frame count)")


# Per-frame model conditionings with more axes than the latent, and where their frame axis sits relative to the
# latent's: Wan VACE's ``vace_context`` is [B, N, 96, T, H, W] (N control videos stacked on axis 1 by the host's
# ``WAN21.extra_conds``), one axis more than the latent [B, 16, T, H, W]. The host's own handler (0.3.75) slices
# only tensors whose frame count sits at the latent's frame axis, so it passes the whole video's VACE frames to
# every window and the model fails on the size mismatch. ``vace_strength`` is per control video, not per frame.
_EXTRA_FRAME_AXES = {"vace_context": 1}


def _frame_axis(key, t, x_in: torch.Tensor, dim: int) -> int | None:
    """The axis to cut per window if ``t`` is per-frame conditioning of ``x_in``, else None."""
    if not isinstance(t, torch.Tensor):
        return None
    extra = _EXTRA_FRAME_AXES.get(key, 0)
    axis = dim + extra
    if t.ndim == x_in.ndim + extra and t.size(axis) == x_in.size(dim):
        return axis
    return None


class RandomizedBlendContextHandler(cw.IndexListContextHandler):
    """Host context handler: refiner chunk plan + x0 fuse with randomized/linear/none blending.

    Args:
        chunk: window length in latent frames (24 in the refiner).
        overlap: overlap of neighbouring windows (8); the last window is aligned to the end of
            the video and may overlap more (see ``refiner_plan``), no frame is dropped.
        mode: ``"randomized"`` (paper), ``"linear"`` (crossfade) or ``"none"`` (overwrite).
        seed: seed of the blend offsets; offsets are drawn fresh per solver step from
            ``(seed, step)``, so a run is reproducible and steps differ.
        offset_variant: ``"code"`` (r in 0..O-1, official code) or ``"paper"`` (0..O).
        dim: frame axis of the latent (2 for host video latents).
        max_batch: windows per model call; 0 = as many as free memory allows (at most
            :data:`AUTO_MAX_BATCH`). Results equal one window per call.
    """

    def __init__(self, chunk: int = 24, overlap: int = 8, mode: str = "randomized", seed: int = 0,
                 offset_variant: str = "code", dim: int = VIDEO_FRAME_DIM, max_batch: int = 1) -> None:
        validate_window_settings(chunk, overlap, mode)
        validate_max_batch(max_batch)
        if offset_variant not in OFFSET_VARIANTS:
            raise ValueError(f"offset_variant must be one of {OFFSET_VARIANTS}, got {offset_variant!r}")
        super().__init__(
            context_schedule=cw.ContextSchedule("streamingt2v_refiner_plan", self._schedule),
            fuse_method=cw.ContextFuseMethod(f"streamingt2v_{mode}", cw.create_weights_flat),
            context_length=chunk, context_overlap=overlap, dim=dim)
        self.chunk, self.overlap, self.mode = chunk, overlap, mode
        self.seed, self.offset_variant = int(seed), offset_variant
        self.max_batch = max_batch
        #: Windows per model call of the last step (for progress messages, tests and benchmarks).
        self.last_windows_per_call = 1
        #: Test hook: called as ``observer(step, window_index, (start, end), sub_x, sigma)``.
        self.window_observer: WindowObserver | None = None
        #: Keep each step's per-window predictions for :func:`windowed_guidance_rescale`.
        self.keep_window_predictions = False
        self.last_record: StepRecord | None = None
        self._calls = 0

    # ------------------------------------------------------------------ windows and offsets
    def _schedule(self, num_frames: int, handler, model_options) -> list[list[int]]:
        return [list(range(s, e)) for s, e in refiner_plan(num_frames, self.chunk, self.overlap)]

    def windows_for(self, num_frames: int) -> list[tuple[int, int]]:
        """The ``[start, end)`` windows used for a latent of ``num_frames`` frames."""
        return refiner_plan(num_frames, self.chunk, self.overlap)

    def blend_offsets(self, windows: list[tuple[int, int]], step: int) -> torch.Tensor | None:
        """Offsets of one solver step (None unless mode is randomized); deterministic in (seed, step)."""
        if self.mode != "randomized" or len(windows) < 2:
            return None if self.mode != "randomized" else torch.zeros(0, dtype=torch.int64)
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + step) % (2 ** 63))
        return draw_blend_offsets(len(windows) - 1, window_overlaps(windows), generator, self.offset_variant)

    def _step_index(self, timestep: torch.Tensor, model_options: dict) -> int:
        sigmas = model_options.get("transformer_options", {}).get("sample_sigmas")
        if sigmas is not None:
            match = torch.nonzero(torch.isclose(sigmas.to(timestep.device), timestep.reshape(-1)[0], rtol=1e-4))
            if match.numel():
                return int(match[0].item())
        # Outside a host sampler (no sample_sigmas): count calls instead.
        self._calls += 1
        return self._calls - 1

    # ------------------------------------------------------------------ host interface
    def should_use_context(self, model, conds, x_in, timestep, model_options) -> bool:
        return x_in.ndim == 5 and x_in.size(self.dim) > self.chunk

    def get_resized_cond(self, cond_in, x_in, window, device=None):
        """Slice per-frame conditioning to the window; leave everything else as is.

        Stricter than the host's rule (any tensor whose size on ``dim`` equals the frame count):
        only tensors shaped like the latent (same number of dims, same frame count on ``dim``)
        are sliced, so a text embedding of 1024 features is never mistaken for 1024 frames.
        Wan VACE's ``vace_context`` has one axis more and is cut on its own frame axis.
        """
        if cond_in is None:
            return None

        def is_per_frame(t, key=None) -> bool:
            return _frame_axis(key, t, x_in, self.dim) is not None

        start, length = window.index_list[0], len(window.index_list)  # our windows are contiguous

        def cut(t: torch.Tensor, key=None) -> torch.Tensor:
            t = t.narrow(_frame_axis(key, t, x_in, self.dim), start, length)
            return t.to(device) if device is not None else t

        resized = []
        for actual in cond_in:
            new = actual.copy()
            for key, item in actual.items():
                if isinstance(item, torch.Tensor):
                    new[key] = cut(item) if is_per_frame(item) else (item.to(device) if device is not None else item)
                elif key == "control":
                    new[key] = self.prepare_control_objects(item, device)
                elif isinstance(item, dict):
                    sub = item.copy()
                    for k, v in item.items():
                        if is_per_frame(v, k):
                            sub[k] = cut(v, k)
                        elif is_per_frame(getattr(v, "cond", None), k):
                            sub[k] = v._copy_with(cut(v.cond, k))
                        elif k == "c_concat":
                            _check_concat_frames(getattr(v, "cond", v), x_in, self.dim)
                    new[key] = sub
            resized.append(new)
        return resized

    def conds_are_shared(self, conds, x_in) -> bool:
        """True when no conditioning is per frame (and there is no ControlNet): every window then
        gets the same conditioning, so windows can share a model call."""

        def per_frame(t, key=None) -> bool:
            return _frame_axis(key, getattr(t, "cond", t), x_in, self.dim) is not None

        for cond in conds:
            for entry in cond or []:
                for key, item in entry.items():
                    if key == "control" or per_frame(item):
                        return False
                    if isinstance(item, dict) and any(per_frame(v, k) for k, v in item.items()):
                        return False
        return True

    def windows_per_call(self, model, conds, x_in, num_windows: int) -> int:
        """How many windows go into one model call this step (1 when they cannot share a call)."""
        if num_windows < 2 or self.max_batch == 1 or not self.conds_are_shared(conds, x_in):
            return 1
        if self.max_batch > 1:
            return min(self.max_batch, num_windows)
        # Automatic: the host's own batching rule on free memory, with the model's estimate of a
        # call of k windows for every cond that runs (cond and uncond share a call when they fit).
        memory_required = getattr(model, "memory_required", None)
        if not callable(memory_required):
            return 1
        shape = list(x_in.shape)
        shape[self.dim] = self.chunk
        branches = sum(1 for c in conds if c is not None)
        free = comfy.model_management.get_free_memory(x_in.device)
        best = 1
        for k in range(2, min(AUTO_MAX_BATCH, num_windows) + 1):
            if memory_required([shape[0] * k * max(1, branches)] + shape[1:]) * 1.5 < free:
                best = k
            else:
                break
        return best

    def execute(self, calc_cond_batch, model, conds, x_in, timestep, model_options):
        step = self._step_index(timestep, model_options)
        self._step = step
        num_frames = x_in.size(self.dim)
        windows = self.windows_for(num_frames)
        offsets = self.blend_offsets(windows, step)
        context_windows = [cw.IndexListContextWindow(list(range(s, e)), dim=self.dim) for s, e in windows]
        transformer_options = model_options.setdefault("transformer_options", {})
        for callback in comfy.patcher_extension.get_all_callbacks(cw.IndexListCallbacks.EXECUTE_START, self.callbacks):
            callback(self, model, x_in, conds, timestep, model_options)
        per_cond: list[list[torch.Tensor]] = [[] for _ in conds]
        per_call = self.windows_per_call(model, conds, x_in, len(windows))
        self.last_windows_per_call = per_call
        try:
            for first in range(0, len(windows), per_call):
                group = list(range(first, min(first + per_call, len(windows))))
                # Cancel between calls, not only between solver steps.
                comfy.model_management.throw_exception_if_processing_interrupted()
                sub_xs = []
                for index in group:
                    span, window = windows[index], context_windows[index]
                    for callback in comfy.patcher_extension.get_all_callbacks(cw.IndexListCallbacks.EVALUATE_CONTEXT_WINDOWS, self.callbacks):
                        callback(self, model, x_in, conds, timestep, model_options, index, window, model_options, None, None)
                    sub_x = x_in.narrow(self.dim, span[0], span[1] - span[0])  # a view: shared frames are shared
                    if self.window_observer is not None:
                        self.window_observer(step, index, span, sub_x, timestep)
                    sub_xs.append(sub_x)
                transformer_options["context_window"] = context_windows[group[0]]
                if len(group) > 1:
                    transformer_options["streamingt2v_context_windows"] = [context_windows[i] for i in group]
                # Conditioning is the same for every window of a shared call (conds_are_shared).
                sub_conds = [self.get_resized_cond(cond, x_in, context_windows[group[0]]) for cond in conds]
                # The timestep is per batch item ([B]), not per frame: pass it whole (once per window).
                sub_x = sub_xs[0] if len(group) == 1 else torch.cat(sub_xs, dim=0)
                sub_t = timestep if len(group) == 1 else timestep.repeat(len(group))
                outputs = calc_cond_batch(model, sub_conds, sub_x, sub_t, model_options)
                for i, out in enumerate(outputs):
                    per_cond[i].extend(out.chunk(len(group), dim=0) if len(group) > 1 else [out])
            fused = [fuse_windows(per_cond[i], windows, num_frames, self.mode, offsets, frame_dim=self.dim)
                     for i in range(len(conds))]
            self.last_record = (StepRecord(x_in, windows, offsets, [p if c is not None else None for p, c in zip(per_cond, conds)])
                                if self.keep_window_predictions else None)
            return fused
        finally:
            transformer_options.pop("context_window", None)
            transformer_options.pop("streamingt2v_context_windows", None)
            for callback in comfy.patcher_extension.get_all_callbacks(cw.IndexListCallbacks.EXECUTE_CLEANUP, self.callbacks):
                callback(self, model, x_in, conds, timestep, model_options)

    def take_record(self, x: torch.Tensor) -> StepRecord | None:
        """The per-window predictions of the last call if they were computed for ``x`` (then forgotten)."""
        record, self.last_record = self.last_record, None
        if record is not None and record.x is x:
            return record
        return None


def _rescaled_guidance_x0(x: torch.Tensor, sigma: torch.Tensor, cond_x0: torch.Tensor, uncond_x0: torch.Tensor,
                          cond_scale: float, rescale: float) -> torch.Tensor:
    """CFG with guidance rescale, computed in v-space over all elements of one window.

    v is taken in the host's parameterisation ``x0 = x / (s^2 + 1) - v s / sqrt(s^2 + 1)``
    (exact for a v-prediction model such as our refiner; the same convention as the host's
    ``RescaleCFG``). The official refiner: ``out = u + g (c - u)``, then
    ``out *= rescale * std(c) / std(out) + (1 - rescale)``.
    """
    s = sigma.reshape((-1,) + (1,) * (x.ndim - 1)).to(x.dtype)
    root = (s * s + 1.0).sqrt()
    xs = x / (s * s + 1.0)
    v_c = (xs - cond_x0) * root / s
    v_u = (xs - uncond_x0) * root / s
    v_cfg = v_u + cond_scale * (v_c - v_u)
    dims = tuple(range(1, x.ndim))
    ratio = v_c.std(dim=dims, keepdim=True) / v_cfg.std(dim=dims, keepdim=True).clamp_min(1e-12)
    v_out = v_cfg * (rescale * ratio + (1.0 - rescale))
    return xs - v_out * s / root


def windowed_guidance_rescale(handler: RandomizedBlendContextHandler, rescale: float) -> Callable[[dict], torch.Tensor]:
    """A host ``sampler_cfg_function`` doing CFG + guidance rescale per window, then the fuse.

    Uses the per-window x0 that ``handler`` kept for the current model call; when the video was
    short enough to run in one window there is no record and the whole video is one window.
    """
    if not (isinstance(rescale, (int, float)) and 0.0 <= rescale <= 1.0):
        raise ValueError(f"guidance_rescale must be in [0, 1], got {rescale!r}")
    handler.keep_window_predictions = True

    def cfg_function(args: dict) -> torch.Tensor:
        x, sigma, scale = args["input"], args["sigma"], args["cond_scale"]
        cond_x0, uncond_x0 = args["cond_denoised"], args["uncond_denoised"]
        record = handler.take_record(x)
        if uncond_x0 is None or math.isclose(scale, 1.0):
            return x - cond_x0
        if record is None or record.predictions[1] is None:
            windows, offsets = [(0, x.size(handler.dim))], None
            conds, unconds = [cond_x0], [uncond_x0]
        else:
            windows, offsets = record.windows, record.offsets
            conds, unconds = record.predictions[0], record.predictions[1]
        guided = [
            _rescaled_guidance_x0(x.narrow(handler.dim, s, e - s), sigma, c, u, scale, rescale)
            for (s, e), c, u in zip(windows, conds, unconds)
        ]
        mode = handler.mode if len(windows) > 1 else "none"
        fused = fuse_windows(guided, windows, x.size(handler.dim), mode, offsets, frame_dim=handler.dim)
        return x - fused

    return cfg_function


PREPARE_SAMPLING_KEY = "StreamingT2V_blend_windows_prepare_sampling"


def _prepare_sampling_for_windows(executor, model, noise_shape, *args, **kwargs):
    """Host ``PREPARE_SAMPLING`` wrapper: the memory the host reserves (and loads the model by) is
    that of one model call, ``max_batch`` windows of ``chunk`` frames, not of the whole video."""
    handler = (kwargs.get("model_options") or {}).get("context_handler")
    if hasattr(handler, "windows_for") and hasattr(handler, "max_batch") and len(noise_shape) > handler.dim:
        frames = int(noise_shape[handler.dim])
        if frames > handler.chunk:
            noise_shape = list(noise_shape)
            # automatic batching (0) is decided at run time from what is free once the model is
            # loaded; the load itself is sized for one window per call
            per_call = handler.max_batch if handler.max_batch > 0 else 1
            noise_shape[0] = int(noise_shape[0]) * min(per_call, len(handler.windows_for(frames)))
            noise_shape[handler.dim] = handler.chunk
    return executor(model, noise_shape, *args, **kwargs)


def apply_randomized_blending(model, chunk: int, overlap: int, mode: str, seed: int,
                              guidance_rescale: float = 0.0, offset_variant: str = "code", max_batch: int = 1):
    """Clone a host MODEL and install the handler (and the per-window rescale if > 0).

    Returns ``(model_clone, handler)``.
    """
    check_video_model(model)
    handler = RandomizedBlendContextHandler(chunk, overlap, mode, seed, offset_variant, max_batch=max_batch)
    model = model.clone()
    model.model_options["context_handler"] = handler
    # Memory estimates of the host then count one model call (max_batch windows), not the whole video.
    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREPARE_SAMPLING, PREPARE_SAMPLING_KEY,
                               _prepare_sampling_for_windows)
    if guidance_rescale > 0.0:
        model.set_model_sampler_cfg_function(windowed_guidance_rescale(handler, guidance_rescale))
    logging.debug("StreamingT2V blending windows: chunk %d overlap %d mode %s max_batch %d", chunk, overlap, mode,
                  max_batch)
    return model, handler


class RandomizedBlendingWindows(io.ComfyNode):
    """MODEL -> MODEL: StreamingT2V's randomized blending as host context windows."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StreamingT2VRandomizedBlendingWindows",
            display_name="StreamingT2V Randomized Blending Windows",
            # A model patch for the host's KSampler, like the host's own context-window nodes.
            category="StreamingT2V/model_patches",
            description=(
                "Run a video model over a long latent in overlapping windows (the refiner's chunk plan) and merge "
                "the windows' x0-predictions at every sampler step with StreamingT2V's randomized blending. Use it "
                "with the plain KSampler on any video model with [B, C, T, H, W] latents; frames are latent frames."),
            inputs=[
                io.Model.Input("model", tooltip="A video model (latents [B, C, T, H, W]); it is cloned, not changed."),
                io.Int.Input("chunk", default=24, min=2, max=4096,
                             tooltip="Window length in latent frames (the refiner uses 24)."),
                io.Int.Input("overlap", default=8, min=0, max=4095,
                             tooltip="Overlap of neighbouring windows in latent frames (the refiner uses 8); must be < chunk."),
                io.Combo.Input("blend_mode", options=list(BLEND_MODES), default="randomized",
                               tooltip="randomized: a random cut inside each overlap, redrawn every step (paper); "
                                       "linear: crossfade over the overlap; none: later windows overwrite (baseline)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the random cut positions (independent of the sampler's noise seed). A new node "
                                     "starts with 'control after generate' set to fixed, so queueing again after "
                                     "a long run does not redo the whole refinement; randomize makes every queue "
                                     "differ."),
                io.Float.Input("guidance_rescale", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Guidance rescale computed per window as in the official refiner (0.2 there); "
                                       "0 leaves CFG to the sampler."),
                io.Int.Input("max_batch", default=0, min=0, max=64,
                             tooltip="Windows per model call: 0 = as many as free GPU memory allows (up to 8); 1 = one "
                                     "window per call (least memory). The result is the same either way."),
            ],
            outputs=[io.Model.Output(display_name="model",
                                     tooltip="The model with randomized-blending windows applied during sampling.")],
        )

    @classmethod
    def execute(cls, model, chunk: int, overlap: int, blend_mode: str, seed: int, guidance_rescale: float,
                max_batch: int = 0) -> io.NodeOutput:
        validate_max_batch(max_batch)
        model, _ = apply_randomized_blending(model, chunk, overlap, blend_mode, seed, guidance_rescale,
                                             max_batch=max_batch)
        return io.NodeOutput(model)


NODES = [RandomizedBlendingWindows]
