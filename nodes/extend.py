"""StreamingT2V Extend: the autoregressive extension (CAM + APM), chunk by chunk, through the host's sampler.

Each new chunk is one host sampling run (``comfy.sample.sample``) of the extender MODEL on a 16-frame latent,
conditioned on the last 8 frames of the video so far (the CAM frames) and on frame 0 of the first chunk (the APM
anchor); frames 8..15 of the decoded chunk are appended (the official ``VideoLDM.predict_step``). The CAM frames
and the anchor's CLIP embedding travel in the CONDITIONING dicts (see :mod:`.comfy_model`), the unconditional
branch gets the embedding of a grey image, as the official code.

Long runs are made safe to stop:

* every finished chunk goes into a cache (in memory, LRU, and as a small file in the host's temp folder) under a
  digest of everything it depends on (model and LoRA patches, VAE, prompts, anchor embedding, sampler settings,
  its seed and its stored conditioning frames); the host's interrupt stops sampling at once (every op checks it)
  and re-queuing the same graph resumes from the first missing chunk, bit for bit; changing the prompt schedule
  from frame N on, or asking for more frames, keeps every chunk before;
* only the current chunk is on the GPU; finished frames are kept on the CPU as uint8.

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

import hashlib
import logging
import os
import re
import threading
import weakref
from collections import OrderedDict
from typing import Any

import torch

import comfy.model_management
import comfy.samplers
import comfy.utils
import folder_paths
from comfy_api.latest import io

from streamingt2v_core.sampling.extension import chunk_seed, extend_video, from_storage
from streamingt2v_core.sampling.plans import extension_plan
from streamingt2v_core.video import frames_to_uint8, resize_frames, uint8_to_frames

from .comfy_model import KIND_EXTENDER, extender_config, require_model_kind, set_extender_conditioning
from .initial_chunk import LATENT_CHANNELS, VAE_SCALE, decode_video_latent, sample_video_latent, step_callback

__all__ = [
    "parse_prompt_schedule",
    "chunk_seed",
    "ChunkCache",
    "CHUNK_CACHE",
    "model_fingerprint",
    "run_extension",
    "ExtendNode",
    "NODES",
]

logger = logging.getLogger(__name__)

CHUNK_FRAMES = 16
COND_FRAMES = 8
MIN_FIRST_CHUNK = COND_FRAMES
_CACHE_VERSION = "streamingt2v-extend-v1"


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
# Seeds and fingerprints
# --------------------------------------------------------------------------------------------------------------------

def _update_tensor(h: "hashlib._Hash", t: torch.Tensor, sample: bool = False) -> None:
    t = t.detach()
    h.update(f"{tuple(t.shape)}{t.dtype}".encode())
    flat = t.reshape(-1)
    if sample and flat.numel() > 4096:
        # Large weights: a strided sample of the values (a fingerprint, not a checksum of gigabytes).
        flat = flat[:: max(1, flat.numel() // 2048)][:2048]
    flat = flat.to("cpu").contiguous()
    if flat.dtype == torch.bfloat16:
        flat = flat.view(torch.int16)
    h.update(flat.numpy().tobytes())


def _update_value(h: "hashlib._Hash", value: Any, sample: bool = False) -> None:
    if torch.is_tensor(value):
        _update_tensor(h, value, sample)
    elif isinstance(value, dict):
        for k in sorted(value, key=str):
            h.update(repr(k).encode())
            _update_value(h, value[k], sample)
    elif isinstance(value, (list, tuple)):
        h.update(f"seq{len(value)}".encode())
        for v in value:
            _update_value(h, v, sample)
    elif isinstance(value, (int, float, str, bool)) or value is None:
        h.update(repr(value).encode())
    else:
        # Opaque host objects (hooks, control nets...): their identity is all we can use.
        h.update(f"{type(value).__name__}@{id(value)}".encode())


def conditioning_digest(conditioning: list) -> str:
    h = hashlib.sha256()
    _update_value(h, [[c[0], c[1]] for c in conditioning])
    return h.hexdigest()


def model_fingerprint(model: Any) -> str:
    """Identity of a MODEL's weights as sampled: source file (or sampled weights) plus LoRA/weight patches."""
    h = hashlib.sha256()
    inner = model.model
    source = getattr(inner, "streamingt2v_source", None)
    if source is not None:
        h.update(repr(source).encode())
    else:
        for name, tensor in inner.diffusion_model.state_dict().items():
            h.update(name.encode())
            _update_tensor(h, tensor, sample=True)
    h.update(str(model.model_dtype()).encode())
    for key in sorted(model.patches):
        h.update(key.encode())
        for patch in model.patches[key]:
            strength_patch, adapter, strength_model = patch[0], patch[1], patch[2]
            h.update(repr((strength_patch, strength_model, type(adapter).__name__)).encode())
            weights = getattr(adapter, "weights", adapter)
            _update_value(h, weights, sample=True)
    for key in sorted(model.object_patches):
        h.update(f"object_patch:{key}@{id(model.object_patches[key])}".encode())
    # CFG functions, wrappers etc. added by other nodes (RescaleCFG, ...): opaque objects count by identity, so a
    # change recomputes rather than reusing chunks made without it.
    _update_value(h, model.model_options)
    return h.hexdigest()


def vae_fingerprint(vae: Any) -> str:
    h = hashlib.sha256()
    fsm = getattr(vae, "first_stage_model", None)
    if fsm is None:
        h.update(f"{type(vae).__name__}@{id(vae)}".encode())
    else:
        for name, tensor in fsm.state_dict().items():
            h.update(name.encode())
            _update_tensor(h, tensor, sample=True)
    return h.hexdigest()


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        _update_value(h, p)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------------------------
# Chunk cache
# --------------------------------------------------------------------------------------------------------------------

class ChunkCache:
    """Finished chunks (uint8 ``[n, H, W, 3]`` frames) by chained key: an LRU in memory plus files on disk.

    Args:
        max_bytes: memory budget of the in-memory LRU.
        disk_dir: folder for chunk files (None: memory only). Writes are atomic (temp file + rename).
    """

    def __init__(self, max_bytes: int = 2 << 30, disk_dir: str | None = None) -> None:
        self.max_bytes = max_bytes
        self.disk_dir = disk_dir
        self._mem: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.disk_hits = 0
        self.stores = 0

    def _path(self, key: str) -> str | None:
        if self.disk_dir is None:
            return None
        return os.path.join(self.disk_dir, key[:2], key + ".pt")

    def get(self, key: str, use_disk: bool = True) -> torch.Tensor | None:
        with self._lock:
            frames = self._mem.get(key)
            if frames is not None:
                self._mem.move_to_end(key)
                self.hits += 1
                return frames
        path = self._path(key) if use_disk else None
        if path is not None and os.path.isfile(path):
            try:
                frames = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as err:  # a truncated file from a crash: recompute that chunk
                logger.warning("StreamingT2V: ignoring unreadable cached chunk %s (%s)", path, err)
                return None
            if isinstance(frames, torch.Tensor) and frames.dtype == torch.uint8:
                self.disk_hits += 1
                self._remember(key, frames)
                return frames
        return None

    def put(self, key: str, frames: torch.Tensor, use_disk: bool = True) -> None:
        frames = frames.to("cpu", torch.uint8).contiguous()
        self.stores += 1
        self._remember(key, frames)
        path = self._path(key) if use_disk else None
        if path is not None:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.partial"
            torch.save(frames, tmp)
            os.replace(tmp, path)

    def _remember(self, key: str, frames: torch.Tensor) -> None:
        size = frames.numel()
        with self._lock:
            if key in self._mem:
                self._mem.move_to_end(key)
                return
            self._mem[key] = frames
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._mem) > 1:
                _, old = self._mem.popitem(last=False)
                self._bytes -= old.numel()

    def clear_memory(self) -> None:
        with self._lock:
            self._mem.clear()
            self._bytes = 0


def _default_disk_dir() -> str:
    return os.path.join(folder_paths.get_temp_directory(), "streamingt2v_chunks")


class _LazyDiskCache(ChunkCache):
    """The process-wide cache; its folder follows the host's temp directory (which tests and users may move)."""

    def _path(self, key: str) -> str | None:
        self.disk_dir = _default_disk_dir()
        return super()._path(key)


CHUNK_CACHE = _LazyDiskCache()


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
    use_disk: bool = True,
) -> tuple[torch.Tensor, dict[str, int]]:
    """Extend ``first_chunk`` (``[F0, H, W, 3]`` float, working size) to ``total_frames`` frames.

    The loop is the core :func:`~streamingt2v_core.sampling.extension.extend_video` (frames stored as uint8 on
    the CPU, chunk ``i`` seeded with ``chunk_seed(seed, i)``); this function supplies its chunk sampler: one host
    sampling run + VAE decode per chunk, with a cache lookup first. A chunk's cache key is a digest of exactly
    what it sees: the base settings (model + patches, VAE, negative prompt, anchor/grey embeddings, sampler
    settings, latent size), its positive prompt, its seed and its stored conditioning frames; so a cache hit gives
    the frames the sampler would produce, and resuming is bit-exact.

    ``chunk_positives[i]`` overrides ``positive`` for chunk ``i`` (prompt travel). Returns the video (float32,
    the first chunk's frames exactly as given) and counters ``{"sampled", "cached"}``.
    """
    f0, height, width = first_chunk.shape[0], first_chunk.shape[1], first_chunk.shape[2]
    plan = extension_plan(total_frames, first_chunk=f0, chunk=CHUNK_FRAMES, cond_frames=COND_FRAMES)
    latent_shape = (1, LATENT_CHANNELS, CHUNK_FRAMES, height // VAE_SCALE, width // VAE_SCALE)
    counters = {"sampled": 0, "cached": 0}
    total_steps = max(1, (plan.num_chunks - 1) * steps)
    pbar = comfy.utils.ProgressBar(total_steps)
    base_key = _digest(_CACHE_VERSION, model_fingerprint(model), vae_fingerprint(vae), conditioning_digest(negative),
                       anchor_embeds, grey_embeds, steps, float(cfg), sampler_name, scheduler, list(latent_shape))

    def chunk_sampler(index: int, cond: torch.Tensor, anchor: torch.Tensor, chunk_seed_: int) -> torch.Tensor:
        comfy.model_management.throw_exception_if_processing_interrupted()
        pos = positive if chunk_positives is None else chunk_positives[index]
        cond_u8 = frames_to_uint8(cond)
        key = _digest(base_key, conditioning_digest(pos), chunk_seed_, cond_u8)
        cached = cache.get(key, use_disk) if cache is not None else None
        if cached is not None and tuple(cached.shape) == (CHUNK_FRAMES - COND_FRAMES, height, width, 3):
            counters["cached"] += 1
            pbar.update_absolute(index * steps, total_steps)
            # extend_video keeps frames 8.. of what we return; the first 8 only stand in for the re-generated ones.
            return torch.cat([cond, uint8_to_frames(cached)])
        frames = _sample_chunk(model, pos, negative, anchor_embeds, grey_embeds, vae, cond, latent_shape,
                               chunk_seed_, steps, cfg, sampler_name, scheduler,
                               step_callback(model, pbar, (index - 1) * steps, total_steps))
        counters["sampled"] += 1
        if cache is not None:
            # The whole new half is stored (also for a trimmed last chunk), so a longer run reuses it.
            cache.put(key, frames_to_uint8(frames[COND_FRAMES:]), use_disk)
        return frames

    stored = extend_video(first_chunk, chunk_sampler, total_frames, seed=seed, chunk=CHUNK_FRAMES,
                          cond_frames=COND_FRAMES, storage_dtype=torch.uint8)
    out = from_storage(stored)
    del stored
    out[:f0] = first_chunk  # the first chunk as given, not its uint8 copy
    return out, counters


def _sample_chunk(model, positive, negative, anchor_embeds, grey_embeds, vae, cond: torch.Tensor, latent_shape,
                  seed, steps, cfg, sampler_name, scheduler, callback) -> torch.Tensor:
    """One chunk: host sampling of 16 latent frames, VAE decode of the 8 kept ones; ``[16, H, W, 3]`` float (CPU)."""
    cond_frames = (cond.movedim(-1, 1) * 2.0 - 1.0).unsqueeze(0)  # [1, 8, 3, H, W] in [-1, 1], as the official CAM
    pos = set_extender_conditioning(positive, cond_frames, anchor_embeds)
    neg = set_extender_conditioning(negative, cond_frames, grey_embeds)
    latent = sample_video_latent(model, pos, neg, latent_shape, seed, steps, cfg, sampler_name, scheduler, callback)
    # Frames 0..7 re-generate the conditioning frames and are discarded (official), so only 8..15 are decoded (the
    # SD VAE decodes frame by frame: the kept frames are the same); the conditioning frames stand in for the rest.
    kept = decode_video_latent(vae, latent[:, :, COND_FRAMES:]).to("cpu", torch.float32)
    return torch.cat([cond.to(torch.float32), kept])


_EMBEDS_CACHE: "OrderedDict[str, tuple[Any, torch.Tensor, torch.Tensor]]" = OrderedDict()


def anchor_embeddings(clip_vision: Any, anchor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled, projected CLIP ViT-H embeddings ``[1, 1024]`` (what the APM resampler takes) of the anchor frame and
    of a mid-grey frame of the same size (the official unconditional input: zeros in [-1, 1]).

    One batched encode; remembered per (CLIP vision model, anchor pixels) so a re-queued graph (resume) does not
    run the vision tower again.
    """
    anchor = anchor[:1].to(torch.float32)
    key = _digest(anchor)
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
                "conditioned on the last 8 frames (CAM) and on the anchor frame (APM) and adds 8 frames. "
                "Interrupt any time: re-queuing resumes from the finished chunks."
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
                io.Int.Input("seed", default=33, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed; each chunk's noise comes from (seed, chunk index)."),
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
                                 tooltip="Also keep finished chunks as files in the temp folder, so a resume works "
                                         "even after the in-memory cache dropped them."),
            ],
            outputs=[
                io.Image.Output("frames", tooltip="The whole video, [total_frames, H, W, 3]; the first chunk's "
                                                  "frames come first, unchanged."),
                io.String.Output("info", tooltip="What happened: chunks sampled and resumed from cache, resizing."),
            ],
        )

    @classmethod
    def execute(cls, model, positive, negative, clip_vision, vae, first_chunk, total_frames: int, seed: int,
                steps: int, cfg: float, sampler_name: str, scheduler: str, width: int = 256, height: int = 256,
                anchor=None, clip=None, prompt_schedule: str = "", disk_cache: bool = True) -> io.NodeOutput:
        require_model_kind(model, KIND_EXTENDER, "model")
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
        schedule = parse_prompt_schedule(prompt_schedule or "")
        if schedule and clip is None:
            raise ValueError("clip: prompt_schedule needs a CLIP to encode its prompts; connect the CLIPLoader")

        notes = []
        first, note = _to_working_size(first_chunk[..., :3].to("cpu", torch.float32), height, width)
        if note:
            notes.append(note)
            logger.info("StreamingT2V Extend: %s", note)
        anchor_image = first[:1] if anchor is None else anchor[:1, ..., :3].to(torch.float32)
        anchor_embeds, grey_embeds = anchor_embeddings(clip_vision, anchor_image)

        chunk_positives = None
        if schedule:
            encoded = [encode_text(clip, prompt) for _, prompt in schedule]
            plan = extension_plan(total_frames, first_chunk=n0, chunk=CHUNK_FRAMES, cond_frames=COND_FRAMES)
            chunk_positives = []
            for spec in plan.chunks:
                i = scheduled_prompt_index(schedule, spec.new_range[0])
                chunk_positives.append(positive if i is None else encoded[i])
            notes.append("prompt schedule: " + "; ".join(f"{f}: {p}" for f, p in schedule))

        video, counters = run_extension(
            model, positive, negative, anchor_embeds, grey_embeds, vae, first, total_frames, seed, steps, cfg,
            sampler_name, scheduler, chunk_positives=chunk_positives, cache=CHUNK_CACHE, use_disk=bool(disk_cache),
        )
        new = counters["sampled"] + counters["cached"]
        info = [f"{total_frames} frames at {width}x{height}: first chunk {n0} frames + {new} chunks "
                f"({counters['sampled']} sampled, {counters['cached']} resumed from cache)"] + notes
        return io.NodeOutput(video.to(comfy.model_management.intermediate_device()), "\n".join(info))


NODES: list[type[io.ComfyNode]] = [ExtendNode]
