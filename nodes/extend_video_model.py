"""StreamingT2V Extend (video model): the StreamingT2V extension recipe, chunk by chunk, with a HOST video model.

Short-term memory: each chunk is conditioned on the last ``context_frames`` frames of the video; long-term memory:
the anchor image (the VACE reference image). How a chunk takes them depends on the model (``method``, see
:mod:`.video_continuation`): ``vace`` for Wan VACE models (the host's own ``WanVaceToVideo``), ``inpaint`` for any
host model with ``[B, C, T, H, W]`` latents (the context latents held by the host sampler's ``noise_mask``).

Everything else is Extend's own machinery (:class:`.extend_run.ExtensionRun` with the chunk and context lengths of
this node): the run store (resume bit for bit after a crash or restart, tamper detection, ``chunk_seeds``,
``regenerate_from``, ``run_name``, Load Run), chunk previews, ``color_match``, ``prompt_schedule``,
``frames_output`` and the NaN watch. A chunk's digest covers the model and its patches (LoRA) without hashing all
weights (:func:`.extend_digests.host_model_fingerprint`), the VAE, the conditioning, the method, the lengths, the
context frames, the seed, the sampler settings, the anchor, the chunk's control frames and ``vace_strength``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

import comfy.model_management
import comfy.samplers
import comfy.utils
from comfy_api.latest import io

from streamingt2v_core.color import COLOR_MATCH_MODES, lab_statistics
from streamingt2v_core.runs import memory as run_memory
from streamingt2v_core.runs.memory import float_video_bytes, format_bytes, uint8_video_bytes
from streamingt2v_core.sampling.plans import ExtensionPlan, extension_plan
from streamingt2v_core.video import frames_to_uint8

from . import video_continuation as vc
from .extend import (AUTO_RUN, CHUNK_CACHE, LAST_FRAMES, TAIL_FRAMES, WHOLE_VIDEO, _info_text, encode_text,
                     parse_chunk_seeds, parse_prompt_schedule, positive_text, scheduled_prompt_index)
from .extend_digests import (DIGEST_VERSION, conditioning_digest, digest, host_model_fingerprint, run_identity,
                             vae_fingerprint)
from .extend_run import ExtensionJob, ExtensionRun
from .runs import open_run
from .validation import check_extend_inputs, check_image_batch, check_prompt_schedule, check_sampled_latent

__all__ = ["VideoModelJob", "sample_video_model_chunk", "ExtendVideoModelNode", "NODES"]

logger = logging.getLogger(__name__)

NODE_NAME = "StreamingT2V Extend (video model)"


@dataclass
class VideoModelJob(ExtensionJob):
    """An :class:`~.extend_run.ExtensionJob` for a host video model (no APM embeddings: the anchor is an image)."""

    method: str = "inpaint"
    info: vc.VideoModel | None = None
    #: vace: the reference image ``[1, H, W, 3]`` at the working size.
    anchor: torch.Tensor | None = None
    #: vace: the control video ``[n, H, W, 3]`` at the working size, frame i steers output frame i.
    control: torch.Tensor | None = None
    vace_strength: float = vc.DEFAULT_VACE_STRENGTH
    plan: ExtensionPlan | None = None

    @property
    def base_digest(self) -> str:
        if self._base is None:
            self._base = digest(DIGEST_VERSION, "video-model-v1", host_model_fingerprint(self.model),
                                vae_fingerprint(self.vae), conditioning_digest(self.negative))
        return self._base

    def control_frames(self, index: int) -> torch.Tensor | None:
        """The control frames of chunk ``index``'s new frames (its own range of the output video), or None."""
        if self.control is None:
            return None
        start = self.plan.chunks[index].new_range[0]
        return self.control[start:start + self.new_frames]

    def extra_settings(self, index: int) -> tuple[dict[str, Any], dict[str, Any]]:
        readable = {"method": self.method, "chunk_frames": int(self.chunk_frames),
                    "context_frames": int(self.cond_frames)}
        hidden: dict[str, Any] = {}
        if self.method == "vace":
            readable["vace_strength"] = float(self.vace_strength)
            hidden["anchor"] = digest(frames_to_uint8(self.anchor)) if self.anchor is not None else None
            control = self.control_frames(index)
            hidden["control"] = digest(frames_to_uint8(control)) if control is not None else None
        return readable, hidden


def sample_video_model_chunk(job: VideoModelJob, index: int, cond: torch.Tensor, seed: int,
                             callback) -> torch.Tensor:
    """One chunk through the host: ``[chunk_frames, H, W, 3]`` float32 (CPU); frames ``0..context-1`` are the
    decoded context (``color_match`` overlap) or ``cond`` itself, the rest the new frames (decoded from the same
    latent either way, so they are the same bits)."""
    positive, negative = job.positive_for(index), job.negative
    noise_mask = None
    if job.method == "vace":
        positive, negative, latent, trim = vc.vace_chunk(positive, negative, job.vae, cond, job.chunk_frames,
                                                         job.vace_strength, job.control_frames(index), job.anchor)
    else:
        latent, noise_mask = vc.inpaint_chunk(job.vae, cond, job.chunk_frames, job.info)
        trim = 0
    samples = vc.sample_latent(job.model, positive, negative, latent, seed, job.steps, job.cfg, job.sampler_name,
                               job.scheduler, callback, noise_mask=noise_mask)
    check_sampled_latent(job.model, samples)
    samples = samples[:, :, trim:]  # the reference image's latent frames, as the host's TrimVideoLatent
    frames = vc.decode_chunk(job.vae, samples)
    if frames.shape[0] != job.chunk_frames:
        raise ValueError(f"vae: decoded {frames.shape[0]} frames from the chunk latent, expected {job.chunk_frames}")
    if job.decode_cond_frames:
        return frames
    return torch.cat([cond.to(torch.float32), frames[job.cond_frames:]])


def _working(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Frames at the working size as the host's VACE nodes resize (bilinear, centre crop)."""
    frames = frames[..., :3].to("cpu", torch.float32)
    if tuple(frames.shape[1:3]) == (height, width):
        return frames
    return comfy.utils.common_upscale(frames.movedim(-1, 1), width, height, "bilinear", "center").movedim(1, -1)


class ExtendVideoModelNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StreamingT2VExtendVideoModel",
            display_name=NODE_NAME,
            category="StreamingT2V/sampling",
            description="Grows a video chunk by chunk with a host video model (Wan VACE, Wan, HunyuanVideo, "
                        "LTX-Video, ...): each chunk continues the last context frames (and, with VACE, keeps the "
                        "anchor's look); every chunk goes to the run store as it finishes.",
            inputs=[
                io.Model.Input("model", tooltip="A host video model (UNETLoader): Wan 2.1/2.2 T2V/I2V/VACE, "
                                                "HunyuanVideo, LTX-Video, Cosmos, Mochi ..."),
                io.Vae.Input("vae", tooltip="The model's video VAE (e.g. wan_2.1_vae.safetensors)."),
                io.Conditioning.Input("positive", tooltip="Prompt (CLIPTextEncode with the model's text encoder)."),
                io.Conditioning.Input("negative", tooltip="Negative prompt."),
                io.Image.Input("first_chunk", tooltip="The video so far: any IMAGE batch (a host sampler's decoded "
                                                      "output, a loaded video); its size is the working size."),
                io.Int.Input("total_frames", default=161, min=1, max=1000000,
                             tooltip="Frames of the whole video (the first chunk included)."),
                io.Int.Input("chunk_frames", default=81, min=2, max=4096,
                             tooltip="Pixel frames per chunk, context included; must fit the VAE's temporal "
                                     "stride: 1 + 4k for Wan and HunyuanVideo, 1 + 8k for LTX-Video."),
                io.Int.Input("context_frames", default=17, min=1, max=4096,
                             tooltip="The last frames of the video each chunk continues (short-term memory); "
                                     "fits the stride too and is shorter than chunk_frames."),
                io.Combo.Input("method", options=list(vc.METHODS), default="auto",
                               tooltip="auto: vace for a Wan VACE model, else inpaint. vace: context frames as "
                                       "known VACE control frames, the anchor as reference image. inpaint: context "
                                       "latents held by the sampler's noise mask (any video model)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Base seed; chunk i gets a seed derived from it and i (see chunk_seeds). Keep "
                                     "it fixed: queuing again with the same seed resumes the run from the store."),
                io.Int.Input("steps", default=20, min=1, max=1000, tooltip="Sampling steps per chunk."),
                io.Float.Input("cfg", default=6.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="uni_pc",
                               tooltip="Host sampler."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="simple",
                               tooltip="Host scheduler."),
                io.Image.Input("anchor", optional=True,
                               tooltip="vace: the reference image every chunk keeps the look of (long-term "
                                       "memory); default frame 0 of first_chunk. inpaint takes none."),
                io.Image.Input("control_video", optional=True,
                               tooltip="vace only: pose/depth/edges over the whole output video; each chunk's new "
                                       "frames are steered by the control frames of their own range."),
                io.Float.Input("vace_strength", default=vc.DEFAULT_VACE_STRENGTH, min=0.0, max=1000.0, step=0.01,
                               optional=True, tooltip="vace only: WanVaceToVideo's strength."),
                io.Combo.Input("color_match", options=list(COLOR_MATCH_MODES), default="off", optional=True,
                               tooltip="Colour-drift correction of each new chunk before it is stored. overlap: "
                                       "undo the shift the chunk makes to its decoded context frames. anchor: "
                                       "match the first chunk's colour statistics. Changing it samples again."),
                io.Clip.Input("clip", optional=True, tooltip="Text encoder for prompt_schedule."),
                io.String.Input("prompt_schedule", multiline=True, default="", optional=True,
                                tooltip="Prompt travel: 'frame: prompt' entries (new lines or '|'); a chunk uses "
                                        "the entry with the largest frame <= its first new frame."),
                io.String.Input("run_name", default=AUTO_RUN, optional=True,
                                tooltip="The run folder; 'auto': the run of this same first chunk, else a new one."),
                io.String.Input("chunk_seeds", multiline=True, default="", optional=True,
                                tooltip="Re-roll or pin chunks: 'chunk: seed' entries, e.g. '3: 12345'; later "
                                        "chunks are made again (their context changed)."),
                io.Int.Input("regenerate_from", default=0, min=0, max=100000, optional=True,
                             tooltip="Keep chunks 1..N-1 as the run stores them; make chunks from N on with the "
                                     "current settings. 0: off."),
                io.Combo.Input("frames_output", options=[WHOLE_VIDEO, LAST_FRAMES], default=WHOLE_VIDEO,
                               optional=True,
                               tooltip="'whole video' in RAM (refused before sampling if it would not fit), or the "
                                       "last 16 frames (the video stays in the run store: StreamingT2V Load Run)."),
            ],
            outputs=[
                io.Image.Output("frames", display_name="frames",
                                tooltip="The whole video, the first chunk's frames first and unchanged (or the "
                                        "last 16 frames, see frames_output)."),
                io.String.Output("info", display_name="info",
                                 tooltip="The run and each chunk: frames, seed, sampled or reused; notes."),
                io.String.Output("run", display_name="run", tooltip="The run's name, for StreamingT2V Load Run."),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, model, vae, positive, negative, first_chunk, total_frames: int, chunk_frames: int,
                context_frames: int, method: str, seed: int, steps: int, cfg: float, sampler_name: str,
                scheduler: str, anchor=None, control_video=None, vace_strength: float = vc.DEFAULT_VACE_STRENGTH,
                color_match: str = "off", clip=None, prompt_schedule: str = "", run_name: str = AUTO_RUN,
                chunk_seeds: str = "", regenerate_from: int = 0,
                frames_output: str = WHOLE_VIDEO) -> io.NodeOutput:
        # -- every check before any work ----------------------------------------------------------------------
        info = vc.video_model(model, vae)
        method = vc.resolve_method(method, info)
        if method != "vace":
            if control_video is not None:
                raise ValueError(f"control_video: VACE only; model is {info.family} (method {method}); disconnect "
                                 f"it or use a Wan VACE model")
            if float(vace_strength) != vc.DEFAULT_VACE_STRENGTH:
                raise ValueError(f"vace_strength: VACE only; model is {info.family} (method {method}); leave it at "
                                 f"{vc.DEFAULT_VACE_STRENGTH}")
            if anchor is not None:
                raise ValueError(f"anchor: method {method} has no reference-image input, so the anchor would do "
                                 f"nothing; disconnect it (or use a Wan VACE model)")
        if color_match not in COLOR_MATCH_MODES:
            raise ValueError(f"color_match: must be one of {', '.join(COLOR_MATCH_MODES)}, got {color_match!r}")
        for name, conditioning in (("positive", positive), ("negative", negative)):
            # A host ControlNet would see the whole-video hint against every chunk, and its frames would not be in
            # the chunk's digest: per-chunk control is the control_video input (VACE).
            if any(isinstance(c, (list, tuple)) and len(c) > 1 and isinstance(c[1], dict) and "control" in c[1]
                   for c in conditioning or []):
                raise ValueError(f"{name}: holds a ControlNet (Apply ControlNet), which this node does not slice per "
                                 f"chunk; steer the chunks with control_video and a Wan VACE model instead")
        vc.check_lengths(chunk_frames, context_frames, info)
        if first_chunk is None or not torch.is_tensor(first_chunk) or first_chunk.ndim != 4:
            raise ValueError("first_chunk: expected an IMAGE batch [T, H, W, 3]")
        n0 = int(first_chunk.shape[0])
        if n0 < context_frames:
            raise ValueError(f"first_chunk: has {n0} frames, fewer than context_frames ({context_frames}) that the "
                             f"next chunk continues")
        if total_frames < n0:
            raise ValueError(f"total_frames: must be >= the first chunk's {n0} frames, got {total_frames}")
        height, width = int(first_chunk.shape[1]), int(first_chunk.shape[2])
        vc.check_frame_size(height, width, info)
        first_chunk, anchor, input_notes = check_extend_inputs(first_chunk, anchor, positive, negative, vae)
        if control_video is not None:
            control_video = check_image_batch(control_video, "control_video",
                                              consequence="each chunk's new frames would be steered by it")
        schedule = parse_prompt_schedule(prompt_schedule or "")
        if schedule and clip is None:
            raise ValueError("clip: prompt_schedule needs a CLIP to encode its prompts; connect the CLIPLoader")
        plan = extension_plan(total_frames, first_chunk=n0, chunk=chunk_frames, cond_frames=context_frames)
        input_notes += check_prompt_schedule(schedule, [c.new_range[0] for c in plan.chunks[1:]], total_frames)
        seeds = parse_chunk_seeds(chunk_seeds or "")
        beyond = sorted(i for i in seeds if i >= plan.num_chunks)
        if beyond:
            raise ValueError(f"chunk_seeds: chunk {beyond[0]} is beyond the last chunk ({plan.num_chunks - 1}) of "
                             f"{total_frames} frames")
        whole = frames_output != LAST_FRAMES
        if whole:
            needed = float_video_bytes(total_frames, height, width) + uint8_video_bytes(total_frames, height, width)
            available = run_memory.available_ram_bytes()
            if not run_memory.fits_in_ram(needed, available):
                raise ValueError(
                    f"total_frames: {total_frames} frames at {width}x{height} need {format_bytes(needed)} of RAM for "
                    f"the frames output and the chunks, more than the {format_bytes(available)} available; set "
                    f"frames_output to '{LAST_FRAMES}' and load the run with 'StreamingT2V Load Run'")

        # -- the run ----------------------------------------------------------------------------------------------
        notes = list(input_notes)
        first = first_chunk[..., :3].to("cpu", torch.float32)
        text = positive_text(cls.hidden.prompt if cls.hidden else None, cls.hidden.unique_id if cls.hidden else None)
        identity = run_identity(frames_to_uint8(first))
        hint = text or (schedule[0][1] if schedule else "") or "run"
        base = {"prompt": text, "width": width, "height": height, "first_chunk_frames": n0, "created_by": NODE_NAME}
        run = open_run(run_name, identity, hint, base, [height, width, 3])

        anchor_image = control = None
        if method == "vace":
            anchor_image = _working(first[:1] if anchor is None else anchor[:1], height, width)
            if control_video is not None:
                control = _working(control_video, height, width)
                if control.shape[0] < total_frames:
                    notes.append(f"control_video: {control.shape[0]} frames for {total_frames}; the frames after "
                                 f"it are made without control (grey, as WanVaceToVideo pads)")
        chunk_positives, chunk_prompts = None, None
        if schedule:
            # As Extend: only the entries some sampled chunk uses are encoded, each once (chunk 0 is the given
            # first chunk); a schedule of thousands of entries over a short video encodes a few.
            encoded: dict[int, list] = {}
            chunk_positives, chunk_prompts = [], []
            for spec in plan.chunks:
                i = scheduled_prompt_index(schedule, spec.new_range[0])
                if i is not None and spec.index > 0 and i not in encoded:
                    encoded[i] = encode_text(clip, schedule[i][1])
                chunk_positives.append(positive if i is None or spec.index == 0 else encoded[i])
                chunk_prompts.append(text if i is None else schedule[i][1])
            used = "; ".join(f"{schedule[i][0]}: {schedule[i][1]}" for i in sorted(encoded)) or "no entry is used"
            notes.append(f"prompt schedule: {used}"
                         + (f" (the entries chunks use, of {len(schedule)})" if len(encoded) < len(schedule) else ""))
        notes.append(f"method {method} ({info.family}): chunks of {chunk_frames} frames continuing the last "
                     f"{context_frames}, {chunk_frames - context_frames} new frames each")
        job = VideoModelJob(model=model, vae=vae, positive=positive, negative=negative, anchor_embeds=None,
                            grey_embeds=None, steps=steps, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler,
                            width=width, height=height, chunk_positives=chunk_positives, chunk_prompts=chunk_prompts,
                            prompt=text, color_match=color_match,
                            color_reference=lab_statistics(first, "first_chunk") if color_match == "anchor" else None,
                            chunk_frames=chunk_frames, cond_frames=context_frames, method=method, info=info,
                            anchor=anchor_image, control=control, vace_strength=float(vace_strength), plan=plan)
        keep = None if whole else max(TAIL_FRAMES, context_frames)
        extension = ExtensionRun(job, sample_video_model_chunk, run=run, cache=CHUNK_CACHE if whole else None,
                                 regenerate_from=regenerate_from, chunk_seeds=seeds, keep_frames=keep)
        result = extension.execute(first, total_frames, seed)
        if not whole:
            result.frames = result.frames[-TAIL_FRAMES:]
        text_out = _info_text(result, total_frames, width, height, n0, notes)
        reports = [r for r in result.reports if r.index > 0]
        ui = {"streamingt2v_run": [{"name": run.name, "folder": run.folder, "sources": [r.source for r in reports],
                                    "seeds": [str(r.seed) for r in reports], "ref": result.run_ref}]}
        frames = result.frames.to(comfy.model_management.intermediate_device())
        # '<run>@<timeline id>', as Extend: a Load Run wired to it loads exactly this video (issue 23)
        return io.NodeOutput(frames, text_out, result.run_ref or run.name, ui=ui)


NODES: list[type[io.ComfyNode]] = [ExtendVideoModelNode]
