"""StreamingT2V Initial Chunk: the first 16 frames from the ModelScope text-to-video UNet3D.

Sampling goes through the host's sampling API (``comfy.sample.sample``, the path of ``KSampler``), so the host's
samplers, schedulers, progress bar, previews, interruption and memory management apply. Any other IMAGE batch
(another host video model, a loaded video, AnimateDiff) can serve as the first chunk instead: the extender takes
IMAGE frames.

The official first chunk: diffusers' TextToVideoSD with DPM-Solver++ (multistep, 2nd order), 50 steps, CFG 9,
256x256, 16 frames; the host's ``dpmpp_2m`` with the ``normal`` scheduler is the closest match.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
from comfy_api.latest import io

from .comfy_model import KIND_BASE_UNET3D, require_model_kind
from .controlnet import check_conditioning_controls
from .validation import (check_decoded_frames, check_model_conditioning, check_sampled_latent, check_vae,
                         check_vae_channels, sampler_watch)

__all__ = ["sample_video_latent", "decode_video_latent", "step_callback", "InitialChunkNode", "NODES"]

LATENT_CHANNELS = 4
VAE_SCALE = 8


def step_callback(model: Any, pbar: comfy.utils.ProgressBar, offset: int, total: int) -> Callable:
    """A sampler callback advancing ``pbar`` to ``offset + step + 1`` of ``total`` with a preview of frame 0.

    Every step's prediction and state are checked for NaN/inf first (:func:`.validation.sampler_watch`, a float32
    sum of a tiny latent): a model whose output goes non-finite stops at that step with an error naming ``model``
    and the step, instead of sampling on and returning a NaN chunk.
    """
    previewer = latent_preview.get_previewer(model.load_device, model.model.latent_format)
    watches: dict[int, Any] = {}

    def callback(step: int, x0: torch.Tensor, x: torch.Tensor, total_steps: int) -> None:
        watch = watches.get(total_steps)
        if watch is None:
            watch = watches[total_steps] = sampler_watch(model, total_steps)
        watch(step, x0, x)
        preview = None
        if previewer is not None:
            preview = previewer.decode_latent_to_preview_image("JPEG", x0)
        pbar.update_absolute(offset + step + 1, total, preview)

    return callback


def sample_video_latent(
    model: Any,
    positive: list,
    negative: list,
    shape: tuple[int, ...],
    seed: int,
    steps: int,
    cfg: float,
    sampler_name: str,
    scheduler: str,
    callback: Callable | None = None,
) -> torch.Tensor:
    """One host sampling run from pure noise: a ``[1, 4, T, h, w]`` latent (unscaled VAE latent space).

    The noise is ``comfy.sample.prepare_noise`` of ``seed`` (CPU generator, as ``KSampler``), so a run is
    reproducible across devices.
    """
    latent = torch.zeros(shape, dtype=torch.float32)
    noise = comfy.sample.prepare_noise(latent, seed)
    samples = comfy.sample.sample(
        model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent,
        denoise=1.0, callback=callback, disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed,
    )
    return samples.to(torch.float32)


def decode_video_latent(vae: Any, latent: torch.Tensor) -> torch.Tensor:
    """Decode ``[1, 4, T, h, w]`` with the SD VAE frame by frame (batched by the host): IMAGE ``[T, H, W, 3]``.

    NaN/inf in the decoded frames raises :class:`~streamingt2v_core.checks.NonFiniteError` naming ``vae``; the
    callers check the latent itself first (:func:`.validation.check_sampled_latent`, with the model's advice).
    """
    frames = latent[0].movedim(1, 0)  # [T, 4, h, w]
    images = vae.decode(frames)
    if images.ndim == 5:  # some VAEs return [B, T, H, W, C]
        images = images.reshape(-1, *images.shape[-3:])
    # clamp keeps NaN: a VAE that overflowed must be named here, not passed on as a NaN chunk.
    check_decoded_frames(images, f"a latent of {latent.shape[2]} frames")
    return images[..., :3].clamp(0.0, 1.0)


class InitialChunkNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StreamingT2VInitialChunk",
            display_name="StreamingT2V Initial Chunk",
            category="StreamingT2V/sampling",
            description="Samples the first chunk (16 frames at 256x256 by default) with the ModelScope "
                        "text-to-video UNet3D through the host's sampler; returns the frames and the latent.",
            inputs=[
                io.Model.Input("model", tooltip="The ModelScope T2V UNet3D from 'StreamingT2V Model Loader' "
                                                "(modelscope_t2v_unet.safetensors)."),
                io.Conditioning.Input("positive", tooltip="Prompt, from CLIPTextEncode with the OpenCLIP-H text "
                                                          "encoder (CLIPLoader type stable_diffusion)."),
                io.Conditioning.Input("negative", tooltip="Negative prompt (an empty text is the official choice)."),
                io.Vae.Input("vae", tooltip="The SD VAE (scale 0.18215) used to decode the frames."),
                io.Int.Input("width", default=256, min=64, max=2048, step=8,
                             tooltip="Frame width in pixels (multiple of 8); StreamingT2V works at 256."),
                io.Int.Input("height", default=256, min=64, max=2048, step=8,
                             tooltip="Frame height in pixels (multiple of 8); StreamingT2V works at 256."),
                io.Int.Input("frames", default=16, min=8, max=256,
                             tooltip="Frames of the first chunk; the extender needs at least 8 (16 is the default)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the initial noise. A new node starts with 'control after generate' set to "
                                     "fixed: the first chunk is the identity of the Extend run it feeds, so "
                                     "queueing again then resumes that run; randomize starts a new video on every "
                                     "queue."),
                io.Int.Input("steps", default=50, min=1, max=1000, tooltip="Sampling steps (official: 50)."),
                io.Float.Input("cfg", default=9.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale (official first chunk: 9)."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="dpmpp_2m",
                               tooltip="Host sampler; dpmpp_2m is the official DPM-Solver++ multistep."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="normal",
                               tooltip="Host scheduler; normal spaces timesteps linearly like the official one."),
            ],
            outputs=[
                io.Image.Output("images", tooltip="The first chunk's frames, [T, H, W, 3] in [0, 1]."),
                io.Latent.Output("latent", tooltip="The sampled latent, 5-D [1, 4, T, H/8, W/8]."),
            ],
        )

    @classmethod
    def execute(cls, model, positive, negative, vae, width: int, height: int, frames: int, seed: int, steps: int,
                cfg: float, sampler_name: str, scheduler: str) -> io.NodeOutput:
        require_model_kind(model, KIND_BASE_UNET3D, "model")
        # A ControlNet from 'Apply ControlNet' steers frame i with control frame i (nodes/controlnet.py); one our
        # UNet cannot run is refused now, naming positive/negative.
        check_conditioning_controls(model, positive=positive, negative=negative)
        if vae is None:
            raise ValueError("vae: missing; connect a VAELoader with the SD VAE")
        for name, value in (("width", width), ("height", height)):
            if value % VAE_SCALE:
                raise ValueError(f"{name}: must be a multiple of {VAE_SCALE}, got {value}")
        if frames < 1:
            raise ValueError(f"frames: must be >= 1, got {frames}")
        # Text embeddings of another encoder's width (or none), NaN in them, a VAE of another latent width or NaN in
        # its weights: refused now, not found inside the sampler or after it.
        check_model_conditioning(model, positive, negative, model_label="the ModelScope T2V UNet3D")
        check_vae_channels(vae, model, strict=False)
        check_vae(vae)
        shape = (1, LATENT_CHANNELS, frames, height // VAE_SCALE, width // VAE_SCALE)
        pbar = comfy.utils.ProgressBar(steps)
        latent = sample_video_latent(model, positive, negative, shape, seed, steps, cfg, sampler_name, scheduler,
                                     callback=step_callback(model, pbar, 0, steps))
        check_sampled_latent(model, latent)
        images = decode_video_latent(vae, latent)
        return io.NodeOutput(images.to(comfy.model_management.intermediate_device()), {"samples": latent})


NODES: list[type[io.ComfyNode]] = [InitialChunkNode]
