"""StreamingT2V Refine: SDEdit over the whole long video with shared noise and randomized blending.

The node does what the official refiner does (study 4.4), on the host's machinery:

1. Each frame is resized to fit the working canvas (bilinear, as in the paper; 256x256 in
   1280x720 gives 720x720 content) and padded with black, then VAE-encoded chunk by chunk into
   one whole-video latent on the intermediate device (CPU). Pixels never exist for the whole
   video at the working size.
2. The host samples that latent (any sampler/scheduler of the host, DPM++ 2M SDE by default),
   SDEdit from ``t' = 1000 * denoise - 1`` (599 by default), with one noise tensor for the whole
   latent (shared noise) and :class:`nodes.context_blend.RandomizedBlendContextHandler` as the
   model's context handler: at every solver step the model runs on the refiner's windows
   (chunk 24, overlap 8 latent frames) and their x0-predictions are merged with randomized
   blending. CFG and the guidance rescale (0.2) are computed per window, as the official code
   does. The host's progress bar, previews and Cancel work as for any KSampler.
3. The latent is decoded chunk by chunk, the padding is cropped off (the official randomized
   path forgets this and returns 1280x720 with black bars) and the frames go either into the
   IMAGE output or, for long videos, straight into an mp4 (PyAV) returned as the host's VIDEO.

Works with our MS-Vid2Vid-XL UNet (a v-prediction MODEL from the StreamingT2V loader, with the
SD VAE) and with any host video model whose latents are ``[B, C, T, H, W]`` (Wan, HunyuanVideo,
LTX-Video, Mochi, Cosmos) with its own VAE. With a temporally compressing VAE (Wan: 4x) the
video is encoded in segments of about 33 frames (each padded to a length the VAE maps back
exactly), and ``chunk``/``overlap`` count latent frames.
"""
from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import torch

import comfy.context_windows as context_windows
import comfy.model_management
import comfy.patcher_extension
import comfy.sample
import comfy.samplers
import comfy.utils
import folder_paths
import latent_preview
from comfy_api.latest import InputImpl, Types, io

from streamingt2v_core.sampling.blending import BLEND_MODES
from streamingt2v_core.sampling.schedules import refiner_trailing_timesteps
from streamingt2v_core.video import (RESIZE_FILTERS, PadBox, StreamingVideoWriter, canvas_box, crop_frames,
                                     frame_chunks, pad_frames, resize_frames)

from .context_blend import apply_randomized_blending, check_video_model, validate_window_settings
from .previews import RefinePreviews
from .validation import (ModelSizes, NonFiniteError, all_finite, check_decoded_frames, check_refine_resources,
                         check_rgb_frames, check_vae_channels, refine_watch)

#: Our scheduler: the official refiner's "trailing" timesteps from t' down, in the model's sigmas.
TRAILING_SCHEDULER = "streamingt2v_trailing"
OUTPUT_MODES = ("images", "video_file")
#: First-try working size, chosen for a 12 GB GPU (README "Refine on a 12 GB GPU"): 16:9 like the
#: 1280x720 MS-Vid2Vid-XL was trained at, 80% of its side; 592 = 16 + 9 * 64 rows (the refiner's
#: resampling takes heights of 16 + 64k px), 1024 = 16 * 64 columns. A 256x256 video becomes 592x592
#: content. The paper's 1280x720 needs about 10.5 GB at fp16 (see the README).
DEFAULT_WIDTH, DEFAULT_HEIGHT = 1024, 592
RESIZE_MODES = ("pad", "stretch")
#: Pixels per VAE call for per-frame (image) VAEs (one 1280x720 frame, as the official code encodes
#: and decodes one frame at a time; several frames at small sizes), and the target length in frames
#: of one segment for temporally compressing video VAEs.
VAE_PIXELS_PER_CALL = 1280 * 720
VAE_MAX_FRAMES_PER_CALL = 8
VIDEO_VAE_SEGMENT = 33

#: Test hook: if set, called with the context handler the node creates (e.g. to observe windows).
handler_hook: Callable | None = None


@dataclass(frozen=True)
class Segment:
    """A piece of the video encoded on its own: pixel frames ``[pix_start, pix_end)`` (padded to
    ``padded`` frames by repeating the last one) give latent frames ``[lat_start, lat_end)``."""

    pix_start: int
    pix_end: int
    padded: int
    lat_start: int
    lat_end: int


def plan_segments(num_frames: int, vae) -> list[Segment]:
    """Split the video into VAE segments: one frame each for image VAEs (batched later), about
    ``VIDEO_VAE_SEGMENT`` frames for temporally compressing VAEs, each padded to the next length
    ``n`` with ``up(down(n)) == n`` so that decoding returns exactly the encoded frames."""
    ratio = getattr(vae, "downscale_ratio", 8)
    if getattr(vae, "latent_dim", 2) != 3 or not isinstance(ratio, tuple) or not callable(ratio[0]):
        return [Segment(i, i + 1, 1, i, i + 1) for i in range(num_frames)]
    down, up = vae.downscale_ratio[0], vae.upscale_ratio[0]
    segments, lat = [], 0
    for start, end in frame_chunks(num_frames, VIDEO_VAE_SEGMENT):
        padded = end - start
        while up(down(padded)) != padded:
            padded += 1
            if padded > end - start + 64:
                raise ValueError(f"vae: cannot find a frame count near {end - start} that this VAE decodes back exactly")
        n_lat = down(padded)
        segments.append(Segment(start, end, padded, lat, lat + n_lat))
        lat += n_lat
    return segments


def vae_stride(vae) -> int:
    """Pixels per latent cell of a host VAE (8 for the SD and Wan 2.1 VAEs)."""
    try:
        return int(vae.spacial_compression_encode())
    except Exception:  # noqa: BLE001 - very old VAE objects
        return 8


def spatial_stride(model, vae) -> int:
    """Pixels per latent cell times the model's spatial patch size (the size granularity)."""
    patch = getattr(model.get_model_object("diffusion_model"), "patch_size", 1)
    if isinstance(patch, (tuple, list)):
        patch = int(patch[-1])
    return vae_stride(vae) * (int(patch) if isinstance(patch, int) and patch > 0 else 1)


def sdedit_sigmas(model, scheduler: str, steps: int, denoise: float) -> torch.Tensor:
    """Sigmas of the SDEdit run (``steps + 1`` values, last 0).

    ``streamingt2v_trailing``: the official refiner's trailing timesteps from
    ``t' = round(1000 * denoise) - 1`` (599 for 0.6), mapped through the model's own
    ``model_sampling`` (for our refiner this gives the study's Appendix A sigmas 4.1648 ... 0.1229, 0).
    Host schedulers: the host's KSampler rule (``steps / denoise`` steps, keep the last ``steps``).
    """
    if not 0.0 < denoise <= 1.0:
        raise ValueError(f"denoise must be in (0, 1], got {denoise!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    model_sampling = model.get_model_object("model_sampling")
    if scheduler == TRAILING_SCHEDULER:
        t_start = int(round(1000 * denoise)) - 1
        if t_start < 1:
            raise ValueError(f"denoise must be at least 0.002 for the {TRAILING_SCHEDULER} scheduler, got {denoise}")
        timesteps = refiner_trailing_timesteps(steps, t_start)
        # percent_to_sigma is the one timestep->sigma map every host model_sampling has;
        # for discrete schedules it is sigma(t) with t = (1 - percent) * 999.
        sigmas = [float(model_sampling.percent_to_sigma(1.0 - float(t) / 999.0)) for t in timesteps]
        return torch.tensor(sigmas + [0.0], dtype=torch.float32)
    if scheduler not in comfy.samplers.KSampler.SCHEDULERS:
        raise ValueError(f"scheduler must be {TRAILING_SCHEDULER!r} or one of the host's schedulers, got {scheduler!r}")
    sampler = comfy.samplers.KSampler(model, steps=steps, device="cpu", sampler="euler", scheduler=scheduler,
                                      denoise=denoise, model_options=model.model_options)
    return sampler.sigmas.cpu().float()


class RefineInputs:
    """Validated settings of one refinement (raises ValueError naming the input)."""

    def __init__(self, images, model, vae, width: int, height: int, chunk: int, overlap: int,
                 blend_mode: str, resize_mode: str, upscale_method: str, output: str) -> None:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] < 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be an IMAGE batch [frames, height, width, 3], got {shape}")
        # The rules of every node (nodes/validation.py): NaN refused, alpha dropped and values a little outside
        # [0, 1] clamped (both with a note), 0..255 or [-1, 1] data refused.
        self.images, self.notes = check_rgb_frames(
            images, "images", consequence="the VAE would carry them into the latent and the windows holding them "
            "(and, through the blending, their neighbours) would come out NaN; fix or drop those frames")
        check_video_model(model, "model")
        validate_window_settings(chunk, overlap, blend_mode)
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
        if upscale_method not in RESIZE_FILTERS:
            raise ValueError(f"upscale_method must be one of {RESIZE_FILTERS}, got {upscale_method!r}")
        if output not in OUTPUT_MODES:
            raise ValueError(f"output must be one of {OUTPUT_MODES}, got {output!r}")
        check_vae_channels(vae, model)
        stride = spatial_stride(model, vae)
        # Models with further size rules (the MS-Vid2Vid-XL resampling: heights 16 + 64k px, widths 64k px); the
        # error lists the nearest sizes the model takes.
        check = getattr(getattr(model.get_model_object("diffusion_model"), "config", None), "check_latent_size", None)
        ModelSizes(stride, vae_stride(vae), check if callable(check) else None).check(width, height)
        self.segments = plan_segments(int(images.shape[0]), vae)
        self.latent_frames = self.segments[-1].lat_end
        if self.latent_frames < chunk:
            raise ValueError(
                f"images has {images.shape[0]} frames ({self.latent_frames} latent frames), fewer than one chunk "
                f"({chunk} latent frames): lower chunk or give a longer video")
        self.box: PadBox = canvas_box(int(images.shape[1]), int(images.shape[2]), height, width, resize_mode)
        self.stride = stride


def _segment_groups(segments: list[Segment], vae, box: PadBox) -> list[tuple[int, int]]:
    """Segments per VAE call: several single frames for image VAEs, one segment for video VAEs."""
    if getattr(vae, "latent_dim", 2) != 3:
        per_call = min(VAE_MAX_FRAMES_PER_CALL, max(1, VAE_PIXELS_PER_CALL // (box.canvas_height * box.canvas_width)))
        return list(frame_chunks(len(segments), per_call))
    return [(i, i + 1) for i in range(len(segments))]


def encode_video(images: torch.Tensor, vae, box: PadBox, segments: list[Segment], upscale_method: str) -> torch.Tensor:
    """VAE-encode the video chunk by chunk into one ``[1, C, L, h, w]`` latent on the CPU."""
    latent = None
    groups = _segment_groups(segments, vae, box)
    pbar = comfy.utils.ProgressBar(len(groups))
    for a, b in groups:
        comfy.model_management.throw_exception_if_processing_interrupted()
        first, last = segments[a], segments[b - 1]
        frames = images[first.pix_start:last.pix_end, :, :, :3].float()
        if last.padded > last.pix_end - last.pix_start and b - a == 1:
            frames = torch.cat([frames, frames[-1:].expand(last.padded - frames.shape[0], *frames.shape[1:])])
        frames = pad_frames(resize_frames(frames, box.height, box.width, upscale_method), box)
        encoded = vae.encode(frames).float().cpu()
        if not all_finite(encoded):  # the frames were checked finite: the VAE's (fp16 overflow, broken weights)
            raise NonFiniteError(f"vae: encoded frames {first.pix_start}-{last.pix_end - 1} to NaN or inf (the frames "
                                 f"are finite): load the VAE in fp32 or bf16; nothing was sampled", "vae")
        if encoded.ndim == 4:  # image VAE: [t, C, h, w] -> [1, C, t, h, w]
            encoded = encoded.movedim(0, 1).unsqueeze(0)
        if latent is None:
            latent = torch.zeros((1, encoded.shape[1], segments[-1].lat_end) + tuple(encoded.shape[3:]))
        latent[:, :, first.lat_start:last.lat_end] = encoded
        pbar.update(1)
    return latent


def decode_video(samples: torch.Tensor, vae, box: PadBox, segments: list[Segment], crop: bool,
                 sink: Callable[[int, torch.Tensor], None],
                 preview: Callable[[int, torch.Tensor], tuple | None] | None = None) -> None:
    """Decode ``[1, C, L, h, w]`` chunk by chunk; hand ``(first_frame_index, frames)`` to ``sink``.

    ``preview(first_frame_index, frames)`` may return a preview image for the progress bar (the node's preview of
    the frames decoded last, :meth:`.previews.RefinePreviews.decoded`)."""
    groups = _segment_groups(segments, vae, box)
    pbar = comfy.utils.ProgressBar(len(groups))
    for a, b in groups:
        comfy.model_management.throw_exception_if_processing_interrupted()
        first, last = segments[a], segments[b - 1]
        chunk = samples[:, :, first.lat_start:last.lat_end]
        if getattr(vae, "latent_dim", 2) != 3:
            chunk = chunk[0].movedim(1, 0)  # [t, C, h, w] for an image VAE
        frames = vae.decode(chunk)
        frames = frames.reshape(-1, *frames.shape[-3:])[: last.pix_end - first.pix_start].float().cpu()
        if not all_finite(frames):
            check_decoded_frames(frames, f"refined latent frames {first.lat_start}-{last.lat_end - 1} (video frames "
                                         f"{first.pix_start}-{last.pix_end - 1}; the frames before them were handed on)")
        if crop and not box.is_full:
            frames = crop_frames(frames, box)
        sink(first.pix_start, frames)
        pbar.update_absolute(pbar.current + 1, len(groups), preview(first.pix_start, frames) if preview else None)


def _watched(callback: Callable, watch: Callable) -> Callable:
    """The host's preview callback, after a NaN/inf check of the step's prediction and state."""
    def checked(step: int, x0: torch.Tensor, x: torch.Tensor, total_steps: int) -> None:
        watch(step, x0, x)
        if callback is not None:
            callback(step, x0, x, total_steps)

    return checked


def _with_step_progress(callback: Callable, previews: RefinePreviews) -> Callable:
    def stepped(step: int, x0: torch.Tensor, x: torch.Tensor, total_steps: int) -> None:
        callback(step, x0, x, total_steps)
        previews.step_done(step)

    return stepped


def refine_latent(model, vae_latent: torch.Tensor, positive, negative, *, seed: int, steps: int, cfg: float,
                  denoise: float, sampler_name: str, scheduler: str, chunk: int, overlap: int, blend_mode: str,
                  guidance_rescale: float, max_batch: int = 0, previews: RefinePreviews | None = None) -> torch.Tensor:
    """SDEdit of a whole-video latent through the host sampler with the blending context handler.

    ``max_batch``: windows per model call (0 = as many as free memory allows; the result is the same).
    ``previews``: the node's progress text (step, window) through the host's context-window callbacks.
    """
    patched, handler = apply_randomized_blending(model, chunk, overlap, blend_mode, seed,
                                                 guidance_rescale if cfg != 1.0 else 0.0, max_batch=max_batch)
    if handler_hook is not None:
        handler_hook(handler)
    sigmas = sdedit_sigmas(model, scheduler, steps, denoise)
    # One noise tensor over the whole latent: overlapping windows share their noise (paper 4.3).
    noise = comfy.sample.prepare_noise(vae_latent, seed)
    callback = _watched(latent_preview.prepare_callback(patched, len(sigmas) - 1),
                        refine_watch(model, len(sigmas) - 1, vae_latent.shape[2], chunk, overlap))
    if previews is not None:
        comfy.patcher_extension.add_callback_with_key(context_windows.IndexListCallbacks.EVALUATE_CONTEXT_WINDOWS,
                                                      "streamingt2v_previews", previews.context_window_callback(),
                                                      handler.callbacks)
        previews.start_sampling(handler.windows_for(vae_latent.shape[2]), len(sigmas) - 1)
        callback = _with_step_progress(callback, previews)
    disable_pbar = not comfy.utils.PROGRESS_BAR_ENABLED
    return comfy.sample.sample_custom(patched, noise, cfg, comfy.samplers.sampler_object(sampler_name), sigmas,
                                      positive, negative, vae_latent, callback=callback,
                                      disable_pbar=disable_pbar, seed=seed)


class Refine(io.ComfyNode):
    """IMAGE + MODEL + VAE + CONDITIONING -> the refined long video (IMAGE and VIDEO)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StreamingT2VRefine",
            display_name="StreamingT2V Refine",
            category="StreamingT2V/refine",
            description=(
                "Refine a long video of any length: SDEdit at the working size over overlapping chunks with one shared "
                "noise tensor and randomized blending of the chunks' x0-predictions at every sampler step (StreamingT2V's "
                "refiner). Works with the MS-Vid2Vid-XL refiner UNet and with any host video model with its VAE."),
            inputs=[
                io.Image.Input("images", tooltip="The long video to refine (e.g. the extender's frames)."),
                io.Model.Input("model", tooltip="The refiner: MS-Vid2Vid-XL from the StreamingT2V Model Loader, or any video model (Wan, HunyuanVideo, LTX-Video, ...)."),
                io.Vae.Input("vae", tooltip="The VAE of that model (SD VAE for MS-Vid2Vid-XL)."),
                io.Conditioning.Input("positive", tooltip="Text conditioning (the official refiner uses the prompt)."),
                io.Conditioning.Input("negative", tooltip="Negative conditioning (the official refiner uses an empty prompt)."),
                io.Int.Input("width", default=DEFAULT_WIDTH, min=16, max=8192, step=8,
                             tooltip="Working width in pixels: the frame is fitted into width x height and padded. The default 1024x592 fits a 12 GB GPU; the paper uses 1280x720 (16 GB+). MS-Vid2Vid-XL takes widths that are multiples of 64."),
                io.Int.Input("height", default=DEFAULT_HEIGHT, min=16, max=8192, step=8,
                             tooltip="Working height in pixels (default 592; the paper 720). MS-Vid2Vid-XL takes heights of 16 + a multiple of 64 (528, 592, 656, 720, ...)."),
                io.Combo.Input("resize_mode", options=list(RESIZE_MODES), default="pad",
                               tooltip="pad: keep the aspect ratio and pad with black (official: 256x256 -> 720x720 content in 1280x720); stretch: fill the working size."),
                io.Combo.Input("upscale_method", options=list(RESIZE_FILTERS), default="bilinear",
                               tooltip="Filter for resizing to the working size (bilinear in the paper)."),
                io.Int.Input("chunk", default=24, min=2, max=4096, tooltip="Frames per refiner chunk, in latent frames (24)."),
                io.Int.Input("overlap", default=8, min=0, max=4095, tooltip="Overlap of neighbouring chunks in latent frames (8); must be < chunk."),
                io.Float.Input("denoise", default=0.6, min=0.01, max=1.0, step=0.01,
                               tooltip="SDEdit strength: 0.6 starts at t'=599 of 1000 as the official refiner."),
                io.Int.Input("steps", default=30, min=1, max=1000, tooltip="Solver steps from t' down to 0 (30)."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, tooltip="Classifier-free guidance scale (7.5)."),
                io.Float.Input("guidance_rescale", default=0.2, min=0.0, max=1.0, step=0.01,
                               tooltip="Guidance rescale per chunk, in v-space, as the official refiner (0.2)."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="dpmpp_2m_sde",
                               tooltip="Host sampler (the official refiner: DPM++ 2M SDE)."),
                io.Combo.Input("scheduler", options=[TRAILING_SCHEDULER] + list(comfy.samplers.KSampler.SCHEDULERS),
                               default=TRAILING_SCHEDULER,
                               tooltip="streamingt2v_trailing: the official trailing timesteps from t'; or any host scheduler (then t' follows the host's denoise rule)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the shared noise, the SDE noise and the blend offsets. A new node starts with "
                                     "'control after generate' set to fixed, so queueing again (e.g. to resume the long "
                                     "run that feeds it) keeps this refinement instead of redoing it; randomize "
                                     "refines anew on every queue."),
                io.Combo.Input("blend_mode", options=list(BLEND_MODES), default="randomized",
                               tooltip="randomized: the paper's randomized blending; linear: crossfade; none: later chunks overwrite (baseline)."),
                io.Boolean.Input("crop_padding", default=True,
                                 tooltip="Cut the black padding off again (the official code forgets to and returns 1280x720)."),
                io.Combo.Input("output", options=list(OUTPUT_MODES), default="video_file",
                               tooltip="images: all frames as IMAGE (and VIDEO); video_file: stream frames into an mp4 and return it as VIDEO, with only the first frame as IMAGE (memory bounded in video length)."),
                io.Float.Input("fps", default=8.0, min=1.0, max=120.0, step=1.0, tooltip="Frame rate of the VIDEO output (StreamingT2V makes 8 fps)."),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="The refined frames (only the first frame when output is video_file)."),
                io.Video.Output(display_name="video", tooltip="The refined video (frames + fps); a file-backed video when output is video_file."),
            ],
        )

    @classmethod
    def execute(cls, images, model, vae, positive, negative, width: int, height: int, resize_mode: str,
                upscale_method: str, chunk: int, overlap: int, denoise: float, steps: int, cfg: float,
                guidance_rescale: float, sampler_name: str, scheduler: str, seed: int, blend_mode: str,
                crop_padding: bool, output: str, fps: float) -> io.NodeOutput:
        with torch.inference_mode():  # as under the host's executor; also when called directly
            return cls._refine(images, model, vae, positive, negative, width, height, resize_mode, upscale_method,
                               chunk, overlap, denoise, steps, cfg, guidance_rescale, sampler_name, scheduler, seed,
                               blend_mode, crop_padding, output, fps)

    @classmethod
    def _refine(cls, images, model, vae, positive, negative, width, height, resize_mode, upscale_method, chunk,
                overlap, denoise, steps, cfg, guidance_rescale, sampler_name, scheduler, seed, blend_mode,
                crop_padding, output, fps) -> io.NodeOutput:
        setup = RefineInputs(images, model, vae, width, height, chunk, overlap, blend_mode, resize_mode,
                             upscale_method, output)
        box = setup.box
        images = setup.images
        for note in setup.notes:
            logging.warning("StreamingT2V Refine: %s", note)
        # Before any work: the text embeddings' width and NaN, the VAE's weights, and the RAM the latent and output
        # need.
        check_refine_resources(positive, negative, vae, int(images.shape[0]), setup.latent_frames,
                               model.get_model_object("latent_format").latent_channels, vae_stride(vae), box,
                               crop_padding, output, model=model)
        logging.info("StreamingT2V Refine: %d frames, canvas %dx%d (content %dx%d), %d latent frames",
                     images.shape[0], width, height, box.width, box.height, setup.latent_frames)
        previews = RefinePreviews(int(images.shape[0]))
        latent = encode_video(images, vae, box, setup.segments, upscale_method)
        samples = refine_latent(model, latent, positive, negative, seed=seed, steps=steps, cfg=cfg, denoise=denoise,
                                sampler_name=sampler_name, scheduler=scheduler, chunk=chunk, overlap=overlap,
                                blend_mode=blend_mode, guidance_rescale=guidance_rescale, previews=previews)
        del latent
        out_h, out_w = (box.height, box.width) if crop_padding else (box.canvas_height, box.canvas_width)
        num_frames = int(images.shape[0])
        if output == "images":
            result = torch.empty((num_frames, out_h, out_w, 3), dtype=torch.float32)

            def sink(start: int, frames: torch.Tensor) -> None:
                result[start:start + frames.shape[0]] = frames

            decode_video(samples, vae, box, setup.segments, crop_padding, sink, previews.decoded)
            video = InputImpl.VideoFromComponents(Types.VideoComponents(images=result, frame_rate=Fraction(fps).limit_denominator(1001)))
            return io.NodeOutput(result, video)

        path = os.path.join(folder_paths.get_temp_directory(), f"streamingt2v_refined_{uuid.uuid4().hex[:12]}.mp4")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        first: list[torch.Tensor] = []
        with StreamingVideoWriter(path, width=out_w, height=out_h, fps=fps) as writer:
            def sink(start: int, frames: torch.Tensor) -> None:
                if not first:
                    first.append(frames[:1].clone())
                writer.write(frames)

            decode_video(samples, vae, box, setup.segments, crop_padding, sink, previews.decoded)
        return io.NodeOutput(first[0], InputImpl.VideoFromFile(path))


NODES = [Refine]
