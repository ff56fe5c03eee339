"""Per-frame ControlNet on our UNets, through the host's own ControlNet path.

The artist loads a ControlNet with the host's ``Load ControlNet Model`` and applies it to our conditioning with the
host's ``Apply ControlNet`` (``ControlNetApplyAdvanced``; the old ``ControlNetApply`` works too). The ControlNet
object then travels in the CONDITIONING under ``"control"`` as for any SD model. What is different for us:

* **5-D latents.** Our UNets take ``[B, C, T, H, W]``; the host's ControlNet (``comfy/controlnet.py``) expects
  ``[B, C, H, W]``. An ``OUTER_SAMPLE`` wrapper registered on every MODEL of this pack (:func:`register`) replaces,
  in the sampler's own copy of the conds and before the host loads anything, every ControlNet chain by a
  :class:`PerFrameControl`. The host's ``calc_cond_batch`` calls its ``get_control`` with the 5-D batch; it folds
  the frames into the batch (frame index fastest, as the core UNet does), hands each frame its own hint frame to
  the host's ``ControlNet.get_control`` (so the host's hint scaling, strength, start/end percent and merging all
  apply) and returns residuals for every frame. :meth:`StreamingT2VUNetModel._apply_model` turns them into the core
  model's :class:`~streamingt2v_core.models.unet3d.ControlResiduals`: one per skip connection plus the mid block.
* **Frame alignment.** Hint frame ``i`` steers video frame ``i``. A sampling run covers video frames
  ``first_frame + j`` (``j`` = latent frame; under context windows the window's own frame indices): the Initial
  Chunk frames 0..15, each extension chunk the 16 frames of its range in the chunk plan (the 8 re-generated
  conditioning frames included), see :class:`ChunkControls`.
* **A control video shorter than the video: stop.** Frames past its end are not controlled (their residual is zero,
  and a chunk with no controlled frame runs without the ControlNet). One single image is the host's own rule for
  one hint image: it steers every frame.
* **Order with the CAM.** Both add to the skip connections; the CAM mergers come first, the ControlNet residuals are
  added to the merged skips (see ``ConditionedUNet3D``).
* **What is refused** (before sampling, naming the input): ControlNets of another family (SD 1.x: 768-wide text
  context; SDXL; the DiT families), T2I-Adapters (they add inside the down path), Control-LoRAs (built from the SD
  UNet's own weights), anything whose residuals do not match our UNet's skip connections.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

import comfy.cldm.cldm
import comfy.controlnet
import comfy.hooks
import comfy.patcher_extension

from streamingt2v_core.models.unet3d import ControlResiduals

__all__ = [
    "CONTROL_KEYS",
    "WRAPPER_KEY",
    "PerFrameControl",
    "ChunkControls",
    "control_links",
    "check_control",
    "check_conditioning_controls",
    "conditioning_controls",
    "controls_of",
    "with_controls_of",
    "adapt_conds",
    "register",
    "core_residuals",
    "hint_frames",
    "frames_controlled_by",
    "unet_config_of",
]

logger = logging.getLogger(__name__)

#: CONDITIONING keys the host's ControlNet nodes set.
CONTROL_KEYS = ("control", "control_apply_to_uncond")
#: Key of our OUTER_SAMPLE wrapper on the ModelPatcher.
WRAPPER_KEY = "streamingt2v_per_frame_controlnet"

_FITS = ("Only SD 2.x ControlNets fit (1024-wide OpenCLIP-H text context and the SD 2.x UNet layout, e.g. "
         "control_v11p_sd21_canny / _depth / _openpose): load one with 'Load ControlNet Model' and apply it with "
         "'Apply ControlNet'")


# --------------------------------------------------------------------------------------------------------------------
# Chains and refusals
# --------------------------------------------------------------------------------------------------------------------

def control_links(control: Any) -> list[Any]:
    """The links of a host ControlNet chain (``previous_controlnet``), first applied first."""
    links = []
    seen = set()
    while control is not None and id(control) not in seen:
        seen.add(id(control))
        links.append(control)
        control = getattr(control, "previous_controlnet", None)
    return links[::-1]


def hint_frames(link: Any) -> int:
    """Frames of a link's control video (``cond_hint_original`` is ``[N, C, H, W]``)."""
    hint = getattr(link, "cond_hint_original", None)
    return int(hint.shape[0]) if torch.is_tensor(hint) and hint.ndim == 4 else 0


def unet_config_of(model: Any) -> Any:
    """The core ``UNet3DConfig`` of one of our MODELs (ModelPatcher or BaseModel), None for other models."""
    inner = getattr(model, "model", model)
    config = getattr(getattr(inner, "model_config", None), "core_config", None)
    config = getattr(config, "unet", config)
    return config if hasattr(config, "skip_channels") else None


_DIT_FAMILIES = (("flux", "Flux"), ("qwen", "Qwen-Image"), ("hydit", "Hunyuan-DiT"), ("dit_embedder", "SD 3.5"),
                 ("mmdit", "SD3"), ("cascade", "Stable Cascade"))


def _cldm_shape(cm: Any) -> dict[str, Any]:
    context = next((m.in_features for name, m in cm.named_modules() if name.endswith("attn2.to_k")), None)
    return {
        "residuals": [int(zc[0].out_channels) for zc in cm.zero_convs],
        "mid": int(cm.middle_block_out[0].out_channels),
        "in_channels": int(cm.input_blocks[0][0].in_channels),
        "context": context,
        "adm": getattr(cm, "num_classes", None) is not None,
        "union": getattr(cm, "control_add_embedding", None) is not None,
    }


def _refusal(link: Any, unet_config: Any) -> str | None:
    """Why a chain link cannot steer our UNet (None when it can)."""
    if getattr(link, "streamingt2v_per_frame", False):
        return None
    if isinstance(link, comfy.controlnet.T2IAdapter):
        if "cascade" in type(getattr(link, "t2i_model", None)).__module__:
            return "is a Stable Cascade ControlNet (it steers Stable Cascade's stage C, not an SD UNet)"
        return ("is a T2I-Adapter: it adds its features inside the down path of an SD UNet ('input' residuals), "
                "which the ModelScope UNet3D does not take")
    if isinstance(link, comfy.controlnet.ControlLora):
        return ("is a Control-LoRA: the host builds it from an SD UNet's own weights and config, which our "
                "ModelScope UNet3D does not have")
    if not isinstance(link, comfy.controlnet.ControlNet):
        return f"is a {type(link).__name__}, a control type this pack cannot run per frame"
    cm = getattr(link, "control_model", None)
    if not isinstance(cm, comfy.cldm.cldm.ControlNet):
        module = type(cm).__module__
        family = next((name for key, name in _DIT_FAMILIES if key in module), type(cm).__name__)
        return f"is a {family} ControlNet (it steers a transformer of that family, not an SD UNet)"
    if getattr(link, "cond_hint_original", None) is None:
        return "has no control frames (apply it with 'Apply ControlNet' and an image or a video)"
    shape = _cldm_shape(cm)
    skips = list(unet_config.skip_channels()) if unet_config is not None else None
    if shape["union"]:
        return "is a union ControlNet (ControlNet++/ProMax, SDXL)"
    if shape["adm"] or shape["context"] == 2048:
        return f"is an SDXL ControlNet ({len(shape['residuals'])} residuals, {shape['context']}-wide text context)"
    if shape["context"] == 768:
        return "is an SD 1.x ControlNet (768-wide CLIP-L text context)"
    if unet_config is None:
        return None
    wanted_context = unet_config.cross_attention_dim
    if (shape["residuals"] != skips or shape["mid"] != unet_config.block_out_channels[-1]
            or shape["in_channels"] != unet_config.in_channels
            or (shape["context"] is not None and shape["context"] != wanted_context)):
        return (f"does not fit this UNet: it gives {len(shape['residuals'])} residuals of {shape['residuals']} "
                f"channels + a mid of {shape['mid']} (latent channels {shape['in_channels']}, context "
                f"{shape['context']}); this UNet has {len(skips)} skip connections of {skips} channels + a mid of "
                f"{unet_config.block_out_channels[-1]} (latent channels {unet_config.in_channels}, context "
                f"{wanted_context})")
    return None


def check_control(control: Any, unet_config: Any, input_name: str) -> None:
    """Raise ``ValueError`` naming ``input_name`` when a ControlNet chain cannot steer a UNet of ``unet_config``."""
    links = control_links(control)
    for i, link in enumerate(links):
        reason = _refusal(link, unet_config)
        if reason is not None:
            which = "the ControlNet" if len(links) == 1 else f"ControlNet {i + 1} of the {len(links)} chained"
            raise ValueError(f"{input_name}: {which} applied to it {reason}. {_FITS}.")


def conditioning_controls(conditioning: list | None) -> list[Any]:
    """The distinct ControlNet chains of a CONDITIONING (in order)."""
    out, seen = [], set()
    for entry in conditioning or []:
        control = entry[1].get("control") if len(entry) > 1 and isinstance(entry[1], dict) else None
        if control is not None and id(control) not in seen:
            seen.add(id(control))
            out.append(control)
    return out


def check_conditioning_controls(model: Any, **conditionings: list | None) -> bool:
    """Refuse, before any work, ControlNets our MODEL cannot run (each error names the conditioning input).

    Returns True when any conditioning carries a ControlNet.
    """
    config = unet_config_of(model)
    found = False
    for name, conditioning in conditionings.items():
        for control in conditioning_controls(conditioning):
            check_control(control, config, name)
            found = True
    return found


def controls_of(conditioning: list | None) -> dict[str, Any]:
    """The ControlNet entries (``control``, ``control_apply_to_uncond``) of a CONDITIONING's first entry."""
    for entry in conditioning or []:
        values = {k: entry[1][k] for k in CONTROL_KEYS if k in entry[1]}
        if values.get("control") is not None:
            return values
    return {}


def with_controls_of(source: list, conditioning: list) -> list:
    """A copy of ``conditioning`` carrying ``source``'s ControlNet (prompt travel keeps the control video)."""
    values = controls_of(source)
    if not values:
        return conditioning
    return [[t, {**d, **values}] for t, d in conditioning]


# --------------------------------------------------------------------------------------------------------------------
# The per-frame adapter
# --------------------------------------------------------------------------------------------------------------------

def _fold(t: torch.Tensor, frames: int) -> torch.Tensor:
    return t.repeat_interleave(frames, dim=0)


def _expand(residual: torch.Tensor | None, batch: int, total: int, positions: list[int]) -> torch.Tensor | None:
    """``[batch * n, ...]`` residuals of the controlled frames -> ``[batch * total, ...]`` with zeros elsewhere."""
    if residual is None or len(positions) == total:
        return residual
    full = residual.new_zeros((batch, total) + tuple(residual.shape[1:]))
    full[:, positions] = residual.reshape((batch, len(positions)) + tuple(residual.shape[1:]))
    return full.reshape((batch * total,) + tuple(residual.shape[1:]))


def _add(a: dict | None, b: dict | None) -> dict | None:
    if a is None:
        return b
    if b is None:
        return a
    out = {}
    for key in set(a) | set(b):
        la, lb = list(a.get(key, [])), list(b.get(key, []))
        n = max(len(la), len(lb))
        la += [None] * (n - len(la))
        lb += [None] * (n - len(lb))
        out[key] = [x if y is None else y if x is None else x + y for x, y in zip(la, lb)]
    return out


class PerFrameControl(comfy.controlnet.ControlBase):
    """A host ControlNet chain run on every frame of a 5-D video batch (see the module docstring).

    It holds a copy of each link of the chain (the user's objects are never changed; the copies share the loaded
    control model) and calls each link's own ``get_control`` on the frames that link's control video covers, with
    the matching hint frames. Video frame of latent frame ``j``: ``first_frame + j``, or ``first_frame +
    window.index_list[j]`` when the host runs context windows.
    """

    streamingt2v_per_frame = True

    def __init__(self, control: Any, first_frame: int = 0) -> None:
        super().__init__()
        self.source = control
        self.first_frame = int(first_frame)
        self.links = [link.copy() for link in control_links(control)]
        self.originals = [link.cond_hint_original for link in self.links]
        self._selection: list[tuple | None] = [None] * len(self.links)
        hooks = [link.extra_hooks for link in self.links if link.extra_hooks is not None]
        self.extra_hooks = comfy.hooks.HookGroup.combine_all_hooks(hooks) if hooks else None

    # -- host plumbing: the links do the work ---------------------------------------------------------------------
    def pre_run(self, model, percent_to_timestep_function):
        for link in self.links:
            link.pre_run(model, percent_to_timestep_function)

    def cleanup(self):
        for link in self.links:
            link.cleanup()
        self._selection = [None] * len(self.links)

    def get_models(self):
        out = []
        for link in self.links:
            out += link.get_models()
        return out

    def get_extra_hooks(self):
        return [self.extra_hooks] if self.extra_hooks is not None else []

    def inference_memory_requirements(self, dtype):
        return sum(link.inference_memory_requirements(dtype) for link in self.links)

    def copy(self):
        return PerFrameControl(self.source, self.first_frame)

    # -- frames ---------------------------------------------------------------------------------------------------
    def video_frames(self, count: int, transformer_options: dict | None = None) -> list[int]:
        """Video frame of each of ``count`` latent frames of one call."""
        window = (transformer_options or {}).get("context_window")
        index_list = list(getattr(window, "index_list", []) or [])
        if len(index_list) != count:
            index_list = list(range(count))
        return [self.first_frame + int(i) for i in index_list]

    @staticmethod
    def link_selection(frames_in_hint: int, video_frames: list[int]) -> tuple[list[int], list[int] | None]:
        """(latent positions a link controls, hint frame of each; None = the one hint image for all)."""
        if frames_in_hint == 1:
            return list(range(len(video_frames))), None
        positions = [j for j, g in enumerate(video_frames) if 0 <= g < frames_in_hint]
        return positions, [video_frames[j] for j in positions]

    def get_control(self, x_noisy, t, cond, batched_number, transformer_options):
        if x_noisy.ndim != 5:
            raise ValueError(f"control: the per-frame ControlNet adapter expects 5-D video latents [B, C, T, H, W], "
                             f"got {tuple(x_noisy.shape)}")
        batch, frames = x_noisy.shape[0], x_noisy.shape[2]
        video = self.video_frames(frames, transformer_options)
        out = None
        for k, link in enumerate(self.links):
            original = self.originals[k]
            positions, hint_index = self.link_selection(int(original.shape[0]), video)
            if not positions:
                continue
            key = None if hint_index is None else tuple(hint_index)
            if self._selection[k] != ("set", key):
                link.cond_hint_original = original if hint_index is None else original[hint_index]
                link.cond_hint = None  # the host re-scales the hint for the new frames
                self._selection[k] = ("set", key)
            n = len(positions)
            x = (x_noisy[:, :, positions] if n != frames else x_noisy).movedim(2, 1)
            x = x.reshape((batch * n,) + tuple(x.shape[2:]))  # [B*n, C, H, W], frame index fastest
            folded = dict(cond)
            for name in ("c_crossattn", "crossattn_controlnet", *getattr(link, "extra_conds", [])):
                value = cond.get(name)
                if torch.is_tensor(value) and value.shape[0] == batch:
                    folded[name] = _fold(value, n)
            residuals = link.get_control(x, _fold(t, n), folded, batched_number, transformer_options)
            if residuals is None:  # outside this link's start/end percent
                continue
            residuals = {name: [_expand(r, batch, frames, positions) for r in values]
                         for name, values in residuals.items()}
            out = _add(out, residuals)
        return out

    def controlled_frames(self, first: int, count: int) -> list[int]:
        """Video frames in ``[first, first + count)`` that any link of the chain controls."""
        return frames_controlled_by(self.source, first, count)


def frames_controlled_by(control: Any, first: int, count: int) -> list[int]:
    """Video frames in ``[first, first + count)`` that any link of a ControlNet chain controls (the stop rule)."""
    frames = set()
    video = list(range(first, first + count))
    for link in control_links(control):
        n = hint_frames(link)
        if n:
            positions, _ = PerFrameControl.link_selection(n, video)
            frames.update(video[j] for j in positions)
    return sorted(frames)


# --------------------------------------------------------------------------------------------------------------------
# The wrapper on our MODELs, and the residuals for the core model
# --------------------------------------------------------------------------------------------------------------------

def adapt_conds(conds: dict[str, list[dict]], unet_config: Any, first_frame: int = 0) -> int:
    """Replace every host ControlNet chain in a sampler's conds by a :class:`PerFrameControl` (one per chain, shared
    by the conds that carry it, so cond and uncond still batch together). Refuses what cannot run. Returns how many
    chains were adapted."""
    adapted: dict[int, PerFrameControl] = {}
    for name, cond_list in conds.items():
        for entry in cond_list or []:
            control = entry.get("control") if isinstance(entry, dict) else None
            if control is None or getattr(control, "streamingt2v_per_frame", False):
                continue
            if id(control) not in adapted:
                check_control(control, unet_config, name)
                adapted[id(control)] = PerFrameControl(control, first_frame)
            entry["control"] = adapted[id(control)]
    return len(adapted)


def _outer_sample(executor, *args, **kwargs):
    """Host ``OUTER_SAMPLE`` wrapper: runs before the host loads models or calls ``pre_run`` on the controls."""
    guider = executor.class_obj
    conds = getattr(guider, "conds", None)
    if conds:
        adapt_conds(conds, unet_config_of(guider.model_patcher))
    return executor(*args, **kwargs)


def register(model_patcher: Any) -> Any:
    """Install the per-frame ControlNet wrapper on one of our ModelPatchers (kept by ``clone()``)."""
    model_patcher.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY)
    model_patcher.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, _outer_sample)
    return model_patcher


def core_residuals(control: dict | None, device: torch.device, dtype: torch.dtype) -> ControlResiduals | None:
    """The host's control dict (``output``: one per skip, ``middle``: the mid block) as the core's residuals."""
    if not control:
        return None
    if any(r is not None for r in control.get("input", [])):
        raise ValueError("control: 'input' residuals (a T2I-Adapter) cannot be added to the StreamingT2V UNets; "
                         + _FITS)
    skips = [None if r is None else r.to(device=device, dtype=dtype) for r in control.get("output", [])]
    middle = [r for r in control.get("middle", []) if r is not None]
    if not skips and not middle:
        return None
    mid = None
    for r in middle:
        mid = r.to(device=device, dtype=dtype) if mid is None else mid + r.to(device=device, dtype=dtype)
    return ControlResiduals(skips=skips, mid=mid)


# --------------------------------------------------------------------------------------------------------------------
# Along the chunk plan (the Extend node)
# --------------------------------------------------------------------------------------------------------------------

def _frame_ranges(frames: list[int]) -> str:
    if not frames:
        return "none"
    parts, start, prev = [], frames[0], frames[0]
    for f in frames[1:] + [None]:
        if f is None or f != prev + 1:
            parts.append(f"{start}-{prev}" if prev != start else f"{start}")
            if f is not None:
                start = f
        if f is not None:
            prev = f
    return ", ".join(parts)


@dataclass
class ChunkControls:
    """The ControlNet of each extension chunk: chunk ``k`` samples video frames ``ranges[k]`` (16 frames, the 8
    re-generated conditioning frames first) and is steered by the hint frames of exactly that range."""

    ranges: list[tuple[int, int]]

    @classmethod
    def for_plan(cls, plan: Any, chunk_frames: int = 16) -> "ChunkControls":
        ranges = []
        for spec in plan.chunks:
            start = spec.cond_range[0] if spec.index > 0 else 0
            length = chunk_frames if spec.index > 0 else spec.new_range[1]
            ranges.append((start, start + length))
        return cls(ranges)

    def conditioning(self, index: int, positive: list, negative: list) -> tuple[list, list]:
        """Chunk ``index``'s positive/negative: each chain replaced by its per-frame adapter at the chunk's first
        frame, shared by positive and negative; a chain controlling none of the chunk's frames is left out."""
        start, end = self.ranges[index]
        adapters: dict[int, PerFrameControl | None] = {}

        def convert(conditioning: list) -> list:
            out = []
            for t, d in conditioning:
                control = d.get("control")
                if control is not None and not getattr(control, "streamingt2v_per_frame", False):
                    if id(control) not in adapters:
                        steered = frames_controlled_by(control, start, end - start)
                        adapters[id(control)] = PerFrameControl(control, start) if steered else None
                    d = dict(d)
                    if adapters[id(control)] is None:  # past the end of the control video: no ControlNet at all
                        for key in CONTROL_KEYS:
                            d.pop(key, None)
                    else:
                        d["control"] = adapters[id(control)]
                out.append([t, d])
            return out

        return convert(positive), convert(negative)

    def controlled_frames(self, index: int, positive: list, negative: list) -> list[int]:
        start, end = self.ranges[index]
        frames = set()
        for control in conditioning_controls(positive) + conditioning_controls(negative):
            frames.update(frames_controlled_by(control, start, end - start))
        return sorted(frames)

    def digest_parts(self, index: int, positive: list, negative: list) -> list:
        """What chunk ``index`` depends on through its ControlNets: each chain (positive, then negative): per link
        its type, strength, start/end percent and settings, a fingerprint of the control model's weights, and the
        hint frames of this chunk's range (with their positions)."""
        from .extend_digests import weights_fingerprint

        start, end = self.ranges[index]
        video = list(range(start, end))
        parts = []
        for side, conditioning in (("positive", positive), ("negative", negative)):
            for control in conditioning_controls(conditioning):
                chain = [side]
                for link in control_links(control):
                    original = getattr(link, "cond_hint_original", None)
                    n = int(original.shape[0]) if torch.is_tensor(original) else 0
                    positions, hint_index = PerFrameControl.link_selection(n, video) if n else ([], [])
                    hint = original if hint_index is None else (original[hint_index] if hint_index else None)
                    chain.append({
                        "type": type(link).__name__,
                        "strength": float(getattr(link, "strength", 1.0)),
                        "percent": [float(p) for p in getattr(link, "timestep_percent_range", (0.0, 1.0))],
                        "strength_type": str(getattr(link, "strength_type", "")),
                        "pooling": bool(getattr(link, "global_average_pooling", False)),
                        "upscale": str(getattr(link, "upscale_algorithm", "")),
                        "model": weights_fingerprint(getattr(link, "control_model", None)),
                        "positions": positions,
                        "hint": hint.to("cpu", torch.float32) if hint is not None else None,
                    })
                parts.append(chain)
        return parts

    def summary(self, positives: list[list], negative: list, total_frames: int) -> str:
        """One info line: which video frames the ControlNet steers while the extension chunks are sampled."""
        controlled, chains, lengths = set(), 0, set()
        for index in range(1, len(self.ranges)):
            positive = positives[min(index, len(positives) - 1)]
            controlled.update(self.controlled_frames(index, positive, negative))
        for conditioning in (*positives, negative):
            for control in conditioning_controls(conditioning):
                links = control_links(control)
                chains = max(chains, len(links))
                lengths.update(hint_frames(link) for link in links)
        first_end = self.ranges[0][1] if self.ranges else 0
        new_frames = set(range(first_end, total_frames))
        videos = ", ".join("1 image (steers every frame)" if n == 1 else f"{n} frames" for n in sorted(lengths))
        line = (f"ControlNet ({chains} in the chain; control video {videos}): steers frames "
                f"{_frame_ranges(sorted(f for f in controlled if f < total_frames))} while the chunks are sampled "
                f"(each chunk's 16 frames, its 8 re-generated conditioning frames included)")
        free = sorted(new_frames - controlled)
        if free:
            line += f"; new frames {_frame_ranges(free)} are not controlled (past the end of the control video)"
        return line + f"; the first chunk (frames 0-{first_end - 1}) is taken as given"
