"""Input checks the nodes share: what each node is given is checked before any sampling, and errors name the input.

The host-free parts (scans for NaN/inf, value ranges, the step check) live in :mod:`streamingt2v_core.checks`;
this module applies them to host types (IMAGE, CONDITIONING, VAE, MODEL) with the words a node needs:

* frames (``first_chunk``, ``anchor``, ``images``): shape, NaN/inf (refused, naming the frames), values outside
  [0, 1] (clamped with a note, or refused when they are another range);
* ``positive``/``negative``: NaN/inf in the text embeddings;
* ``vae``: NaN/inf in its weights, checked once per VAE object (a float32 sum per tensor, cached);
* ``model``: NaN/inf in the weights once at load time (:func:`check_model_weights`), and at every sampler step
  on the latent (:func:`sampler_watch`: a float32 sum of a chunk latent, well under 1% of a step, see
  ``bench/bench_finite_checks.py``); the error says which step and what to try (another dtype);
* sizes a model accepts: the nearest valid ones (:func:`nearest_valid_sizes`).
"""
from __future__ import annotations

import logging
import weakref
from typing import Any, Callable

import torch

from streamingt2v_core.checks import (FiniteWatch, NonFiniteError, all_finite, check_frames_finite, describe_indices,
                                      nonfinite_frames, nonfinite_parameters, unit_range)

__all__ = [
    "NonFiniteError",
    "check_image_batch",
    "check_conditioning",
    "check_vae",
    "check_model_weights",
    "precision_advice",
    "sampler_watch",
    "check_sampled_latent",
    "check_decoded_frames",
    "check_extend_frames",
    "check_anchor_embeddings",
    "check_extend_inputs",
    "check_rgb_frames",
    "alpha_note",
    "check_conditioning_shape",
    "check_model_conditioning",
    "long_prompt_note",
    "model_text_width",
    "check_vae_channels",
    "check_clip_vision",
    "clip_vision_width",
    "check_prompt_schedule",
    "nearest_valid_sizes",
    "ModelSizes",
    "all_finite",
    "check_refine_resources",
    "refine_watch",
]


logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------------------------------

def check_image_batch(images: Any, name: str, *, min_frames: int = 1, consequence: str,
                      min_frames_reason: str = "") -> torch.Tensor:
    """An IMAGE batch ``[T, H, W, C>=3]`` with at least ``min_frames`` frames and no NaN/inf; returns it.

    ``consequence`` says what NaN frames would do in this node (why it refuses them).
    """
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[-1] < 3:
        got = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        if torch.is_tensor(images) and images.ndim == 4 and images.shape[-1] in (1, 2):
            raise ValueError(f"{name}: expected RGB frames [frames, height, width, 3], got {got}: "
                             f"{images.shape[-1]} channel{'s' if images.shape[-1] > 1 else ''} (grayscale?); convert "
                             f"them to RGB first")
        raise ValueError(f"{name}: expected an IMAGE batch [frames, height, width, 3], got {got}")
    if images.shape[0] < min_frames:
        why = f" ({min_frames_reason})" if min_frames_reason else ""
        raise ValueError(f"{name}: needs at least {min_frames} frame{'s' if min_frames > 1 else ''}{why}, "
                         f"got {images.shape[0]}")
    if images.shape[1] < 1 or images.shape[2] < 1:
        raise ValueError(f"{name}: the frames are empty ({images.shape[2]}x{images.shape[1]} pixels)")
    check_frames_finite(images, name, consequence)
    return images


def alpha_note(images: torch.Tensor, name: str) -> str | None:
    """The note for the info output when ``images`` has an alpha channel, which every node drops (the models take
    RGB; the host's own VAE Encode does the same, silently); None for RGB."""
    if images.shape[-1] <= 3:
        return None
    return (f"{name}: the frames have {images.shape[-1]} channels (RGBA); the alpha channel was dropped, the RGB "
            f"values are used as they are (composite onto a background first if the transparent parts matter)")


def check_rgb_frames(images: Any, name: str, *, consequence: str, min_frames: int = 1,
                     min_frames_reason: str = "") -> tuple[torch.Tensor, list[str]]:
    """The rules every node applies to an IMAGE input, before any work: the shape and NaN/inf
    (:func:`check_image_batch`), an alpha channel dropped with a note, values a little outside [0, 1] clamped
    with a note, and other ranges (0..255, [-1, 1]) refused naming ``name`` (:func:`unit_range`). Returns the RGB
    frames and the notes for the node's output."""
    check_image_batch(images, name, min_frames=min_frames, consequence=consequence,
                      min_frames_reason=min_frames_reason)
    notes = [n for n in [alpha_note(images, name)] if n]
    images, note = unit_range(images[..., :3], name)
    if note:
        notes.append(note)
    return images, notes


def check_extend_frames(first_chunk: torch.Tensor, anchor: Any) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
    """Extend's frames: ``first_chunk`` and the optional ``anchor`` free of NaN/inf and in [0, 1].

    Values slightly outside [0, 1] are clamped and a note for the info output says so; [-1, 1] or 0..255 data is
    refused. Only frame 0 of ``anchor`` is used, so only it is checked. Returns ``(first_chunk, anchor, notes)``.
    """
    first_chunk, notes = check_rgb_frames(
        first_chunk, "first_chunk", consequence="the extender conditions each chunk on the last 8 frames, so NaN "
        "would spread into every chunk after them; fix or drop those frames")
    if anchor is not None:
        if torch.is_tensor(anchor) and anchor.ndim == 4 and anchor.shape[0] > 1:
            notes.append(f"anchor: {anchor.shape[0]} images given; only the first is used (the APM takes one anchor "
                         f"image)")
        if torch.is_tensor(anchor) and anchor.ndim == 4 and anchor.shape[0] < 1:
            raise ValueError(f"anchor: expected an IMAGE (frame 0 is the APM anchor), got {tuple(anchor.shape)}")
        anchor, anchor_notes = check_rgb_frames(
            anchor[:1] if torch.is_tensor(anchor) and anchor.ndim == 4 else anchor, "anchor",
            consequence="its CLIP embedding conditions every chunk (APM), so the whole video would be NaN")
        notes += anchor_notes
    return first_chunk, anchor, notes


def check_decoded_frames(frames: torch.Tensor, what: str) -> None:
    """Frames a VAE decoded from a finite latent: NaN/inf here is the VAE's (``what`` says which latent)."""
    bad = nonfinite_frames(frames)
    if bad:
        raise NonFiniteError(
            f"vae: decoded NaN or inf values in frames {describe_indices(bad)} of {frames.shape[0]} from {what}, "
            f"whose latent was finite: the VAE overflowed (fp16?); load it in fp32 or bf16 "
            f"(e.g. the host's --fp32-vae / --bf16-vae)", "vae", frames=bad)


# --------------------------------------------------------------------------------------------------------------------
# Conditioning, VAE, model weights
# --------------------------------------------------------------------------------------------------------------------

def check_conditioning(conditioning: Any, name: str) -> None:
    """NaN/inf in a CONDITIONING's embeddings (or its pooled output), naming ``name``."""
    if not isinstance(conditioning, list):
        return
    for i, entry in enumerate(conditioning):
        if not isinstance(entry, (list, tuple)) or not entry:
            continue
        tensors = [("text embedding", entry[0])]
        if len(entry) > 1 and isinstance(entry[1], dict):
            tensors.append(("pooled output", entry[1].get("pooled_output")))
        for what, tensor in tensors:
            if torch.is_tensor(tensor) and not all_finite(tensor):
                where = f" (entry {i + 1} of {len(conditioning)})" if len(conditioning) > 1 else ""
                raise NonFiniteError(f"{name}: the {what}{where} holds NaN or inf values (a broken text encoder, or "
                                     f"one overflowing in fp16: load it in fp32); the model would sample NaN",
                                     name)


#: Text-embedding widths of the usual text encoders, to say in an error which one made a CONDITIONING.
TEXT_ENCODER_WIDTHS = {
    768: "SD1.x's CLIP-L text encoder",
    1024: "OpenCLIP-H, the text encoder of SD2.x and StreamingT2V",
    1280: "an OpenCLIP-bigG text encoder",
    2048: "SDXL's text encoders, CLIP-L + OpenCLIP-bigG",
    4096: "a T5-XXL or LLM text encoder: Flux, SD3, Wan, ...",
}


def _encoder_name(width: int) -> str:
    return TEXT_ENCODER_WIDTHS.get(width, "another text encoder")


def check_conditioning_shape(conditioning: Any, name: str, *, width: int | None = None, tokens: int | None = None,
                             model_label: str = "the model") -> None:
    """A CONDITIONING's text embeddings ``[B, tokens, width]``: at least one token, ``width`` wide (the model's
    cross-attention width, when known) and, with ``tokens``, at least that many tokens; errors name ``name``.

    Refused here, before any sampling: inside the sampler a wrong width is a bare ``Sizes of tensors must match``
    and 0 tokens a ``ZeroDivisionError`` of the host's batching.
    """
    if not isinstance(conditioning, list):
        raise ValueError(f"{name}: expected a CONDITIONING (from CLIPTextEncode), got {type(conditioning).__name__}")
    if not conditioning:
        raise ValueError(f"{name}: the CONDITIONING is empty (no entry); connect CLIPTextEncode (an empty text is a "
                         f"valid negative)")
    for i, entry in enumerate(conditioning):
        where = f" (entry {i + 1} of {len(conditioning)})" if len(conditioning) > 1 else ""
        tensor = entry[0] if isinstance(entry, (list, tuple)) and entry else None
        if not torch.is_tensor(tensor) or tensor.ndim != 3:
            got = tuple(tensor.shape) if torch.is_tensor(tensor) else type(tensor).__name__
            raise ValueError(f"{name}: expected text embeddings [batch, tokens, width]{where}, got {got}")
        if tensor.shape[1] == 0:
            raise ValueError(f"{name}: the text embedding{where} has 0 tokens, so {model_label} has nothing to "
                             f"attend to; encode a text with CLIPTextEncode (even an empty text gives 77 tokens)")
        if width is not None and tensor.shape[-1] != width:
            raise ValueError(f"{name}: the text embedding{where} is {tensor.shape[-1]} wide "
                             f"({_encoder_name(int(tensor.shape[-1]))}), but {model_label} takes {width}-wide ones "
                             f"({_encoder_name(width)}); load that text encoder with CLIPLoader and encode the "
                             f"prompt with it")
        if tokens is not None and tensor.shape[1] < tokens:
            raise ValueError(f"{name}: the text embedding{where} has {tensor.shape[1]} tokens, but {model_label} "
                             f"takes {tokens} (as CLIPTextEncode gives them); encode the prompt with CLIPTextEncode")


def long_prompt_note(conditioning: Any, name: str, tokens: int, model_label: str = "the model") -> str | None:
    """A note for the info output when a CONDITIONING has more than ``tokens`` tokens (a prompt longer than one
    CLIP window of 75 words-pieces) and the model uses only the first ``tokens``; None otherwise."""
    longest = max((int(e[0].shape[1]) for e in conditioning or []
                   if isinstance(e, (list, tuple)) and e and torch.is_tensor(e[0]) and e[0].ndim == 3), default=0)
    if longest <= tokens:
        return None
    return (f"{name}: the prompt is {longest} tokens long; {model_label} uses the first {tokens} (one CLIP window, "
            f"about 75 word pieces), the rest is cut; shorten the prompt to use all of it")


def _core_config(model: Any) -> Any:
    """The ``streamingt2v_core`` config of one of our MODELs (None for another host model)."""
    inner = getattr(model, "model", None)
    return getattr(getattr(inner, "model_config", None), "core_config", None)


def model_text_width(model: Any) -> int | None:
    """The width of the text embeddings ``model`` cross-attends to, when it is known (our UNets: their
    ``cross_attention_dim``; host UNets: ``context_dim``); None when it cannot be read (then nothing is checked)."""
    config = _core_config(model)
    unet = getattr(config, "unet", config)
    width = getattr(unet, "cross_attention_dim", None)
    if isinstance(width, int):
        return width
    unet_config = getattr(getattr(getattr(model, "model", None), "model_config", None), "unet_config", None)
    width = unet_config.get("context_dim") if isinstance(unet_config, dict) else None
    return width if isinstance(width, int) and width > 0 else None


def check_model_conditioning(model: Any, positive: Any, negative: Any, *, model_label: str = "the model",
                             tokens: int | None = None) -> None:
    """``positive``/``negative`` fit ``model``: :func:`check_conditioning_shape` with the model's text width, then
    NaN/inf (:func:`check_conditioning`)."""
    width = model_text_width(model)
    for name, conditioning in (("positive", positive), ("negative", negative)):
        check_conditioning_shape(conditioning, name, width=width, tokens=tokens, model_label=model_label)
        check_conditioning(conditioning, name)


def check_vae_channels(vae: Any, model: Any, name: str = "vae", *, strict: bool = True) -> None:
    """The VAE makes the latents the model takes (channels), checked before any sampling: a 16-channel VAE (Flux,
    SD3, Wan) with a 4-channel SD-latent model is otherwise a bare conv error after the first chunk was sampled.
    ``strict``: refuse a VAE that does not say its channels (else such a VAE is let through)."""
    try:
        expected = model.get_model_object("latent_format").latent_channels
    except Exception:  # noqa: BLE001 - not a host ModelPatcher: nothing to compare with
        return
    got = getattr(vae, "latent_channels", None)
    if got == expected or (got is None and not strict):
        return
    raise ValueError(f"{name} makes {got if got is not None else '?'}-channel latents but the model expects "
                     f"{expected} channels: use the VAE that belongs to the model")


def clip_vision_width(clip_vision: Any) -> int | None:
    """The width of a host CLIP vision model's pooled, projected image embedding (``image_embeds``), read from its
    projection layer without encoding anything; None when it cannot be read."""
    projection = getattr(getattr(clip_vision, "model", None), "visual_projection", None)
    width = getattr(projection, "out_features", None)
    return width if isinstance(width, int) else None


_VISION_WIDTHS = {768: "CLIP ViT-L/14", 1024: "CLIP ViT-H/14", 1280: "CLIP ViT-bigG/14"}


def check_clip_vision(clip_vision: Any, width: int, embeds: torch.Tensor | None = None) -> None:
    """``clip_vision`` gives ``width``-wide image embeddings (the APM takes CLIP ViT-H/14's 1024): read from the
    model before any work, or from ``embeds`` it gave; the error names ``clip_vision``."""
    got = clip_vision_width(clip_vision) if embeds is None else int(embeds.shape[-1])
    if got is None or got == width:
        return
    raise ValueError(f"clip_vision: this image encoder gives {got}-wide image embeddings "
                     f"({_VISION_WIDTHS.get(got, 'another image encoder')}), but the extender's APM takes {width} "
                     f"({_VISION_WIDTHS.get(width, 'its image encoder')}); load "
                     f"{_VISION_WIDTHS.get(width, 'that model')} with CLIPVisionLoader (clip_vision_vit_h)")


# One check per VAE object (weights do not change under it); weak, so a VAE can be freed.
_CHECKED_VAES: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()


def check_vae(vae: Any, name: str = "vae") -> None:
    """NaN/inf in a host VAE's weights, naming ``name``; each VAE object is checked once (a float32 sum per
    tensor: 84 M parameters of the SD VAE in tens of milliseconds on a CPU)."""
    if vae is None:
        raise ValueError(f"{name}: missing; connect a VAELoader")
    try:
        if _CHECKED_VAES.get(vae):
            return
    except TypeError:  # not weak-referenceable: check every time
        pass
    module = getattr(vae, "first_stage_model", None)
    if isinstance(module, torch.nn.Module):
        bad = nonfinite_parameters(module)
        if bad:
            raise NonFiniteError(f"{name}: {_tensors(len(bad))} of the VAE hold{'s' if len(bad) == 1 else ''} NaN "
                                 f"or inf values (e.g. "
                                 f"{', '.join(bad[:3])}): the file is damaged; load another copy", name)
    try:
        _CHECKED_VAES[vae] = True
    except TypeError:
        pass


def _tensors(n: int) -> str:
    return f"{n} weight tensor{'' if n == 1 else 's'}"


def check_model_weights(module: torch.nn.Module, model_name: str, dtype: torch.dtype | None) -> None:
    """NaN/inf in a freshly loaded UNet, naming ``model_name`` (once at load time, not on every call).

    Weights that are finite in the file but infinite after the cast to fp16 (values beyond 65504) get the advice to
    load with bf16 or fp32.
    """
    bad = nonfinite_parameters(module)
    if not bad:
        return
    nan = any(bool(torch.isnan(dict(module.named_parameters()).get(n, torch.zeros(()))).any()) for n in bad[:8])
    example = ", ".join(bad[:3])
    if dtype == torch.float16 and not nan:
        raise NonFiniteError(f"model_name: {model_name!r} has weights beyond fp16's range (inf after the cast to "
                             f"fp16 in {_tensors(len(bad))}, e.g. {example}); load it with weight_dtype bf16 or fp32",
                             "model_name")
    raise NonFiniteError(f"model_name: {model_name!r} holds NaN or inf values in {_tensors(len(bad))} (e.g. "
                         f"{example}): the file is damaged or was saved from a diverged training run; nothing can be "
                         f"sampled with it. Load another copy (or re-convert the original)", "model_name")


# --------------------------------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------------------------------

def precision_advice(model: Any) -> str:
    """What to try when a model's output goes NaN or inf although its weights were finite at load time."""
    if model is None:
        return "the model's output overflowed: try weight_dtype bf16 or fp32 in its loader"
    try:
        dtype = model.model_dtype()
    except Exception:  # noqa: BLE001 - not a host ModelPatcher
        dtype = None
    if dtype == torch.float16:
        return ("the model computes in fp16, whose range (65504) its activations exceeded: load it with "
                "weight_dtype bf16 or fp32")
    if dtype == torch.bfloat16:
        return ("its weights were finite when loaded, so its computation overflowed: try weight_dtype fp32, fewer "
                "or weaker patches (LoRA, ControlNet strength) or a lower cfg")
    return ("its weights were finite when loaded and it computes in fp32, so its output itself is out of range: "
            "the weights are likely broken (a diverged fine-tune), or a patch (LoRA, ControlNet strength) or a "
            "high cfg pushes it there; try without them")


def sampler_watch(model: Any, steps: int, *, what: str = "the sampled latent", after: str = "",
                  describe: Callable[[list[int]], str] | None = None) -> FiniteWatch:
    """A :class:`~streamingt2v_core.checks.FiniteWatch` for a host sampler callback: names ``model`` and says what
    to try (``after``: what happened to the work so far)."""
    advice = precision_advice(model) + (f"; {after}" if after else "")
    return FiniteWatch(steps, input_name="model", what=what, advice=advice, frame_dim=2, describe=describe)


#: Largest magnitude of a VAE latent that can be a picture (SD VAE latents stay within about +-50); beyond it a
#: finite latent is the model's overflow, not something a VAE should be blamed for.
LATENT_LIMIT = 1e4


def check_sampled_latent(model: Any, latent: torch.Tensor, what: str = "the sampled latent") -> None:
    """The latent a sampler returned (after its last step, which no callback sees): finite, and within what a
    VAE latent can be (a finite latent of 1e30 is the model's overflow too)."""
    if not all_finite(latent):
        frames = nonfinite_frames(latent, 2) if latent.ndim == 5 else []
        where = f" in latent frames {describe_indices(frames)}" if frames else ""
        raise NonFiniteError(f"model: {what} holds NaN or inf values after the last step{where}; "
                             f"{precision_advice(model)}", "model", frames=frames)
    peak = float(latent.detach().abs().amax()) if latent.numel() else 0.0
    if peak > LATENT_LIMIT:
        raise NonFiniteError(f"model: {what} holds values up to {peak:.3g} after the last step (a VAE latent stays "
                             f"within about +-50); {precision_advice(model)}", "model")


# --------------------------------------------------------------------------------------------------------------------
# Extend specifics
# --------------------------------------------------------------------------------------------------------------------

def check_extend_inputs(first_chunk: torch.Tensor, anchor: Any, positive: Any, negative: Any,
                        vae: Any, *, model: Any = None,
                        clip_vision: Any = None) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
    """Everything Extend is given, before any sampling: ``first_chunk`` and ``anchor``
    (:func:`check_extend_frames`), ``positive``/``negative`` (NaN; with ``model`` also their width and token count,
    a prompt longer than the extender's 77 tokens gets a note), the ``vae``'s weights (and, with ``model``, its
    latent channels) and, with ``clip_vision``, its embedding width. Returns the (clamped, RGB) frames and the
    notes for the info output."""
    first_chunk, anchor, notes = check_extend_frames(first_chunk, anchor)
    if model is not None:
        config = _core_config(model)
        tokens = getattr(getattr(config, "unet", None), "text_tokens", 77)
        check_model_conditioning(model, positive, negative, model_label="the extender", tokens=tokens)
        notes += [n for n in (long_prompt_note(c, name, tokens, "the extender")
                              for name, c in (("positive", positive), ("negative", negative))) if n]
        check_vae_channels(vae, model, strict=False)
        if clip_vision is not None:
            check_clip_vision(clip_vision, int(getattr(config, "image_embed_dim", 1024)))
    else:
        check_conditioning(positive, "positive")
        check_conditioning(negative, "negative")
    check_vae(vae)
    for note in notes:
        logger.info("StreamingT2V Extend: %s", note)
    return first_chunk, anchor, notes


def check_anchor_embeddings(anchor_embeds: torch.Tensor, grey_embeds: torch.Tensor, width: int | None = None) -> None:
    """The APM embeddings of a finite anchor: NaN/inf here is the image encoder's, and so is a width other than
    ``width`` (an image encoder whose width could not be read before encoding)."""
    if width is not None:
        check_clip_vision(None, width, anchor_embeds)
    for what, tensor in (("the anchor frame", anchor_embeds), ("the grey frame of the negative", grey_embeds)):
        if not all_finite(tensor):
            raise NonFiniteError(f"clip_vision: gave NaN or inf embeddings for {what} (broken weights, or an fp16 "
                                 f"overflow: load it in fp32); the APM would make every chunk NaN", "clip_vision")


def check_prompt_schedule(schedule: list[tuple[int, str]], chunk_starts: list[int], total_frames: int) -> list[str]:
    """Entries past the end are refused; entries no chunk uses get a note (returned for the info output).

    A chunk takes the entry whose frame is the largest one <= its first new frame (``chunk_starts``: the first new
    frame of every sampled chunk). An entry at or past ``total_frames`` lies outside the video: almost always a
    typo or a video made shorter than planned, so it is refused before any sampling (an hour of sampling later a
    note would come too late). An entry inside the video that no chunk starts at or after (two entries inside one
    chunk, or one inside the last chunk) is only noted: the video is as long as asked.
    """
    notes: list[str] = []
    past = [(f, p) for f, p in schedule if f >= total_frames]
    if past:
        frame, prompt = past[0]
        raise ValueError(f"prompt_schedule: the entry '{frame}: {prompt}' starts at frame {frame}, past the end of the "
                         f"video (total_frames {total_frames}: frames 0-{total_frames - 1}); raise total_frames above "
                         f"{frame} or remove the entry")
    used = set()
    for start in chunk_starts:
        found = None
        for i, (frame, _) in enumerate(schedule):
            if frame <= start:
                found = i
        if found is not None:
            used.add(found)
    unused = [(frame, prompt) for i, (frame, prompt) in enumerate(schedule) if i not in used]
    where = (f"(prompts change only where a chunk's new frames start: frames "
             f"{', '.join(str(s) for s in chunk_starts[:6])}{', ...' if len(chunk_starts) > 6 else ''})")
    # A few unused entries are listed one by one; a long schedule gets one line (not one per entry).
    for frame, prompt in unused[:3] if len(unused) <= 3 else []:
        notes.append(f"prompt_schedule: the entry '{frame}: {prompt}' is used by no chunk {where}")
    if len(unused) > 3:
        notes.append(f"prompt_schedule: {len(unused)} of its {len(schedule)} entries are used by no chunk (frames "
                     f"{', '.join(str(f) for f, _ in unused[:5])}, ...) {where}")
    return notes


# --------------------------------------------------------------------------------------------------------------------
# Refine specifics
# --------------------------------------------------------------------------------------------------------------------

def refine_watch(model: Any, steps: int, latent_frames: int, chunk: int, overlap: int) -> FiniteWatch:
    """The step check of a refinement: says which of the refiner's windows hold the NaN, and that nothing was
    written (the whole video is denoised together: no window is finished before the last step)."""
    from streamingt2v_core.sampling.plans import refiner_plan

    windows = refiner_plan(latent_frames, chunk=chunk, overlap=overlap)

    def describe(frames: list[int]) -> str:
        hit = [i for i, (a, b) in enumerate(windows) if any(a <= f < b for f in frames)]
        return f"window{'s' if len(hit) > 1 else ''} {describe_indices(hit)} of {len(windows)} (counted from 0)"

    return sampler_watch(model, steps, what="the refined latent", describe=describe,
                         after="nothing was written (every window is denoised at every step, so none is finished "
                               "before the last one)")


def check_refine_resources(positive: Any, negative: Any, vae: Any, num_frames: int, latent_frames: int,
                           latent_channels: int, vae_stride: int, box: Any, crop_padding: bool, output: str, *,
                           model: Any = None) -> None:
    """Refine's checks before any work: NaN in the conditioning or the VAE's weights, and RAM.

    The whole-video latent lives on the CPU three times (the encoded video, the shared noise, the result); with
    ``output = images`` the float32 IMAGE of every refined frame comes on top. Too much is refused naming the input
    to change, before the encode starts (an hour of sampling must not end in an allocation error).
    """
    from streamingt2v_core.runs import memory as run_memory

    if model is not None:  # the text embeddings' width (when the model says it) and token count, then NaN
        check_model_conditioning(model, positive, negative, model_label="the refiner")
    else:
        check_conditioning(positive, "positive")
        check_conditioning(negative, "negative")
    check_vae(vae)
    cells = (box.canvas_height // vae_stride) * (box.canvas_width // vae_stride)
    latent_bytes = 3 * 4 * latent_channels * latent_frames * cells
    out_h, out_w = (box.height, box.width) if crop_padding else (box.canvas_height, box.canvas_width)
    image_bytes = run_memory.float_video_bytes(num_frames, out_h, out_w) if output == "images" else 0
    available = run_memory.available_ram_bytes()
    if run_memory.fits_in_ram(latent_bytes + image_bytes, available):
        return
    fmt = run_memory.format_bytes
    if image_bytes and run_memory.fits_in_ram(latent_bytes, available):
        raise ValueError(f"output: the {num_frames} refined frames at {out_w}x{out_h} need {fmt(image_bytes)} of RAM "
                         f"as an IMAGE (float32) besides {fmt(latent_bytes)} for the whole-video latent, more than "
                         f"fits in the {fmt(available)} available; set output to 'video_file' (the frames are "
                         f"streamed into an mp4, memory bounded in the video's length)")
    raise ValueError(f"images: {num_frames} frames ({latent_frames} latent frames) at {box.canvas_width}x"
                     f"{box.canvas_height} need {fmt(latent_bytes)} of RAM for the whole-video latent (the encoded "
                     f"video, its shared noise and the result), more than fits in the {fmt(available)} available; "
                     f"refine the video in parts or at a smaller width/height")


# --------------------------------------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------------------------------------

def nearest_valid_sizes(value: int, valid: Callable[[int], bool], *, limit: int = 8192) -> tuple[int | None, int | None]:
    """The nearest values below and above ``value`` for which ``valid`` holds (None where there is none)."""
    below = next((v for v in range(value - 1, 0, -1) if valid(v)), None)
    above = next((v for v in range(value + 1, limit + 1) if valid(v)), None)
    return below, above


def _progression(values: list[int]) -> str:
    """``[16, 80, 144]`` -> ``"of 16 + a multiple of 64"``; ``[64, 128]`` -> ``"that are multiples of 64"``."""
    if len(values) < 2:
        return "of " + ", ".join(str(v) for v in values)
    step = values[1] - values[0]
    offset = values[0] % step
    return f"that are multiples of {step}" if offset == 0 else f"of {offset} + a multiple of {step}"


class ModelSizes:
    """Which frame sizes a model and VAE take, from the model's own size check (right for any config).

    ``stride``: pixels per latent cell times the patch size (sides must be multiples of it); ``latent_check``: the
    model's check of a latent size, raising ``ValueError`` (e.g. MS-Vid2Vid-XL's resampling), or None.
    """

    def __init__(self, stride: int, vae_stride: int, latent_check: Callable[[int, int], None] | None) -> None:
        self.stride = stride
        self.vae_stride = vae_stride
        self.latent_check = latent_check
        # Rows and columns are independent in the resampling: test one side with a size the other side takes.
        self.reference = next(((h, w) for h in range(1, 65) for w in range(1, 65) if self._latent_ok(h, w)), (1, 1))

    def _latent_ok(self, h: int, w: int) -> bool:
        if self.latent_check is None:
            return True
        try:
            self.latent_check(h, w)
        except ValueError:
            return False
        return True

    def takes(self, name: str, value: int) -> bool:
        if value < 1 or value % self.stride:
            return False
        h, w = self.reference
        if name == "height":
            return self._latent_ok(value // self.vae_stride, w)
        return self._latent_ok(h, value // self.vae_stride)

    def advice(self, name: str, value: int) -> str:
        """``"it takes heights of 16 + a multiple of 64 px; the nearest are 656 and 720"``."""
        values = [v for v in range(1, 4096) if self.takes(name, v)][:3]
        options = [v for v in nearest_valid_sizes(value, lambda v: self.takes(name, v)) if v is not None]
        nearest = ("the nearest is " + str(options[0]) if len(options) == 1 else
                   "the nearest are " + " and ".join(str(v) for v in options) if options else "none is near")
        return f"it takes {name}s {_progression(values)} px; {nearest}"

    def closest(self, name: str, value: int) -> int | None:
        if self.takes(name, value):
            return value
        options = [v for v in nearest_valid_sizes(value, lambda v: self.takes(name, v)) if v is not None]
        return min(options, key=lambda v: abs(v - value)) if options else None

    def check(self, width: int, height: int) -> None:
        """Raise ``ValueError`` naming width/height, with the rule and the nearest sizes, if the model refuses."""
        for name, value in (("width", width), ("height", height)):
            if value % self.stride:
                raise ValueError(f"{name} must be a multiple of {self.stride} for this model and VAE (pixels per "
                                 f"latent cell times the model's patch size), got {value}; "
                                 f"{self.advice(name, value)}")
        bad = [(name, value) for name, value in (("width", width), ("height", height)) if not self.takes(name, value)]
        if not bad:
            return
        parts = [f"{name} {value} is refused: {self.advice(name, value)}" for name, value in bad]
        text = f"width/height: {width}x{height} pixels cannot be taken by this model: " + "; ".join(parts)
        w, h = self.closest("width", width), self.closest("height", height)
        if w and h:
            text += f". Closest size it takes: {w}x{h}"
        raise ValueError(text)
