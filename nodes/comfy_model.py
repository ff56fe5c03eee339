"""Our UNets as real host ``MODEL``s.

A loaded StreamingT2V network (``streamingt2v_core``: the ModelScope ``UNet3D``, the extender, the MS-Vid2Vid-XL
refiner UNet) becomes a host ``BaseModel`` with a model config, wrapped in the host's ``ModelPatcher``. From then
on the host treats it like any of its own video models:

* samplers and schedulers: the model carries a host ``model_sampling`` (epsilon prediction and the ModelScope
  ``scaled_linear`` betas 0.00085..0.012 for the UNet3D and the extender; v-prediction and MS-Vid2Vid-XL's
  cosine-logSNR schedule rescaled to zero terminal SNR for the refiner), so every host sampler/scheduler works;
* LoRA: ``LoraLoaderModelOnly`` patches our weights; :func:`_streamingt2v_lora_keys` adds our key names (official
  checkpoint names, diffusers/peft names, kohya ``lora_unet_`` names) to the host's key map;
* memory management: every ``Linear``/``Conv``/``GroupNorm``/``LayerNorm`` leaf becomes the host's castable op
  class (``comfy.ops.disable_weight_init``), so low-VRAM partial loading, LoRA patches on offloaded weights and the
  host's per-op interrupt check (``run_every_op``) apply to our modules too; ``memory_required`` (what the host
  loads, offloads and batches cond/uncond by) is our fitted activation-memory model
  (``streamingt2v_core.models.memory_estimate``), not the host's generic guess, and ``memory_usage_factor`` is set
  to the value that makes the host's own formula agree with it;
* attention: the host's ``optimized_attention`` (xformers, sage, flash, pytorch, sub-quadratic...) is injected
  through the core models' ``set_attention_function``, with the softmax in fp32 (``attn_precision``) as the host
  does for the SD2 family (ModelScope's lineage) so non-fused attentions cannot overflow in fp16; every call is cut
  to the core's batch x heads limit (``streamingt2v_core.models.attention``).

Latents are 5-D ``[B, 4, T, H, W]`` like the host's other video models (latent format: the SD VAE's, scale
0.18215, with ``latent_dimensions = 3``).

The extender's extra inputs travel through the host's conditioning mechanism, never globals: a node puts the CAM
conditioning frames and the pooled CLIP image embedding of the APM anchor into the CONDITIONING dicts under
:data:`COND_FRAMES_KEY` and :data:`IMAGE_EMBEDS_KEY`; the host hands them to :meth:`StreamingT2VExtenderModel.
extra_conds`, which turns them into per-batch ``CONDRegular`` entries that arrive at :meth:`_apply_model`.
"""
from __future__ import annotations

import functools
import logging
from typing import Any

import torch
from torch import nn

import comfy.conds
import comfy.latent_formats
import comfy.lora
import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.ops
import comfy.supported_models_base

from streamingt2v_core.models.memory_estimate import FITS, MEASURED, SAFETY, activation_bytes, width_scale
from streamingt2v_core.models.unet3d import set_compute_dtype
from streamingt2v_core.sampling.schedules import alphas_cumprod_to_sigmas, refiner_alphas_cumprod

from . import controlnet

__all__ = [
    "KIND_BASE_UNET3D",
    "KIND_EXTENDER",
    "KIND_REFINER_UNET",
    "KIND_LABELS",
    "COND_FRAMES_KEY",
    "IMAGE_EMBEDS_KEY",
    "StreamingT2VLatentFormat",
    "StreamingT2VModelConfig",
    "StreamingT2VUNetModel",
    "StreamingT2VExtenderModel",
    "StreamingT2VRefinerModel",
    "wrap_core_model",
    "wrap_loaded_model",
    "FP8_DTYPES",
    "store_weights_in",
    "host_attention_function",
    "memory_usage_factor_for",
    "model_kind",
    "require_model_kind",
    "extender_config",
    "set_extender_conditioning",
]

logger = logging.getLogger(__name__)

KIND_BASE_UNET3D = "base_unet3d"
KIND_EXTENDER = "extender"
KIND_REFINER_UNET = "refiner_unet"

#: Words for error messages.
KIND_LABELS: dict[str, str] = {
    KIND_BASE_UNET3D: "ModelScope text-to-video UNet3D (initial chunk)",
    KIND_EXTENDER: "StreamingT2V extender (CAM + APM)",
    KIND_REFINER_UNET: "MS-Vid2Vid-XL refiner UNet",
}

#: CONDITIONING dict key: the CAM conditioning frames, ``[1, F_cond, 3, H, W]`` RGB in [-1, 1] (pixel size).
COND_FRAMES_KEY = "streamingt2v_cond_frames"
#: CONDITIONING dict key: pooled CLIP ViT-H image embedding of the APM anchor, ``[1, 1024]`` (grey image for the
#: negative/unconditional branch, as the official code).
IMAGE_EMBEDS_KEY = "streamingt2v_image_embeds"

# The text tokens the extender's APM mixers expect (Conv1d over 77 + 16 tokens).
_TEXT_TOKENS = 77


class StreamingT2VLatentFormat(comfy.latent_formats.SD15):
    """The SD VAE latent space (scale 0.18215) for 5-D video latents ``[B, 4, T, H, W]``."""

    latent_dimensions = 3

    def __init__(self) -> None:
        super().__init__(scale_factor=0.18215)
        # The SD TAESD decoder is 2-D; latent-to-RGB previews handle 5-D latents (frame 0 is shown).
        self.taesd_decoder_name = None


class StreamingT2VModelConfig(comfy.supported_models_base.BASE):
    """Host model config of our UNets (they are built by ``streamingt2v_core``, not by the host)."""

    unet_config: dict[str, Any] = {}
    unet_extra_config: dict[str, Any] = {}
    latent_format = StreamingT2VLatentFormat
    # The host's "linear" schedule is linear in sqrt(beta), i.e. diffusers' "scaled_linear": ModelScope T2V.
    sampling_settings = {"beta_schedule": "linear", "linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000}
    supported_inference_dtypes = [torch.float16, torch.bfloat16, torch.float32]
    # The host's generic factor (its formula: latent elements x dtype size x 0.01 x factor MiB); replaced per model
    # by the value equivalent to our fitted memory model (memory_usage_factor_for), which memory_required uses.
    memory_usage_factor = 1.5

    def __init__(self, kind: str, core_config: Any = None) -> None:
        super().__init__({"disable_unet_model_creation": True, "streamingt2v_kind": kind})
        self.streamingt2v_kind = kind
        self.core_config = core_config
        unet_config = getattr(core_config, "unet", core_config)
        if unet_config is not None and hasattr(unet_config, "block_out_channels"):
            self.memory_usage_factor = memory_usage_factor_for(kind, unet_config)


def memory_kind(kind: str) -> str:
    """The fitted memory model of a kind (the base UNet3D and the refiner share one)."""
    return "extender" if kind == KIND_EXTENDER else "unet3d"


def memory_usage_factor_for(kind: str, unet_config: Any) -> float:
    """The host ``memory_usage_factor`` that makes its formula (latent elements x dtype size x 0.01 x factor MiB)
    equal the part of our measured estimate that grows with the latent when forward chunking is on:
    ``kappa x SAFETY / (0.01 x 2^20)`` (0.32 for the published UNet3D, 0.57 for the extender: measured kappa
    2,884 and 5,184 elements per latent position)."""
    name = memory_kind(kind)
    ratio = FITS[name].kappa(width_scale(unet_config)) / FITS[name].kappa(64)
    return MEASURED[name].kappa * ratio * SAFETY / (0.01 * 2**20)


# --------------------------------------------------------------------------------------------------------------------
# Making our modules host-managed
# --------------------------------------------------------------------------------------------------------------------

_HOST_OPS = comfy.ops.disable_weight_init
_OP_SWAPS: dict[type, type] = {
    nn.Linear: _HOST_OPS.Linear,
    nn.Conv1d: _HOST_OPS.Conv1d,
    nn.Conv2d: _HOST_OPS.Conv2d,
    nn.Conv3d: _HOST_OPS.Conv3d,
    nn.GroupNorm: _HOST_OPS.GroupNorm,
    nn.LayerNorm: _HOST_OPS.LayerNorm,
}


def _adopt_host_ops(root: nn.Module) -> int:
    """Turn plain torch leaves into the host's castable op classes, in place; returns how many.

    The host's op classes subclass the torch ones and only add the weight-casting path (used when a module's
    weights stay on the CPU in low-VRAM mode or carry LoRA patches there) and a per-op interrupt check. The
    instance state is the torch one, so switching the class keeps weights and behaviour.
    """
    count = 0
    for module in root.modules():
        swap = _OP_SWAPS.get(type(module))
        if swap is not None:
            module.__class__ = swap
            count += 1
    return count


#: Weight-storage dtypes computed in another dtype (the host's UNETLoader ``weight_dtype`` fp8 options).
FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
_CASTABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: Kept in the compute dtype under fp8 storage: the APM resampler (22 M parameters) casts its input to its own
#: weight dtype.
_KEEP_COMPUTE_DTYPE = ("resampler.",)


def store_weights_in(root: nn.Module, dtype: torch.dtype) -> int:
    """Store the weights and biases of every Linear/Conv under ``root`` in ``dtype`` (fp8), in place; returns how many
    parameters. Those layers then become the host's manual-cast ops (weights cast to the input dtype per call, as the
    host runs its own fp8 models); norms, the APM resampler and loose parameters stay in the compute dtype. Over 99%
    of our UNets' parameters are Linear/Conv weights, so fp8 halves fp16's weight memory."""
    if dtype not in FP8_DTYPES:
        raise ValueError(f"dtype: expected one of {FP8_DTYPES}, got {dtype!r}")
    count = 0
    for name, module in root.named_modules():
        if not isinstance(module, _CASTABLE) or any(name.startswith(p) for p in _KEEP_COMPUTE_DTYPE):
            continue
        for pname, p in list(module.named_parameters(recurse=False)):
            setattr(module, pname, nn.Parameter(p.detach().to(dtype), requires_grad=False))
            count += 1
        # What the host's manual_cast op classes set; an instance attribute survives the host's low-VRAM
        # bookkeeping (it saves and restores comfy_cast_weights around partial loads).
        module.comfy_cast_weights = True
    return count


def _loose_parameters(root: nn.Module) -> list[tuple[nn.Module, str]]:
    """Parameters the host's partial loader will not move: those of modules that are not host ops (e.g. the APM
    gate ``alpha`` held by an attention module)."""
    loose = []
    for module in root.modules():
        if hasattr(module, "comfy_cast_weights"):
            continue
        for name, _ in module.named_parameters(recurse=False):
            loose.append((module, name))
    return loose


class StreamingT2VUNetModel(comfy.model_base.BaseModel):
    """A ``streamingt2v_core`` UNet as a host model: ModelScope UNet3D, epsilon prediction.

    ``diffusion_model`` is the core module itself, so its state-dict keys are ``diffusion_model.<core key>``
    (what the host's LoRA patching addresses).
    """

    streamingt2v_kind = KIND_BASE_UNET3D

    def __init__(
        self,
        model_config: StreamingT2VModelConfig,
        diffusion_model: nn.Module,
        model_type: comfy.model_base.ModelType = comfy.model_base.ModelType.EPS,
        device: torch.device | None = None,
    ) -> None:
        super().__init__(model_config, model_type, device=device)
        self.diffusion_model = diffusion_model
        self.diffusion_model.eval()
        self._loose = _loose_parameters(diffusion_model)

    # -- host plumbing --------------------------------------------------------------------------------------------
    def memory_required(self, input_shape, cond_shapes={}):
        """Bytes one forward on a latent of ``input_shape`` needs besides the weights (the host loads, offloads and
        batches by it). Our fitted activation model; the host's generic formula for other shapes."""
        unet_config = self._core_unet_config()
        if unet_config is None or len(input_shape) != 5:
            return super().memory_required(input_shape, cond_shapes)
        dtype = self.manual_cast_dtype if self.manual_cast_dtype is not None else self.get_dtype()
        return activation_bytes(memory_kind(self.streamingt2v_kind), unet_config, list(input_shape),
                                comfy.model_management.dtype_size(dtype))

    def _core_unet_config(self) -> Any:
        config = getattr(self.model_config, "core_config", None) or getattr(self.diffusion_model, "config", None)
        config = getattr(config, "unet", config)
        return config if hasattr(config, "block_out_channels") else None

    def get_dtype(self) -> torch.dtype:
        for p in self.diffusion_model.parameters():
            return p.dtype
        return torch.float32

    def _sync_loose_parameters(self, device: torch.device) -> None:
        # In low-VRAM mode the host moves only its op modules; the few parameters held elsewhere follow here.
        for module, name in self._loose:
            p = getattr(module, name)
            if p.device != device:
                p.data = p.data.to(device)

    def _forward_core(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor | None,
                      extra: dict[str, Any], control: Any = None) -> torch.Tensor:
        if context is None:
            raise ValueError(
                "positive/negative: the StreamingT2V UNet needs text conditioning (CLIPTextEncode with the "
                "OpenCLIP-H text encoder, CLIPLoader type 'stable_diffusion')"
            )
        return self.diffusion_model(x, timestep, context, control=control)

    def _apply_model(self, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):
        sigma = t
        xc = self.model_sampling.calculate_input(sigma, x)
        dtype = self.manual_cast_dtype if self.manual_cast_dtype is not None else self.get_dtype()
        device = xc.device
        xc = xc.to(dtype)
        # Integer DDPM step of each sigma (the host's inverse of its own sigma table).
        timestep = self.model_sampling.timestep(t).float()
        context = None
        if c_crossattn is not None:
            context = comfy.model_management.cast_to_device(c_crossattn, device, dtype)
        extra = {}
        for name, value in kwargs.items():
            if torch.is_tensor(value):
                value = comfy.model_management.cast_to_device(value, device, dtype)
            extra[name] = value
        self._sync_loose_parameters(device)
        # Per-frame ControlNet residuals (nodes/controlnet.py): one per skip connection + the mid block.
        residuals = controlnet.core_residuals(control, device, dtype)
        out = self._forward_core(xc, timestep, context, extra, residuals)
        return self.model_sampling.calculate_denoised(sigma, out.float(), x)


class StreamingT2VExtenderModel(StreamingT2VUNetModel):
    """The StreamingT2V extender (UNet3D + CAM + APM) as a host model, epsilon prediction.

    Besides text, each CONDITIONING entry must carry :data:`COND_FRAMES_KEY` (the CAM frames) and
    :data:`IMAGE_EMBEDS_KEY` (the anchor's pooled CLIP embedding; a grey image's for the negative), which
    :func:`set_extender_conditioning` adds.
    """

    streamingt2v_kind = KIND_EXTENDER

    def extra_conds(self, **kwargs):
        out = super().extra_conds(**kwargs)
        frames = kwargs.get(COND_FRAMES_KEY, None)
        if frames is not None:
            out["cond_frames"] = comfy.conds.CONDRegular(frames)
        embeds = kwargs.get(IMAGE_EMBEDS_KEY, None)
        if embeds is not None:
            out["image_embeds"] = comfy.conds.CONDRegular(embeds)
        return out

    def _forward_core(self, x, timestep, context, extra, control=None):
        if context is None or "cond_frames" not in extra or "image_embeds" not in extra:
            missing = [n for n, ok in (("text", context is not None), ("conditioning frames", "cond_frames" in extra),
                                       ("anchor image embedding", "image_embeds" in extra)) if not ok]
            raise ValueError(
                "model: the StreamingT2V extender needs " + ", ".join(missing) + " in its conditioning; sample it "
                "with the 'StreamingT2V Extend' node (a plain KSampler does not provide the CAM frames and the APM "
                "anchor)"
            )
        if context.shape[1] != _TEXT_TOKENS:
            if context.shape[1] > _TEXT_TOKENS:
                # The APM mixers are a Conv1d over exactly 77 text + 16 image tokens; longer prompts are cut.
                logger.warning("StreamingT2V extender: text conditioning has %d tokens; using the first %d",
                               context.shape[1], _TEXT_TOKENS)
                context = context[:, :_TEXT_TOKENS]
            else:
                raise ValueError(
                    f"positive/negative: the extender expects {_TEXT_TOKENS} text tokens (OpenCLIP-H, SD2 style), "
                    f"got {context.shape[1]}"
                )
        image_embeds = extra["image_embeds"]
        if image_embeds.ndim == 3 and image_embeds.shape[1] == 1:
            image_embeds = image_embeds[:, 0]
        return self.diffusion_model(x, timestep, context, image_embeds, extra["cond_frames"], control=control)


class StreamingT2VRefinerModel(StreamingT2VUNetModel):
    """The MS-Vid2Vid-XL refiner UNet as a host model: v-prediction, zero-terminal-SNR cosine-logSNR schedule."""

    streamingt2v_kind = KIND_REFINER_UNET

    def __init__(self, model_config, diffusion_model, device=None) -> None:
        super().__init__(model_config, diffusion_model, comfy.model_base.ModelType.V_PREDICTION, device=device)
        abar = refiner_alphas_cumprod().clone()
        # An exact 0 (zero terminal SNR) has an infinite k-diffusion sigma; clamp it as the host's own zero-SNR
        # rescale does.
        abar[-1] = 4.8973451890853435e-08
        self.model_sampling.set_sigmas(alphas_cumprod_to_sigmas(abar).float())


_MODEL_CLASSES: dict[str, type[StreamingT2VUNetModel]] = {
    KIND_BASE_UNET3D: StreamingT2VUNetModel,
    KIND_EXTENDER: StreamingT2VExtenderModel,
    KIND_REFINER_UNET: StreamingT2VRefinerModel,
}


def wrap_core_model(
    module: nn.Module,
    kind: str,
    config: Any = None,
    load_device: torch.device | None = None,
    offload_device: torch.device | None = None,
    compute_dtype: torch.dtype | None = None,
) -> comfy.model_patcher.ModelPatcher:
    """Wrap a ``streamingt2v_core`` module with its weights as a host ``MODEL`` (a ``ModelPatcher``).

    Args:
        module: ``UNet3D`` (kind ``base_unet3d`` or ``refiner_unet``) or ``StreamingT2VExtender`` (``extender``),
            weights loaded, in the dtype it should run in. It is adopted (its leaves become host ops), not copied.
        kind: one of ``base_unet3d``, ``extender``, ``refiner_unet``.
        config: the core config, kept on the model config (``model.model.model_config.core_config``).
        load_device / offload_device: default to the host's choices for diffusion models.
        compute_dtype: the dtype to compute in when the weights are stored in fp8 (:func:`store_weights_in`);
            required then, ignored otherwise.
    """
    if kind not in _MODEL_CLASSES:
        raise ValueError(f"kind: expected one of {sorted(_MODEL_CLASSES)}, got {kind!r}")
    if not isinstance(module, nn.Module):
        raise ValueError(f"module: expected a torch nn.Module, got {type(module).__name__}")
    load_device = load_device or comfy.model_management.get_torch_device()
    offload_device = offload_device or comfy.model_management.unet_offload_device()
    _adopt_host_ops(module)
    if hasattr(module, "set_attention_function"):
        module.set_attention_function(host_attention_function())
    model_config = StreamingT2VModelConfig(kind, config if config is not None else getattr(module, "config", None))
    dtype = next(module.parameters()).dtype
    if dtype in FP8_DTYPES:
        if compute_dtype is None or compute_dtype in FP8_DTYPES:
            raise ValueError(f"compute_dtype: weights stored in {dtype} need a float16/bfloat16/float32 compute dtype, "
                             f"got {compute_dtype}")
        # The host's way for fp8 storage: manual_cast_dtype is what apply_model casts inputs to; the core model
        # computes in it too (its own input casts follow compute_dtype instead of the fp8 weights).
        set_compute_dtype(module, compute_dtype)
        model_config.set_inference_dtype(dtype, compute_dtype)
    else:
        model_config.set_inference_dtype(dtype, None)
    model = _MODEL_CLASSES[kind](model_config, module).to(offload_device)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)
    # The host's ControlNets (Apply ControlNet) run per frame on our 5-D latents.
    return controlnet.register(patcher)


def host_attention_function():
    """The host's ``optimized_attention`` with the softmax in fp32 (``attn_precision``), as the host runs the SD2
    family: fused kernels (PyTorch SDPA, xformers, flash, sage) accumulate in fp32 anyway; the host's basic, split and
    sub-quadratic attentions otherwise compute ``QK^T`` in fp16, which overflows for large activations."""
    from comfy.ldm.modules.attention import optimized_attention

    return functools.partial(optimized_attention, attn_precision=torch.float32)


def wrap_loaded_model(loaded: Any) -> comfy.model_patcher.ModelPatcher:
    """Wrap a ``streamingt2v_core.models.loading.LoadedModel`` (fields ``kind``, ``config``, ``model``)."""
    return wrap_core_model(loaded.model, loaded.kind, loaded.config)


def model_kind(model: Any) -> str | None:
    """``base_unet3d`` / ``extender`` / ``refiner_unet`` for one of our MODELs, None for any other host model."""
    inner = getattr(model, "model", None)
    return getattr(inner, "streamingt2v_kind", None)


def require_model_kind(model: Any, expected: str, input_name: str = "model") -> None:
    """Raise a ``ValueError`` naming ``input_name`` when ``model`` is not one of our MODELs of kind ``expected``."""
    kind = model_kind(model)
    if kind == expected:
        return
    if model is None:
        raise ValueError(f"{input_name}: missing; connect a {KIND_LABELS[expected]} from 'StreamingT2V Model Loader'")
    if kind is None:
        what = type(getattr(model, "model", model)).__name__
        raise ValueError(
            f"{input_name}: expected a {KIND_LABELS[expected]} loaded with 'StreamingT2V Model Loader', got a host "
            f"model of type {what}"
        )
    raise ValueError(
        f"{input_name}: expected a {KIND_LABELS[expected]}, got a {KIND_LABELS.get(kind, kind)}; pick the matching "
        "checkpoint in 'StreamingT2V Model Loader'"
    )


def extender_config(model: Any) -> Any:
    """The core ``ExtenderConfig`` of an extender MODEL (None if unknown)."""
    return getattr(model.model.model_config, "core_config", None)


def set_extender_conditioning(conditioning: list, cond_frames: torch.Tensor, image_embeds: torch.Tensor) -> list:
    """A copy of a CONDITIONING list whose entries carry the CAM frames and the APM anchor embedding.

    Args:
        conditioning: host CONDITIONING (list of ``[tensor, dict]``); not modified.
        cond_frames: ``[F_cond, 3, H, W]`` or ``[1, F_cond, 3, H, W]`` RGB in [-1, 1].
        image_embeds: ``[1024]`` or ``[1, 1024]`` pooled CLIP image embedding.
    """
    if cond_frames.ndim == 4:
        cond_frames = cond_frames.unsqueeze(0)
    if cond_frames.ndim != 5 or cond_frames.shape[2] != 3:
        raise ValueError(f"cond_frames: expected [1, F, 3, H, W] RGB frames, got {tuple(cond_frames.shape)}")
    if image_embeds.ndim == 1:
        image_embeds = image_embeds.unsqueeze(0)
    if image_embeds.ndim != 2:
        raise ValueError(f"image_embeds: expected [1, D] pooled image embedding, got {tuple(image_embeds.shape)}")
    out = []
    for tensor, values in conditioning:
        values = values.copy()
        values[COND_FRAMES_KEY] = cond_frames
        values[IMAGE_EMBEDS_KEY] = image_embeds
        out.append([tensor, values])
    return out


# --------------------------------------------------------------------------------------------------------------------
# LoRA key map
# --------------------------------------------------------------------------------------------------------------------

def _lora_names_for(model: Any) -> dict[str, str]:
    """LoRA key -> model state-dict key for our modules (on top of the host's generic ``diffusion_model.*`` and
    ``lora_unet_*`` names, which already cover the core key names)."""
    out: dict[str, str] = {}
    kind = model.streamingt2v_kind
    for full in model.state_dict().keys():
        if not full.startswith("diffusion_model.") or not full.endswith(".weight"):
            continue
        key = full[len("diffusion_model."):-len(".weight")]
        names = [key]  # the checkpoint's own names (official ones for the extender)
        if kind == KIND_EXTENDER:
            if key.startswith("base_model."):
                inner = key[len("base_model."):]
                # LoRAs trained on the ModelScope T2V UNet (kohya / diffusers names) apply to the extender's
                # base UNet; the community repack calls the base model "unet." and the CAM "controlnet.".
                names += [f"lora_unet_{inner.replace('.', '_')}"]
            elif key.startswith("unet."):
                names += ["controlnet." + key[len("unet."):]]
        else:
            names += ["unet." + key, f"lora_unet_{key.replace('.', '_')}"]
        for name in list(names):
            if ".to_" in name and not name.startswith("lora_unet_"):
                alt = name.replace(".to_", ".processor.to_")
                if alt.endswith(".to_out.0"):
                    alt = alt[:-2]
                names.append(alt)
        for name in names:
            out.setdefault(name, full)
    return out


_HOST_LORA_KEYS = getattr(comfy.lora.model_lora_keys_unet, "_streamingt2v_original", comfy.lora.model_lora_keys_unet)


def _streamingt2v_lora_keys(model, key_map={}):
    key_map = _HOST_LORA_KEYS(model, key_map)
    # Duck-typed (not isinstance): a second import of this module (another package path) must still match.
    if getattr(model, "streamingt2v_kind", None) in KIND_LABELS and hasattr(model, "diffusion_model"):
        for name, target in _lora_names_for(model).items():
            key_map.setdefault(name, target)
    return key_map


_streamingt2v_lora_keys._streamingt2v_original = _HOST_LORA_KEYS  # type: ignore[attr-defined]
# The host has no per-model hook for LoRA names; chain ours in front of its function (idempotent on reload).
comfy.lora.model_lora_keys_unet = _streamingt2v_lora_keys
