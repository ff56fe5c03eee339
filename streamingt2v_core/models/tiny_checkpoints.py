"""Tiny random checkpoints in the real file layouts, for tests, host tests and the demo.

No model hub is reachable in tests or CI, so every loader format is exercised with small random weights written
in exactly the layout the real files use (see :mod:`.loading`):

=============================== ============ =========================================================================
layout                          kinds        file
=============================== ============ =========================================================================
``official_streaming_t2v_ckpt`` extender     Lightning-style zip pickle ``{"state_dict", "optimizer_states", "epoch",
                                             ...}`` with ``image_encoder.``/``text_encoder.``/``vae.`` entries
``community_repack``            extender     safetensors, ``unet.``/``controlnet.``/``resampler.`` (+ ``vae.``,
                                             ``text_encoder.``)
``diffusers_unet3d``            base_unet3d, ``diffusion_pytorch_model.safetensors`` (or ``.bin`` by suffix)
                                refiner_unet
``ms_vid2vid_xl``               refiner_unet ``non_ema_0035000.pth``-style LDM names (under ``state_dict`` as published, or
                                             a raw dict)
``modelscope_t2v``              base_unet3d  ``text2video_pytorch_model.pth``: the same LDM names, a raw dict as published
``converted_safetensors``       any          our own safetensors with metadata
=============================== ============ =========================================================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .key_maps import UNetKeyMap, UNetLayout, official_to_repack_key
from .loading import FORMATS, KINDS, build_model, default_config, save_converted

__all__ = ["LAYOUTS", "LAYOUT_ALIASES", "write_tiny_checkpoint", "random_state_dict"]

#: Layouts each kind can be written in.
LAYOUTS: dict[str, tuple[str, ...]] = {
    "extender": ("official_streaming_t2v_ckpt", "community_repack", "converted_safetensors"),
    "base_unet3d": ("diffusers_unet3d", "modelscope_t2v", "converted_safetensors"),
    "refiner_unet": ("ms_vid2vid_xl", "diffusers_unet3d", "converted_safetensors"),
}

#: Short names accepted for ``layout``.
LAYOUT_ALIASES: dict[str, str] = {
    "official": "official_streaming_t2v_ckpt",
    "ckpt": "official_streaming_t2v_ckpt",
    "repack": "community_repack",
    "diffusers": "diffusers_unet3d",
    "ms_vid2vid": "ms_vid2vid_xl",
    "vid2vid": "ms_vid2vid_xl",
    "text2video": "modelscope_t2v",
    "t2v_pth": "modelscope_t2v",
    "converted": "converted_safetensors",
}

# A few real key names of the parts the loader must skip (shapes shrunk: only the names matter).
_OFFICIAL_EXTRA_PARTS: dict[str, tuple[int, ...]] = {
    "image_encoder.model.logit_scale": (),
    "image_encoder.model.positional_embedding": (7, 4),
    "image_encoder.model.visual.conv1.weight": (4, 3, 2, 2),
    "image_encoder.model.visual.proj": (4, 4),
    "text_encoder.text_model.embeddings.token_embedding.weight": (11, 4),
    "text_encoder.text_model.final_layer_norm.bias": (4,),
    "text_encoder.text_model.final_layer_norm.weight": (4,),
    "vae.decoder.conv_out.bias": (3,),
    "vae.decoder.conv_out.weight": (3, 4, 3, 3),
    "vae.encoder.conv_in.weight": (4, 3, 3, 3),
}
_REPACK_EXTRA_PARTS: dict[str, tuple[int, ...]] = {
    "text_encoder.text_model.final_layer_norm.weight": (4,),
    "vae.decoder.conv_out.bias": (3,),
    "vae.encoder.conv_in.weight": (4, 3, 3, 3),
}


def _resolve_layout(kind: str, layout: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    resolved = LAYOUT_ALIASES.get(layout, layout)
    if resolved not in FORMATS:
        raise ValueError(f"layout: expected one of {FORMATS} (or {sorted(LAYOUT_ALIASES)}), got {layout!r}")
    if resolved not in LAYOUTS[kind]:
        raise ValueError(f"layout: a {kind} cannot be written as {resolved}; expected one of {LAYOUTS[kind]}")
    return resolved


def random_state_dict(
    kind: str, config: Any, seed: int = 0, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """Our module's state dict with seeded random weights (our key names).

    Drawn from the shapes alone (the module is built on the meta device, so no initialisation runs): matrices and
    kernels ~ N(0, 1/fan_in), vectors of norm scales ~ 1 + N(0, 0.02^2), biases and scalars ~ N(0, 0.02^2). Every
    tensor is non-zero, including those the modules zero-initialise (merger ``proj_out``, E_cond ``conv_out``, APM
    ``alpha``), so a layout test catches any key or reshape mistake, and activations stay O(1) so a forward pass
    is numerically sane. Uses its own generator; the global RNG is untouched.
    """
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, meta in build_model(kind, config, device="meta").state_dict().items():
        values = torch.randn(meta.shape, generator=generator, dtype=torch.float32)
        if meta.dim() >= 2:
            values *= meta[0].numel() ** -0.5  # fan_in of a Linear / Conv weight
        elif key.endswith("weight"):
            values = 1.0 + 0.02 * values  # GroupNorm / LayerNorm scale
        else:
            values *= 0.02
        state[key] = values.to(dtype)
    return state


def write_tiny_checkpoint(
    path: str | os.PathLike,
    kind: str,
    layout: str,
    seed: int = 0,
    config: Any = None,
    *,
    dtype: torch.dtype = torch.float32,
    under_state_dict: bool | None = None,
) -> dict[str, torch.Tensor]:
    """Save tiny random weights of ``kind`` in a real checkpoint ``layout`` and return them in our key naming.

    Args:
        path: output file (parent folders are created). For ``diffusers_unet3d`` a ``.bin`` suffix writes a torch
            pickle, anything else safetensors.
        kind: ``"extender"``, ``"base_unet3d"`` or ``"refiner_unet"``.
        layout: one of :data:`LAYOUTS` ``[kind]`` (or a short alias from :data:`LAYOUT_ALIASES`).
        seed: weights are a deterministic function of (kind, config, seed).
        config: defaults to the kind's ``tiny()`` preset.
        dtype: dtype of the saved floating tensors.
        under_state_dict: LDM layouts only: wrap the weights as ``{"state_dict": ...}``; default as published
            (``ms_vid2vid_xl`` wrapped, ``modelscope_t2v`` a bare dict).

    Returns:
        The state dict :func:`~streamingt2v_core.models.loading.load_model` must give back (our key names).
    """
    resolved = _resolve_layout(kind, layout)
    config = config if config is not None else default_config(kind, "tiny")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = random_state_dict(kind, config, seed=seed, dtype=dtype)
    generator = torch.Generator().manual_seed(seed + 2)

    def extras(names: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
        return {k: torch.randn(s, generator=generator).to(dtype) for k, s in names.items()}

    if resolved == "official_streaming_t2v_ckpt":
        state_dict = dict(state)
        state_dict.update(extras(_OFFICIAL_EXTRA_PARTS))
        trainable = sorted(state)[:3]
        optimizer_state = {
            i: {
                "step": torch.tensor(1.0),
                "exp_avg": torch.zeros_like(state[k]),
                "exp_avg_sq": torch.zeros_like(state[k]),
            }
            for i, k in enumerate(trainable)
        }
        checkpoint = {
            "epoch": 0,
            "global_step": 0,
            "pytorch-lightning_version": "2.0.9",
            "state_dict": state_dict,
            "optimizer_states": [{"state": optimizer_state, "param_groups": [{"lr": 5e-5, "params": [0, 1, 2]}]}],
            "lr_schedulers": [],
        }
        torch.save(checkpoint, path)
    elif resolved == "community_repack":
        from safetensors.torch import save_file

        tensors = {official_to_repack_key(k): v for k, v in state.items()}
        tensors.update(extras(_REPACK_EXTRA_PARTS))
        save_file(tensors, str(path))
    elif resolved == "diffusers_unet3d":
        tensors = dict(state)
        if path.suffix == ".bin":
            torch.save(tensors, path)
        else:
            from safetensors.torch import save_file

            save_file(tensors, str(path))
    elif resolved in ("ms_vid2vid_xl", "modelscope_t2v"):
        key_map = UNetKeyMap(UNetLayout.from_config(config))
        ldm = {key_map.diffusers_to_ldm_key(k): key_map.diffusers_to_ldm_tensor(k, v) for k, v in state.items()}
        wrap = (resolved == "ms_vid2vid_xl") if under_state_dict is None else under_state_dict
        torch.save({"state_dict": ldm} if wrap else ldm, path)
    elif resolved == "converted_safetensors":
        save_converted(state, kind, config, path)
    else:  # pragma: no cover - _resolve_layout guards this
        raise AssertionError(resolved)
    return state
