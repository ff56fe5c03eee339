"""How one chunk of ``StreamingT2V Extend (video model)`` is built for a host video model: which continuation
method a model takes, the lengths its VAE allows, and each method's conditioning and latent.

StreamingT2V's short-term memory (the last frames of the video condition the next chunk) and long-term memory (an
anchor image) map onto what today's host video models take natively:

* ``vace`` (Wan 2.1/2.2 VACE): the chunk's control video is the last ``context`` frames of the video (masked 0,
  known) followed by grey frames, or the ``control_video``'s frames of the chunk's own range (masked 1, to be made);
  the anchor is the VACE reference image. The conditioning is what the host's own ``WanVaceToVideo`` returns for
  those inputs (its code is called, not copied), and the reference latent is trimmed after sampling as the host's
  ``TrimVideoLatent`` does.
* ``inpaint`` (any host model with ``[B, C, T, H, W]`` latents): the context frames are VAE-encoded as the start of
  the chunk's latent and the host's ``noise_mask`` (0 = keep) holds them through sampling (temporal inpainting by
  the host sampler's own masking, ``KSamplerX0Inpaint``).

Lengths follow the VAE's temporal stride ``s`` (Wan, HunyuanVideo: 4; LTX-Video, Cosmos: 8): a causal video VAE
turns ``1 + s k`` pixel frames into ``1 + k`` latent frames, and the first ``1 + s j`` of them depend on the first
``1 + s j`` pixel frames only, so a context of ``1 + s j`` frames is exactly ``1 + j`` latent frames of the chunk.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

import comfy.sample
import comfy.utils

from .validation import check_decoded_frames, nearest_valid_sizes

__all__ = [
    "METHODS",
    "VideoModel",
    "video_model",
    "resolve_method",
    "check_lengths",
    "check_frame_size",
    "vace_chunk",
    "inpaint_chunk",
    "sample_latent",
    "decode_chunk",
]

METHODS = ("auto", "vace", "inpaint")
#: The WanVaceToVideo strength the node's ``vace_strength`` defaults to (as the host node).
DEFAULT_VACE_STRENGTH = 1.0


@dataclass(frozen=True)
class VideoModel:
    """What the node needs to know about a host MODEL + VAE pair."""

    family: str  # the host's model class name (WAN21_Vace, WAN21, LTXV, HunyuanVideo, ...)
    vace: bool  # takes VACE conditioning (vace_frames / vace_mask / vace_strength)
    latent_channels: int
    temporal_stride: int  # pixel frames per latent frame after the first
    spatial_stride: int  # pixels per latent pixel


def video_model(model: Any, vae: Any) -> VideoModel:
    """Checks ``model`` is a host video model and ``vae`` its video VAE; raises ValueError naming the input."""
    inner = getattr(model, "model", None)
    latent_format = getattr(inner, "latent_format", None)
    if inner is None or latent_format is None or not hasattr(model, "model_options"):
        raise ValueError(f"model: expected a host video diffusion model (Wan, HunyuanVideo, LTX-Video, Cosmos, ...) "
                         f"from UNETLoader / CheckpointLoader, got {type(inner or model).__name__}")
    family = type(inner).__name__
    if getattr(latent_format, "latent_dimensions", 2) != 3:
        raise ValueError(f"model: {family} is an image model (4-D [B, C, H, W] latents); this node extends videos "
                         f"with a video model ([B, C, T, H, W] latents: Wan, HunyuanVideo, LTX-Video, Cosmos, ...). "
                         f"For the StreamingT2V extender use 'StreamingT2V Extend'")
    if vae is None or not hasattr(vae, "temporal_compression_decode"):
        raise ValueError("vae: missing or not a host VAE; connect the model's video VAE (VAELoader)")
    temporal = vae.temporal_compression_decode()
    if not temporal or getattr(vae, "latent_dim", 2) != 3:
        raise ValueError(f"vae: an image VAE (no temporal compression); {family} needs its video VAE "
                         f"(e.g. wan_2.1_vae.safetensors for Wan 2.1)")
    channels = int(latent_format.latent_channels)
    if int(vae.latent_channels) != channels:
        raise ValueError(f"vae: makes {vae.latent_channels}-channel latents but model ({family}) takes {channels}; "
                         f"it does not belong to this model (Wan 2.1 and Wan 2.2 14B take the Wan 2.1 VAE, "
                         f"Wan 2.2 5B the Wan 2.2 VAE)")
    vace = hasattr(inner, "diffusion_model") and type(inner.diffusion_model).__name__ == "VaceWanModel"
    return VideoModel(family, vace, channels, int(temporal), int(vae.spacial_compression_decode()))


def resolve_method(method: str, info: VideoModel) -> str:
    """``auto`` -> ``vace`` for a VACE model, else ``inpaint``; ``vace`` on another model is refused."""
    if method not in METHODS:
        raise ValueError(f"method: must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "auto":
        return "vace" if info.vace else "inpaint"
    if method == "vace" and not info.vace:
        raise ValueError(f"method: 'vace' needs a Wan VACE model (e.g. wan2.1_vace_1.3B_fp16.safetensors); "
                         f"model is {info.family}: use 'inpaint' or 'auto'")
    return method


def _fits(stride: int) -> Callable[[int], bool]:
    return lambda n: n >= 1 and (n - 1) % stride == 0


def _nearest(value: int, stride: int, minimum: int = 1) -> str:
    below, above = nearest_valid_sizes(value, lambda n: n >= minimum and _fits(stride)(n))
    found = [str(v) for v in (below, above) if v is not None]
    return " or ".join(found) if found else "none"


def check_lengths(chunk_frames: int, context_frames: int, info: VideoModel) -> None:
    """Pixel lengths ``1 + stride k``; ``context < chunk``. The message gives the nearest valid values."""
    s = info.temporal_stride
    if not _fits(s)(chunk_frames) or chunk_frames < 1 + s:
        raise ValueError(f"chunk_frames: {info.family}'s VAE packs {s} frames into a latent frame, so a chunk has "
                         f"1 + {s}k frames (k >= 1); {chunk_frames} does not fit, the nearest are "
                         f"{_nearest(chunk_frames, s, 1 + s)}")
    if not _fits(s)(context_frames):
        raise ValueError(f"context_frames: {info.family}'s VAE packs {s} frames into a latent frame, so the context "
                         f"has 1 + {s}j frames; {context_frames} does not fit, the nearest are "
                         f"{_nearest(context_frames, s)}")
    if context_frames >= chunk_frames:
        raise ValueError(f"context_frames: must be shorter than chunk_frames ({chunk_frames}) so each chunk adds "
                         f"frames; got {context_frames} (at most {chunk_frames - s})")


def check_frame_size(height: int, width: int, info: VideoModel) -> None:
    """The VAE's spatial stride must divide the frame size (VACE masks and latents need it)."""
    s = info.spatial_stride
    for name, value in (("height", height), ("width", width)):
        if value % s:
            below, above = nearest_valid_sizes(value, lambda n: n > 0 and n % s == 0)
            near = " or ".join(str(v) for v in (below, above) if v is not None)
            raise ValueError(f"first_chunk: its {name} {value} is not a multiple of {s} ({info.family}'s VAE "
                             f"stride); resize it to {near} (e.g. with the host's ImageScale)")


# --------------------------------------------------------------------------------------------------------------------
# The methods
# --------------------------------------------------------------------------------------------------------------------

def vace_control(context: torch.Tensor, chunk_frames: int, control: torch.Tensor | None) -> tuple[torch.Tensor,
                                                                                                  torch.Tensor]:
    """The chunk's control video and masks for ``WanVaceToVideo``: the context frames (mask 0: known), then the
    control frames of the chunk's new range (grey 0.5 where there are none) with mask 1 (to be made)."""
    n, h, w = context.shape[0], context.shape[1], context.shape[2]
    video = torch.full((chunk_frames, h, w, 3), 0.5, dtype=torch.float32)
    video[:n] = context[..., :3].to(torch.float32)
    if control is not None and control.shape[0]:
        m = min(control.shape[0], chunk_frames - n)
        video[n:n + m] = control[:m, ..., :3].to(torch.float32)
    masks = torch.ones((chunk_frames, h, w), dtype=torch.float32)
    masks[:n] = 0.0
    return video, masks


def vace_chunk(positive: list, negative: list, vae: Any, context: torch.Tensor, chunk_frames: int,
               strength: float, control: torch.Tensor | None = None,
               anchor: torch.Tensor | None = None) -> tuple[list, list, torch.Tensor, int]:
    """The host's ``WanVaceToVideo`` for one chunk: (positive, negative, empty latent, trim_latent)."""
    from comfy_extras.nodes_wan import WanVaceToVideo

    video, masks = vace_control(context, chunk_frames, control)
    height, width = int(context.shape[1]), int(context.shape[2])
    out = WanVaceToVideo.execute(positive, negative, vae, width, height, chunk_frames, 1, strength,
                                 control_video=video, control_masks=masks, reference_image=anchor)
    pos, neg, latent, trim = out.result if hasattr(out, "result") else out
    return pos, neg, latent["samples"], int(trim)


def inpaint_chunk(vae: Any, context: torch.Tensor, chunk_frames: int,
                  info: VideoModel) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunk's latent with the encoded context frames at its start, and the host ``noise_mask`` holding them
    (``[1, 1, T, h, w]``, 0 = keep)."""
    s = info.temporal_stride
    latent_frames = (chunk_frames - 1) // s + 1
    known = vae.encode(context[..., :3].to(torch.float32)).to("cpu", torch.float32)
    if known.ndim != 5 or known.shape[1] != info.latent_channels:
        raise ValueError(f"vae: encoded the context frames to {tuple(known.shape)}, expected a video latent with "
                         f"{info.latent_channels} channels")
    latent = torch.zeros((1, info.latent_channels, latent_frames, known.shape[3], known.shape[4]))
    ctx = known.shape[2]
    latent[:, :, :ctx] = known
    mask = torch.ones((1, 1, latent_frames, known.shape[3], known.shape[4]))
    mask[:, :, :ctx] = 0.0
    return latent, mask


def sample_latent(model: Any, positive: list, negative: list, latent: torch.Tensor, seed: int, steps: int,
                  cfg: float, sampler_name: str, scheduler: str, callback: Callable | None = None,
                  noise_mask: torch.Tensor | None = None) -> torch.Tensor:
    """One host sampling run (``comfy.sample.sample``, KSampler's path) of a chunk latent; noise of ``seed`` on the
    CPU as KSampler makes it."""
    noise = comfy.sample.prepare_noise(latent, seed)
    samples = comfy.sample.sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent,
                                  denoise=1.0, noise_mask=noise_mask, callback=callback,
                                  disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    return samples.to("cpu", torch.float32)


def decode_chunk(vae: Any, latent: torch.Tensor) -> torch.Tensor:
    """A chunk latent ``[1, C, T, h, w]`` decoded by the video VAE: ``[frames, H, W, 3]`` float32 CPU in [0, 1]."""
    images = vae.decode(latent)
    images = images.reshape(-1, *images.shape[-3:])
    check_decoded_frames(images, f"a chunk latent of {latent.shape[2]} frames")
    return images[..., :3].to("cpu", torch.float32).clamp(0.0, 1.0)
