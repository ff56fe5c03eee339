"""StreamingT2V Extend: the autoregressive extension (CAM + APM), chunk by chunk, through the host's sampler.

Each new chunk is one host sampling run (``comfy.sample.sample``) of the extender MODEL on a 16-frame latent,
conditioned on the last 8 frames of the video so far (the CAM frames) and on frame 0 of the first chunk (the APM
anchor); frames 8..15 of the decoded chunk are appended (the official ``VideoLDM.predict_step``). The CAM frames
and the anchor's CLIP embedding travel in the CONDITIONING dicts (see :mod:`.comfy_model`), the unconditional
branch gets the embedding of a grey image, as the official code.

Long runs survive anything (see :mod:`.extend_run` and :mod:`streamingt2v_core.runs`): every finished chunk is
written at once to a run folder in the output directory (``output/StreamingT2V/runs/<run_name>/``), verified by its
SHA-256 whenever it is read back, and reused whenever the digest of everything it depends on matches
(:mod:`.extend_digests`); re-queuing the same graph, after an interruption, a crash or a restart, samples only the
missing chunks, bit for bit the same. ``chunk_seeds`` re-rolls single chunks, ``regenerate_from`` keeps the stored
chunks before N exactly as they are while the node's new settings apply from N on. Finished frames stay on the CPU
as uint8; the float32 IMAGE is built once at the end (or not at all: ``frames_output`` "last 16 frames").

Prompt travel: besides the positive conditioning, a schedule ``0: a cat walks | 120: the cat sleeps`` (lines or
``|``-separated, frame indices of the output video) is encoded with the optional CLIP and used chunk by chunk (the
prompt whose frame index is the largest one <= the chunk's first new frame); the anchor stays the same.

Defaults follow the official extender: 50 steps, CFG 7.5, DDIM with eta = 1 and "leading" timesteps 981, 961, ...,
1. The host's ``ddpm`` sampler with its ``ddim_uniform`` scheduler is exactly that: ``ddim_uniform`` gives the
leading timesteps 981..1 (offset 1) and ``ddpm`` takes the DDPM posterior step between them, which is what DDIM with
eta = 1 is (the host's ``ddim`` sampler is eta = 0). The only difference: the official last step lands on t = 0's
noise level (abar_0 = 0.99915), the host's on the clean prediction.
"""
from __future__ import annotations

import logging
import re
import weakref
from collections import OrderedDict
from typing import Any

import torch

import comfy.model_management
import comfy.samplers
from comfy_api.latest import io

from streamingt2v_core.color import COLOR_MATCH_MODES, lab_statistics
from streamingt2v_core.runs import ChunkCache
from streamingt2v_core.runs import memory as run_memory
from streamingt2v_core.runs.memory import float_video_bytes, format_bytes, uint8_video_bytes
from streamingt2v_core.sampling.extension import chunk_seed
from streamingt2v_core.sampling.plans import extension_plan
from streamingt2v_core.video import frames_to_uint8, resize_frames

from .comfy_model import KIND_EXTENDER, extender_config, require_model_kind, set_extender_conditioning
from .controlnet import ChunkControls, check_conditioning_controls, with_controls_of
from .extend_digests import digest, model_fingerprint, run_identity
from .extend_run import CHUNK_FRAMES, COND_FRAMES, ExtensionJob, ExtensionResult, ExtensionRun
from .initial_chunk import VAE_SCALE, decode_video_latent, sample_video_latent
from .runs import open_run
from .validation import (check_anchor_embeddings, check_extend_inputs, check_prompt_schedule, check_sampled_latent,
                         long_prompt_note)

__all__ = [
    "parse_prompt_schedule",
    "parse_chunk_seeds",
    "chunk_seed",
    "ChunkCache",
    "CHUNK_CACHE",
    "model_fingerprint",
    "run_extension",
    "ExtendNode",
    "NODES",
]

logger = logging.getLogger(__name__)

MIN_FIRST_CHUNK = COND_FRAMES
AUTO_RUN = "auto"
WHOLE_VIDEO = "whole video"
LAST_FRAMES = "last 16 frames (the video stays in the run store)"
TAIL_FRAMES = 16

#: The in-memory fast path in front of the run store (process-wide).
CHUNK_CACHE = ChunkCache()


# --------------------------------------------------------------------------------------------------------------------
# Prompt travel
# --------------------------------------------------------------------------------------------------------------------

_ENTRY = re.compile(r"^\s*(\d+)\s*:\s*(.*?)\s*$", re.S)


def parse_prompt_schedule(text: str) -> list[tuple[int, str]]:
    """Parse ``"0: a cat walks | 120: the cat sleeps"`` (or one entry per line) into sorted (frame, prompt) pairs.

    Empty text gives ``[]``. Raises ``ValueError`` naming ``prompt_schedule`` on an entry without a frame index,
    a repeated frame index or an empty prompt.
    """
    entries: dict[int, str] = {}
    for raw in re.split(r"[\n|]", text or ""):
        if not raw.strip():
            continue
        m = _ENTRY.match(raw)
        if m is None:
            raise ValueError(f"prompt_schedule: expected entries like '0: a cat walks', got {raw.strip()!r}")
        frame, prompt = int(m.group(1)), m.group(2)
        if not prompt:
            raise ValueError(f"prompt_schedule: the entry for frame {frame} has no prompt")
        if frame in entries:
            raise ValueError(f"prompt_schedule: frame {frame} appears twice")
        entries[frame] = prompt
    return sorted(entries.items())


def scheduled_prompt_index(schedule: list[tuple[int, str]], frame: int) -> int | None:
    """Index in ``schedule`` of the prompt active at ``frame`` (largest start <= frame), None before the first."""
    found = None
    for i, (start, _) in enumerate(schedule):
        if start <= frame:
            found = i
    return found


# --------------------------------------------------------------------------------------------------------------------
# Re-roll: per-chunk seeds
# --------------------------------------------------------------------------------------------------------------------

_SEED_ENTRY = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
MAX_SEED = 0xFFFFFFFFFFFFFFFF


def parse_chunk_seeds(text: str) -> dict[int, int]:
    """Parse ``"37: 12345"`` entries (new lines, ``,`` or ``|`` between them) into {chunk index: seed}.

    Raises ``ValueError`` naming ``chunk_seeds`` on a malformed entry, chunk 0 (the given first chunk), a repeated
    chunk or a seed out of range.
    """
    seeds: dict[int, int] = {}
    for raw in re.split(r"[\n|,;]", text or ""):
        if not raw.strip():
            continue
        m = _SEED_ENTRY.match(raw)
        if m is None:
            raise ValueError(f"chunk_seeds: expected entries like '37: 12345' (chunk index: seed), got {raw.strip()!r}")
        index, seed = int(m.group(1)), int(m.group(2))
        if index < 1:
            raise ValueError("chunk_seeds: chunk 0 is the first chunk as given and has no seed here; chunks start at 1")
        if index in seeds:
            raise ValueError(f"chunk_seeds: chunk {index} appears twice")
        if seed > MAX_SEED:
            raise ValueError(f"chunk_seeds: the seed of chunk {index} must be at most {MAX_SEED}, got {seed}")
        seeds[index] = seed
    return seeds


def positive_text(prompt: dict | None, node_id: Any) -> str | None:
    """The text of the node feeding this node's ``positive`` input when it is a literal text (CLIPTextEncode):
    for run names and the manifest; the web readout reads the same widget."""
    try:
        link = prompt[str(node_id)]["inputs"].get("positive")
        text = prompt[str(link[0])]["inputs"].get("text")
    except (TypeError, KeyError, IndexError):
        return None
    return text if isinstance(text, str) else None


# --------------------------------------------------------------------------------------------------------------------
# The extension run
# --------------------------------------------------------------------------------------------------------------------

def _to_working_size(frames: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, str | None]:
    """Centre-crop to the working aspect ratio, then resize (bilinear, antialiased); None note if already right."""
    h, w = frames.shape[1], frames.shape[2]
    if (h, w) == (height, width):
        return frames, None
    target = width / height
    if abs(w / h - target) > 1e-6:
        if w / h > target:
            new_w = max(1, round(h * target))
            x0 = (w - new_w) // 2
            frames = frames[:, :, x0:x0 + new_w]
        else:
            new_h = max(1, round(w / target))
            y0 = (h - new_h) // 2
            frames = frames[:, y0:y0 + new_h]
    out = resize_frames(frames.float(), height, width, "bilinear").clamp(0.0, 1.0)
    return out, f"first chunk {w}x{h} resized to the working size {width}x{height} (centre crop + bilinear)"


def run_extension(
    model: Any,
    positive: list,
    negative: list,
    anchor_embeds: torch.Tensor,
    grey_embeds: torch.Tensor,
    vae: Any,
    first_chunk: torch.Tensor,
    total_frames: int,
    seed: int,
    steps: int,
    cfg: float,
    sampler_name: str,
    scheduler: str,
    chunk_positives: list[list] | None = None,
    cache: ChunkCache | None = None,
    run: Any = None,
    chunk_seeds: dict[int, int] | None = None,
    regenerate_from: int = 0,
    chunk_prompts: list[str | None] | None = None,
    prompt: str | None = None,
    keep_frames: int | None = None,
    controls: ChunkControls | None = None,
    color_match: str = "off",
) -> tuple[torch.Tensor, dict[str, int]]:
    """Extend ``first_chunk`` (``[F0, H, W, 3]`` float, working size) to ``total_frames`` frames.

    The loop is the core :func:`~streamingt2v_core.sampling.extension.extend_chunks`; :class:`.extend_run.
    ExtensionRun` supplies its chunk sampler: one host sampling run + VAE decode per chunk (:func:`_sample_chunk`)
    unless the chunk is in ``cache`` or in the run store ``run``. Chunk ``i`` is seeded ``chunk_seed(seed, i)``
    unless ``chunk_seeds`` overrides it; ``chunk_positives[i]`` overrides ``positive`` (prompt travel).
    ``color_match`` corrects each sampled chunk's colours (:mod:`streamingt2v_core.color`).

    Returns the video (float32, the first chunk's frames exactly as given) and counters (``sampled``, ``reused``
    and, by source, ``memory``, ``store``, ``kept``); :func:`run_extension_result` returns the whole report.
    """
    result = run_extension_result(model, positive, negative, anchor_embeds, grey_embeds, vae, first_chunk,
                                  total_frames, seed, steps, cfg, sampler_name, scheduler,
                                  chunk_positives=chunk_positives, cache=cache, run=run, chunk_seeds=chunk_seeds,
                                  regenerate_from=regenerate_from, chunk_prompts=chunk_prompts, prompt=prompt,
                                  keep_frames=keep_frames, controls=controls, color_match=color_match)
    return result.frames, result.counters


def run_extension_result(model, positive, negative, anchor_embeds, grey_embeds, vae, first_chunk, total_frames, seed,
                         steps, cfg, sampler_name, scheduler, *, chunk_positives=None, cache=None, run=None,
                         chunk_seeds=None, regenerate_from=0, chunk_prompts=None, prompt=None,
                         keep_frames=None, controls=None, color_match="off") -> ExtensionResult:
    """:func:`run_extension` with the full :class:`~.extend_run.ExtensionResult` (per-chunk reports, notes)."""
    height, width = first_chunk.shape[1], first_chunk.shape[2]
    job = ExtensionJob(model=model, vae=vae, positive=positive, negative=negative, anchor_embeds=anchor_embeds,
                       grey_embeds=grey_embeds, steps=steps, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler,
                       width=width, height=height, chunk_positives=chunk_positives, chunk_prompts=chunk_prompts,
                       prompt=prompt, controls=controls, color_match=color_match,
                       color_reference=lab_statistics(first_chunk, "first_chunk") if color_match == "anchor" else None)
    extension = ExtensionRun(job, _sample_job_chunk, run=run, cache=cache, regenerate_from=regenerate_from,
                             chunk_seeds=chunk_seeds, keep_frames=keep_frames)
    return extension.execute(first_chunk, total_frames, seed)


def _sample_job_chunk(job: ExtensionJob, index: int, cond: torch.Tensor, seed: int, callback) -> torch.Tensor:
    # Looked up at call time, so tests and benchmarks can wrap _sample_chunk and decode_video_latent.
    positive, negative = job.positive_for(index), job.negative
    if job.controls is not None:  # the ControlNet steers this chunk with the hint frames of its own 16 frames
        positive, negative = job.controls.conditioning(index, positive, negative)
    return _sample_chunk(job.model, positive, negative, job.anchor_embeds, job.grey_embeds,
                         job.vae, cond, job.latent_shape, seed, job.steps, job.cfg, job.sampler_name, job.scheduler,
                         callback, decode_cond_frames=job.decode_cond_frames)


def _sample_chunk(model, positive, negative, anchor_embeds, grey_embeds, vae, cond: torch.Tensor, latent_shape,
                  seed, steps, cfg, sampler_name, scheduler, callback,
                  decode_cond_frames: bool = False) -> torch.Tensor:
    """One chunk: host sampling of 16 latent frames, VAE decode of the 8 kept ones; ``[16, H, W, 3]`` float (CPU).

    ``decode_cond_frames`` (color_match "overlap"): frames 0..7 are the decoded re-generated conditioning frames
    instead of ``cond`` (8 more frame decodes), decoded apart so the kept frames are the same bits either way.
    """
    cond_frames = (cond.movedim(-1, 1) * 2.0 - 1.0).unsqueeze(0)  # [1, 8, 3, H, W] in [-1, 1], as the official CAM
    pos = set_extender_conditioning(positive, cond_frames, anchor_embeds)
    neg = set_extender_conditioning(negative, cond_frames, grey_embeds)
    latent = sample_video_latent(model, pos, neg, latent_shape, seed, steps, cfg, sampler_name, scheduler, callback)
    check_sampled_latent(model, latent)  # the last step, which no callback sees (NaN, or a finite overflow)
    # Frames 0..7 re-generate the conditioning frames and are discarded (official), so only 8..15 are decoded (the
    # SD VAE decodes frame by frame: the kept frames are the same); the conditioning frames stand in for the rest.
    kept = decode_video_latent(vae, latent[:, :, COND_FRAMES:]).to("cpu", torch.float32)
    if decode_cond_frames:
        regenerated = decode_video_latent(vae, latent[:, :, :COND_FRAMES]).to("cpu", torch.float32)
        return torch.cat([regenerated, kept])
    return torch.cat([cond.to(torch.float32), kept])


_EMBEDS_CACHE: "OrderedDict[str, tuple[Any, torch.Tensor, torch.Tensor]]" = OrderedDict()


def anchor_embeddings(clip_vision: Any, anchor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled, projected CLIP ViT-H embeddings ``[1, 1024]`` (what the APM resampler takes) of the anchor frame and
    of a mid-grey frame of the same size (the official unconditional input: zeros in [-1, 1]).

    One batched encode; remembered per (CLIP vision model, anchor pixels) so a re-queued graph (resume) does not
    run the vision tower again.
    """
    anchor = anchor[:1].to(torch.float32)
    key = digest(anchor)
    hit = _EMBEDS_CACHE.get(key)
    if hit is not None and hit[0]() is clip_vision:
        _EMBEDS_CACHE.move_to_end(key)
        return hit[1], hit[2]
    batch = torch.cat([anchor, torch.full_like(anchor, 0.5)])
    embeds = clip_vision.encode_image(batch, crop=True)["image_embeds"].to("cpu", torch.float32)
    result = (embeds[0:1].clone(), embeds[1:2].clone())
    _EMBEDS_CACHE[key] = (weakref.ref(clip_vision), *result)
    while len(_EMBEDS_CACHE) > 8:
        _EMBEDS_CACHE.popitem(last=False)
    return result


def encode_text(clip: Any, text: str) -> list:
    """CONDITIONING of ``text`` with a host CLIP (as CLIPTextEncode)."""
    tokens = clip.tokenize(text)
    return clip.encode_from_tokens_scheduled(tokens)


class ExtendNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StreamingT2VExtend",
            display_name="StreamingT2V Extend",
            category="StreamingT2V/sampling",
            description=(
                "Extends a first chunk autoregressively with the StreamingT2V extender: each 16-frame chunk is "
                "conditioned on the last 8 frames (CAM) and on the anchor frame (APM) and adds 8 frames. Every "
                "finished chunk is saved in a run folder (output/StreamingT2V/runs): interrupt, crash or restart, "
                "then queue again and only missing chunks are sampled. Re-roll one chunk with chunk_seeds, keep "
                "stored chunks with regenerate_from."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The StreamingT2V extender from 'StreamingT2V Model Loader' "
                                                "(streaming_t2v.ckpt / streaming_t2v.safetensors)."),
                io.Conditioning.Input("positive", tooltip="Prompt (CLIPTextEncode, OpenCLIP-H text encoder); used "
                                                          "for every chunk not covered by prompt_schedule."),
                io.Conditioning.Input("negative", tooltip="Negative prompt (official: empty text)."),
                io.ClipVision.Input("clip_vision", tooltip="CLIP ViT-H/14 vision model (CLIPVisionLoader): encodes "
                                                           "the anchor frame for the APM."),
                io.Vae.Input("vae", tooltip="The SD VAE, to decode each chunk."),
                io.Image.Input("first_chunk", tooltip="The first chunk: frames from 'StreamingT2V Initial Chunk' or "
                                                      "any IMAGE batch of at least 8 frames (resized to the working "
                                                      "size if needed)."),
                io.Int.Input("total_frames", default=80, min=8, max=100000,
                             tooltip="Length of the output video in frames, the first chunk included; each chunk "
                                     "adds 8 (the last one is trimmed to fit)."),
                io.Int.Input("seed", default=33, min=0, max=MAX_SEED, control_after_generate=True,
                             tooltip="Base seed; chunk i's noise comes from (seed, i), and each chunk's seed is listed "
                                     "in the info output. A new Extend node starts with 'control after generate' set to "
                                     "fixed, so queueing again resumes the run instead of starting a new video; "
                                     "randomize makes every queue a new video."),
                io.Int.Input("steps", default=50, min=1, max=1000, tooltip="Sampling steps per chunk (official: 50)."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale (official: 7.5)."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="ddpm",
                               tooltip="Host sampler; ddpm with the ddim_uniform scheduler is DDIM with eta = 1, the "
                                       "official extender sampler."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="ddim_uniform",
                               tooltip="Host scheduler; ddim_uniform gives the official leading timesteps 981..1."),
                io.Int.Input("width", default=256, min=64, max=2048, step=8,
                             tooltip="Working width (multiple of 8); the extender was trained at 256x256."),
                io.Int.Input("height", default=256, min=64, max=2048, step=8,
                             tooltip="Working height (multiple of 8); the extender was trained at 256x256."),
                io.Image.Input("anchor", optional=True,
                               tooltip="Anchor image for the APM (appearance kept over the whole video); default: "
                                       "frame 0 of the first chunk."),
                io.Clip.Input("clip", optional=True,
                              tooltip="Text encoder for prompt_schedule (the same OpenCLIP-H CLIP as positive)."),
                io.String.Input("prompt_schedule", multiline=True, default="", optional=True,
                                tooltip="Prompt travel: 'frame: prompt' entries separated by new lines or '|', e.g. "
                                        "'0: a cat walks | 120: the cat sleeps'. A chunk uses the entry with the "
                                        "largest frame <= its first new frame; before the first entry, positive."),
                io.Boolean.Input("disk_cache", default=True, optional=True,
                                 tooltip="Save every finished chunk in the run store (output/StreamingT2V/runs/"
                                         "<run_name>), so a resume works after a crash or a restart and Load Run can "
                                         "read the run. Off: chunks are kept in memory only."),
                io.String.Input("run_name", default=AUTO_RUN, optional=True,
                                tooltip="The run folder. 'auto' (or empty): the run made from this same first chunk "
                                        "and size, found again after restarts and on later days, else a new "
                                        "'<date>_<prompt>_<id>' folder. A name of your own must not be a run of "
                                        "another first chunk (that is refused, never overwritten)."),
                io.String.Input("chunk_seeds", multiline=True, default="", optional=True,
                                tooltip="Re-roll or pin single chunks: 'chunk: seed' entries, e.g. '37: 12345' gives "
                                        "chunk 37 its own seed. Chunks before it are reused, chunk 37 is sampled "
                                        "anew and the chunks after it too (their conditioning changed). The seeds "
                                        "used are in the info output and the manifest."),
                io.Int.Input("regenerate_from", default=0, min=0, max=100000, optional=True,
                             tooltip="Keep chunks 1..N-1 exactly as the run stores them, whatever the settings say, "
                                     "and make chunks from N on with this node's current settings (e.g. a new "
                                     "prompt). 0: off, every chunk follows the current settings."),
                io.Combo.Input("frames_output", options=[WHOLE_VIDEO, LAST_FRAMES], default=WHOLE_VIDEO,
                               optional=True,
                               tooltip="'whole video': the frames output holds every frame (float32 in RAM, refused "
                                       "before sampling when it would not fit). 'last 16 frames': for very long runs; "
                                       "the video stays in the run store, loaded by 'StreamingT2V Load Run' (its "
                                       "video output is file-backed)."),
                io.Combo.Input("color_match", options=list(COLOR_MATCH_MODES), default="off", optional=True,
                               tooltip="Colour-drift correction of each new chunk before it is stored and conditions "
                                       "the next one. off: the official behaviour (small colour shifts can add up "
                                       "over many chunks). overlap: undo the shift each chunk makes to the 8 frames "
                                       "it re-generates (they should equal the known frames); keeps colour changes "
                                       "the prompt asks for; costs 8 more VAE frame decodes per chunk. anchor: match "
                                       "every chunk's colour mean and spread to the first chunk's; removes any drift "
                                       "but also real changes (a sunset is pulled back), for one unchanging scene. "
                                       "Changing it samples the chunks again."),
            ],
            outputs=[
                io.Image.Output("frames", display_name="frames",
                                tooltip="The whole video, [total_frames, H, W, 3]; the first chunk's frames come "
                                        "first, unchanged (or the last 16 frames, see frames_output)."),
                io.String.Output("info", display_name="info",
                                 tooltip="The run's name and folder, and each chunk: frames, seed, and whether it was "
                                         "sampled or reused (memory, run store, kept); problems found."),
                io.String.Output("run", display_name="run",
                                 tooltip="This very video in the run store, '<run name>@<timeline id>' (empty without "
                                         "disk_cache), for StreamingT2V Load Run: it loads this video even after "
                                         "another Extend of the same run made another one."),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, model, positive, negative, clip_vision, vae, first_chunk, total_frames: int, seed: int,
                steps: int, cfg: float, sampler_name: str, scheduler: str, width: int = 256, height: int = 256,
                anchor=None, clip=None, prompt_schedule: str = "", disk_cache: bool = True, run_name: str = AUTO_RUN,
                chunk_seeds: str = "", regenerate_from: int = 0, frames_output: str = WHOLE_VIDEO,
                color_match: str = "off") -> io.NodeOutput:
        require_model_kind(model, KIND_EXTENDER, "model")
        if color_match not in COLOR_MATCH_MODES:
            raise ValueError(f"color_match: must be one of {', '.join(COLOR_MATCH_MODES)}, got {color_match!r}")
        if clip_vision is None:
            raise ValueError("clip_vision: missing; connect a CLIPVisionLoader with CLIP ViT-H/14 (the APM anchor "
                             "embedding needs it)")
        if vae is None:
            raise ValueError("vae: missing; connect a VAELoader with the SD VAE")
        if first_chunk is None or not torch.is_tensor(first_chunk) or first_chunk.ndim != 4:
            raise ValueError("first_chunk: expected an IMAGE batch [T, H, W, 3]")
        n0 = first_chunk.shape[0]
        if n0 < MIN_FIRST_CHUNK:
            raise ValueError(f"first_chunk: needs at least {MIN_FIRST_CHUNK} frames (the CAM conditions each chunk on "
                             f"the last {COND_FRAMES}), got {n0}")
        if total_frames < n0:
            raise ValueError(f"total_frames: must be >= the first chunk's {n0} frames, got {total_frames}")
        for name, value in (("width", width), ("height", height)):
            if value % VAE_SCALE:
                raise ValueError(f"{name}: must be a multiple of {VAE_SCALE}, got {value}")
        config = extender_config(model)
        if config is not None and (config.num_frames != CHUNK_FRAMES or config.num_cond_frames != COND_FRAMES):
            raise ValueError(f"model: extender with {config.num_frames}-frame chunks and {config.num_cond_frames} "
                             f"conditioning frames is not supported (expected {CHUNK_FRAMES}/{COND_FRAMES})")
        # NaN/inf in the frames, the conditioning or the VAE is refused now; frames a little outside [0, 1] are
        # clamped with a note (nodes/validation.py).
        first_chunk, anchor, input_notes = check_extend_inputs(first_chunk, anchor, positive, negative, vae,
                                                               model=model, clip_vision=clip_vision)
        # A ControlNet our UNet cannot run is refused here, before any work (and it names positive/negative).
        has_control = check_conditioning_controls(model, positive=positive, negative=negative)
        schedule = parse_prompt_schedule(prompt_schedule or "")
        if schedule and clip is None:
            raise ValueError("clip: prompt_schedule needs a CLIP to encode its prompts; connect the CLIPLoader")
        plan = extension_plan(total_frames, first_chunk=n0, chunk=CHUNK_FRAMES, cond_frames=COND_FRAMES)
        input_notes += check_prompt_schedule(schedule, [c.new_range[0] for c in plan.chunks[1:]], total_frames)
        seeds = parse_chunk_seeds(chunk_seeds or "")
        beyond = sorted(i for i in seeds if i >= plan.num_chunks)
        if beyond:
            raise ValueError(f"chunk_seeds: chunk {beyond[0]} is beyond the last chunk ({plan.num_chunks - 1}) of "
                             f"{total_frames} frames")
        use_store = bool(disk_cache)
        whole = frames_output != LAST_FRAMES
        if not whole and not use_store:
            raise ValueError("frames_output: 'last 16 frames' keeps the video only in the run store; turn disk_cache "
                             "on (or choose 'whole video')")
        if regenerate_from and not use_store:
            raise ValueError("regenerate_from: keeps chunks stored in the run store; turn disk_cache on")
        if whole:
            # The float32 IMAGE plus the uint8 chunks held while extending, checked before any sampling.
            needed = float_video_bytes(total_frames, height, width) + uint8_video_bytes(total_frames, height, width)
            available = run_memory.available_ram_bytes()
            if not run_memory.fits_in_ram(needed, available):
                raise ValueError(
                    f"total_frames: {total_frames} frames at {width}x{height} need {format_bytes(needed)} of RAM for "
                    f"the frames output (float32) and the chunks, more than fits in the "
                    f"{format_bytes(available)} available. Make fewer frames, or set frames_output to "
                    f"'{LAST_FRAMES}' and load the run with 'StreamingT2V Load Run', whose video output is "
                    f"file-backed for any length")

        notes = list(input_notes)
        first, note = _to_working_size(first_chunk[..., :3].to("cpu", torch.float32), height, width)
        if note:
            notes.append(note)
            logger.info("StreamingT2V Extend: %s", note)
        text = positive_text(cls.hidden.prompt if cls.hidden else None, cls.hidden.unique_id if cls.hidden else None)

        run = None
        if use_store:
            first_u8 = frames_to_uint8(first)
            identity = run_identity(first_u8)
            hint = text or (schedule[0][1] if schedule else "") or "run"
            base = {"prompt": text, "width": int(width), "height": int(height), "first_chunk_frames": int(n0),
                    "created_by": "StreamingT2V Extend"}
            run = open_run(run_name, identity, hint, base, [height, width, 3],
                           store_advice="; turn disk_cache off to extend in memory only")

        anchor_image = first[:1] if anchor is None else anchor[:1, ..., :3].to(torch.float32)
        anchor_embeds, grey_embeds = anchor_embeddings(clip_vision, anchor_image)
        check_anchor_embeddings(anchor_embeds, grey_embeds, getattr(config, "image_embed_dim", None))

        chunk_positives, chunk_prompts = None, None
        if schedule:
            # Scheduled prompts keep positive's ControlNet (the control video runs through the prompt changes).
            # Only the entries some sampled chunk uses are encoded, each once (a schedule of 2000 entries over a
            # short video encodes a few); chunk 0 is the given first chunk and needs no encoding.
            encoded: dict[int, list] = {}
            tokens = getattr(getattr(config, "unet", None), "text_tokens", 77)
            chunk_positives, chunk_prompts = [], []
            for spec in plan.chunks:
                i = scheduled_prompt_index(schedule, spec.new_range[0])
                if i is not None and spec.index > 0 and i not in encoded:
                    encoded[i] = with_controls_of(positive, encode_text(clip, schedule[i][1]))
                    note = long_prompt_note(encoded[i], f"prompt_schedule: the entry '{schedule[i][0]}: "
                                            f"{schedule[i][1][:40]}{'...' if len(schedule[i][1]) > 40 else ''}'",
                                            tokens, "the extender")
                    if note:
                        notes.append(note)
                chunk_positives.append(positive if i is None or spec.index == 0 else encoded[i])
                chunk_prompts.append(text if i is None else schedule[i][1])
            # The entries chunks use (a schedule of thousands of entries would make a line as long).
            used = "; ".join(f"{schedule[i][0]}: {schedule[i][1]}" for i in sorted(encoded)) or "no entry is used"
            notes.append(f"prompt schedule: {used}"
                         + (f" (the entries chunks use, of {len(schedule)})" if len(encoded) < len(schedule) else ""))

        controls = ChunkControls.for_plan(plan, CHUNK_FRAMES) if has_control else None
        if controls is not None:
            notes.append(controls.summary(chunk_positives or [positive], negative, total_frames))
        if color_match != "off":
            notes.append(f"color_match {color_match}: each sampled chunk's new frames are colour-matched ("
                         + ("to the colours of the frames it re-generates" if color_match == "overlap" else
                            "to the first chunk's colour statistics") + ") before they are stored")
        result = run_extension_result(
            model, positive, negative, anchor_embeds, grey_embeds, vae, first, total_frames, seed, steps, cfg,
            sampler_name, scheduler, chunk_positives=chunk_positives, cache=CHUNK_CACHE if whole else None, run=run,
            chunk_seeds=seeds,
            regenerate_from=regenerate_from, chunk_prompts=chunk_prompts, prompt=text,
            keep_frames=None if whole else TAIL_FRAMES, controls=controls, color_match=color_match,
        )
        info = _info_text(result, total_frames, width, height, n0, notes)
        reports = [r for r in result.reports if r.index > 0]
        ui = {"streamingt2v_run": [{
            "name": run.name if run else "",
            "ref": result.run_ref,
            "folder": run.folder if run else "",
            "sources": [r.source for r in reports],
            "seeds": [str(r.seed) for r in reports],
        }]}
        frames = result.frames.to(comfy.model_management.intermediate_device())
        return io.NodeOutput(frames, info, result.run_ref, ui=ui)


def _info_text(result: ExtensionResult, total_frames: int, width: int, height: int, n0: int, notes: list[str]) -> str:
    c = result.counters
    new = len(result.reports) - 1
    lines = []
    if result.run is not None:
        lines.append(f"run {result.run.name!r} in {result.run.store.root}")
    else:
        lines.append("run store off (disk_cache): chunks in memory only")
    reused = f"{c['reused']} reused ({c['memory']} from memory, {c['store']} from the run store"
    reused += f", {c['kept']} kept by regenerate_from)" if c["kept"] else ")"
    lines.append(f"{total_frames} frames at {width}x{height}: first chunk {n0} frames + {new} chunks "
                 f"({c['sampled']} sampled, {reused})")
    lines += notes + result.notes
    lines += [r.line() for r in result.reports if r.index > 0]
    return "\n".join(lines)


NODES: list[type[io.ComfyNode]] = [ExtendNode]
