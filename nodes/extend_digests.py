"""What a chunk of the extension depends on, as digests: the reuse rule of the run store.

A chunk is reused (from memory or from the run store) if and only if the digest of everything it
depends on matches: the model's weights and patches, the VAE, the negative prompt, the APM anchor
embedding, the latent size (:func:`base_digest`), the chunk's own settings (:func:`chunk_settings`:
its prompt, sampler, steps, CFG), its seed and the exact uint8 conditioning frames it was given
(:func:`chunk_digest`). The conditioning frames chain the digests: changing chunk ``k`` changes
what chunk ``k + 1`` sees, so every later chunk is made again.

:func:`chunk_settings` is the one place where a chunk's settings are assembled; anything new a
chunk depends on (control frames, colour matching...) is added there, and both the reuse rule
and the manifest follow.

A run's identity (:func:`run_identity`, what the "auto" run name looks up) is only its first
chunk at the working size: a run can be continued with other models, prompts or seeds, whose
chunks then sit next to the old ones in the same folder.
"""
from __future__ import annotations

import enum
import hashlib
import types
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "DIGEST_VERSION",
    "model_fingerprint",
    "vae_fingerprint",
    "conditioning_digest",
    "weights_fingerprint",
    "digest",
    "run_identity",
    "first_chunk_digest",
    "base_digest",
    "ChunkSettings",
    "chunk_settings",
    "chunk_digest",
    "host_model_fingerprint",
]

#: Bump when what a digest covers changes: old stored chunks are then not reused (they stay on disk).
#: v3: chunk seeds are derived anew (samplers.derive_seed no longer repeats across neighbouring base seeds).
DIGEST_VERSION = "streamingt2v-extend-v3"


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
    elif isinstance(value, (torch.dtype, torch.device, enum.Enum)):
        # Stable across processes (an id would not be: a host model's unet_config holds its dtype, and a restarted
        # server then re-sampled every stored chunk of Extend (video model)).
        h.update(repr(value).encode())
    elif isinstance(value, type) or (isinstance(value, types.FunctionType) and "<" not in value.__qualname__):
        # A class or a plain module-level function (the host's ops classes, a scheduler function): its dotted name.
        # Bound methods, partials, closures and lambdas carry state: they stay opaque (by identity, below).
        h.update(f"{getattr(value, '__module__', '')}.{value.__qualname__}".encode())
    elif _is_clip_vision_output(value):
        # The host's CLIP_VISION_OUTPUT (an I2V model's conditioning holds one): plain data, tensors as attributes.
        # By its values, so a restarted server reuses the chunks it conditioned.
        h.update(b"clip_vision_output")
        _update_value(h, dict(vars(value)), sample)
    else:
        # Opaque host objects (hooks, control nets...): their identity is all we can use (a new process makes
        # them anew, so such chunks are sampled again rather than wrongly reused).
        h.update(f"{type(value).__name__}@{id(value)}".encode())


def _is_clip_vision_output(value: Any) -> bool:
    cls = type(value)
    return cls.__module__ == "comfy.clip_vision" and cls.__name__ == "Output" and hasattr(value, "__dict__")


def digest(*parts: Any) -> str:
    """SHA-256 (hex) of values: tensors (shape, dtype, bytes), dicts, sequences, plain scalars."""
    h = hashlib.sha256()
    for p in parts:
        _update_value(h, p)
    return h.hexdigest()


#: CONDITIONING keys left out of :func:`conditioning_digest`: a ControlNet is digested per chunk, by the frames it
#: steers in that chunk (``chunk_settings`` -> ``control``), not by the object's identity.
_PER_CHUNK_KEYS = ("control", "control_apply_to_uncond")


def conditioning_digest(conditioning: list) -> str:
    h = hashlib.sha256()
    _update_value(h, [[c[0], {k: v for k, v in c[1].items() if k not in _PER_CHUNK_KEYS}] for c in conditioning])
    return h.hexdigest()


def weights_fingerprint(module: Any) -> str:
    """Identity of a module's weights (names, shapes, dtypes and a strided sample of the values); '' for None.
    Remembered per module object, so a ControlNet of a gigabyte is sampled once."""
    if module is None:
        return ""
    cached = getattr(module, "_streamingt2v_fingerprint", None)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        _update_tensor(h, tensor, sample=True)
    value = h.hexdigest()
    try:
        module._streamingt2v_fingerprint = value
    except AttributeError:
        pass
    return value


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


def first_chunk_digest(first_u8: torch.Tensor) -> str:
    """Digest of chunk 0: the first chunk's uint8 frames at the working size."""
    return digest(DIGEST_VERSION, "chunk0", first_u8)


def run_identity(first_u8: torch.Tensor) -> str:
    """A run's identity: its first chunk (uint8, working size, so also the frame size)."""
    return digest("streamingt2v-run-identity-v1", first_u8)


def base_digest(model: Any, vae: Any, negative: list, anchor_embeds: torch.Tensor, grey_embeds: torch.Tensor,
                latent_shape: tuple[int, ...]) -> str:
    """What every chunk of one extension shares: model + patches, VAE, negative prompt, anchor embeddings, latent size."""
    return digest(DIGEST_VERSION, model_fingerprint(model), vae_fingerprint(vae), conditioning_digest(negative),
                  anchor_embeds, grey_embeds, list(latent_shape))


@dataclass
class ChunkSettings:
    """Everything chunk ``index`` depends on besides its seed and conditioning frames.

    Attributes:
        readable: JSON values: stored in the manifest (``settings``) and compared by the web readout
            to tell, before queueing, which chunks will be reused. ``prompt`` there is informative
            only (the positive conditioning's digest covers it).
        hidden: values only digested (conditioning digests, tensors...).
    """

    readable: dict[str, Any] = field(default_factory=dict)
    hidden: dict[str, Any] = field(default_factory=dict)

    #: readable keys that are not part of the digest
    INFORMATIVE = ("prompt",)

    def digest_parts(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {k: v for k, v in self.readable.items() if k not in self.INFORMATIVE}, self.hidden


def chunk_settings(job: Any, index: int) -> ChunkSettings:
    """THE place where chunk ``index``'s settings are assembled (``job``: an ``extend_run.ExtensionJob``).

    Add anything new a chunk depends on here: to ``readable`` if the web readout can see it on the node (widget
    values), else to ``hidden``.
    """
    settings = ChunkSettings(
        readable={
            "steps": int(job.steps),
            "cfg": float(job.cfg),
            "sampler_name": job.sampler_name,
            "scheduler": job.scheduler,
            "width": int(job.width),
            "height": int(job.height),
            "prompt": job.prompt_for(index),
        },
        hidden={
            "base": job.base_digest,
            "positive": job.positive_digest(index),
        },
    )
    color_match = getattr(job, "color_match", "off")
    if color_match != "off":
        # Colour-drift correction changes the stored frames (and so every later chunk's conditioning). Only when on:
        # "off" chunks keep the digests they had before color_match existed, so old runs still resume.
        settings.readable["color_match"] = color_match
        if color_match == "anchor":  # matched to the first chunk's statistics: those are part of what it depends on
            settings.hidden["color_reference"] = list(job.color_reference.mean) + list(job.color_reference.std)
    controls = getattr(job, "controls", None)
    if controls is not None:
        # The ControlNets and the hint frames of this chunk's own 16-frame range (nodes/controlnet.py): changing
        # chunk k's control frames re-samples chunk k (and, through the conditioning frames, the chunks after it).
        settings.hidden["control"] = digest(controls.digest_parts(index, job.positive_for(index), job.negative))
    extra = job.extra_settings(index) if hasattr(job, "extra_settings") else None
    if extra is not None:  # another node's job (StreamingT2V Extend (video model)): method, lengths, anchor...
        settings.readable.update(extra[0])
        settings.hidden.update(extra[1])
    return settings


def chunk_digest(settings: ChunkSettings, seed: int, cond_u8: torch.Tensor) -> str:
    """The reuse key of a chunk: its settings, its seed and its exact uint8 conditioning frames."""
    readable, hidden = settings.digest_parts()
    return digest(DIGEST_VERSION, readable, hidden, int(seed), cond_u8)


# --------------------------------------------------------------------------------------------------------------------
# Host models of any size (StreamingT2V Extend (video model))
# --------------------------------------------------------------------------------------------------------------------

#: Values sampled per weight tensor: the fingerprint costs the same for a 1.3B and a 14B model (about a millisecond
#: per thousand tensors), never a read of all the weights.
SAMPLES_PER_TENSOR = 16


def _sample_bytes(t: torch.Tensor, n: int = SAMPLES_PER_TENSOR) -> bytes:
    """``n`` evenly strided values of a tensor as raw bytes (any dtype, fp8 included; no full copy)."""
    flat = t.detach().reshape(-1)
    if flat.numel() == 0:
        return b""
    if flat.element_size() == 1 and flat.dtype != torch.uint8:
        flat = flat.view(torch.uint8)  # fp8: numpy has no such dtype
    step = max(1, flat.numel() // n)
    picked = flat[::step][:n].contiguous()
    return picked.view(torch.uint8).to("cpu").numpy().tobytes()


def _base_weight(patcher: Any, key: str, tensor: torch.Tensor) -> torch.Tensor:
    """The unpatched weight of ``key``: a loaded ModelPatcher patches LoRAs into the weights in place and keeps the
    originals in ``backup``; the patches are fingerprinted apart."""
    backup = getattr(patcher, "backup", None) or {}
    held = backup.get(key)
    weight = getattr(held, "weight", None)
    return weight if torch.is_tensor(weight) else tensor


def host_model_fingerprint(model: Any) -> str:
    """Identity of a host MODEL (ModelPatcher) as sampled, in well under a second at any size.

    Covers: the model class and its config (``unet_config``, the dtype), every weight's name, shape and dtype with
    :data:`SAMPLES_PER_TENSOR` strided values of its unpatched weights (remembered per loaded model object), the
    patches (LoRA: keys, strengths, adapter type and sampled adapter tensors), object patches and the
    ``model_options`` (wrappers, CFG functions: opaque objects by identity, so a change samples again).
    """
    inner = model.model
    base = getattr(inner, "_streamingt2v_host_fingerprint", None)
    if base is None:
        h = hashlib.sha256()
        h.update(type(inner).__name__.encode())
        config = getattr(getattr(inner, "model_config", None), "unet_config", None)
        _update_value(h, config if isinstance(config, dict) else repr(config))
        prefix = "diffusion_model."
        for name, tensor in inner.diffusion_model.state_dict(keep_vars=True).items():
            tensor = _base_weight(model, prefix + name, tensor)
            h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            try:
                h.update(_sample_bytes(tensor))
            except (RuntimeError, TypeError):  # an exotic quantised tensor type: its name/shape/dtype only
                pass
        base = h.hexdigest()
        try:
            inner._streamingt2v_host_fingerprint = base
        except AttributeError:
            pass
    h = hashlib.sha256()
    h.update(base.encode())
    h.update(str(model.model_dtype()).encode())
    for key in sorted(model.patches):
        h.update(key.encode())
        for patch in model.patches[key]:
            strength_patch, adapter, strength_model = patch[0], patch[1], patch[2]
            h.update(repr((strength_patch, strength_model, type(adapter).__name__)).encode())
            weights = getattr(adapter, "weights", adapter)
            for t in (weights if isinstance(weights, (list, tuple)) else [weights]):
                if torch.is_tensor(t):
                    h.update(f"{tuple(t.shape)}{t.dtype}".encode())
                    h.update(_sample_bytes(t, 64))
                else:
                    _update_value(h, t)
    for key in sorted(model.object_patches):
        h.update(f"object_patch:{key}@{id(model.object_patches[key])}".encode())
    _update_value(h, model.model_options)
    return h.hexdigest()
