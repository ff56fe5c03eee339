"""Tiny random host video models for tests, built from the host's own classes and saved as safetensors, so the
host's own loaders (UNETLoader, VAELoader, LoraLoaderModelOnly) detect them from their state dicts as they do
real files.

* :func:`write_tiny_wan_vace`: Wan 2.1 VACE (``VaceWanModel``: detected by ``vace_patch_embedding``; the host
  loads it as ``WAN21_Vace``), 1 block + 1 VACE block, dim 128 (one head);
* :func:`write_tiny_wan_t2v`: Wan 2.1 T2V (``WAN21``) of the same size;
* :func:`write_tiny_wan_vae`: the Wan 2.1 VAE (``WanVAE``, 16 latent channels, temporal stride 4) at width 4;
* :func:`write_tiny_wan_lora`: a rank-4 LoRA on the blocks' attention of the tiny Wan (keys
  ``diffusion_model.<key>.lora_up/lora_down.weight`` + ``.alpha``, the generic format the host's key map takes);
* :func:`write_tiny_ltxv`: LTX-Video (``LTXVModel`` + its causal ``VideoVAE``, 128 latent channels, temporal
  stride 8, spatial 32), both configured through the safetensors ``config`` metadata the host reads.

Each writes once into ``<models_dir>/<folder>/`` and returns the file name for the host loader. Text conditioning
for the Wan models is a ``[1, n, 4096]`` tensor (umt5's width); for LTX-Video ``[1, n, 4096]`` too.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["write_tiny_wan_vace", "write_tiny_wan_t2v", "write_tiny_wan_vae", "write_tiny_wan_lora",
           "write_tiny_ltxv", "WAN_TEXT_DIM"]

WAN_TEXT_DIM = 4096


def _save(state: dict, path: Path, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)
    tmp.replace(path)


def _random_state(net: torch.nn.Module, seed: int, prefix: str = "") -> dict:
    """Random weights that carry a signal through the network (so a chunk's frames measurably depend on its
    context and anchor): matrices and kernels ~ N(0, 1/fan_in), norm scales 1, biases and other vectors small."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in net.state_dict().items():
        if not v.is_floating_point():
            state[prefix + k] = v
        elif v.ndim >= 2 and "modulation" not in k:
            fan_in = max(1, v[0].numel())
            state[prefix + k] = torch.randn(v.shape, generator=g) / fan_in ** 0.5
        elif k.endswith(("norm.weight", "gamma", "norm1.weight", "norm2.weight", "norm3.weight", "norm_q.weight",
                         "norm_k.weight")):
            state[prefix + k] = torch.ones(v.shape)
        else:
            state[prefix + k] = torch.randn(v.shape, generator=g) * 0.02
    return state


def _wan(models_dir: Path, name: str, vace: bool, seed: int) -> str:
    import comfy.ldm.wan.model
    import comfy.ops

    path = Path(models_dir) / "diffusion_models" / name
    if not path.exists():
        kwargs = dict(dim=128, ffn_dim=256, num_heads=1, num_layers=1, in_dim=16, out_dim=16, text_dim=WAN_TEXT_DIM,
                      operations=comfy.ops.disable_weight_init, device="meta")
        if vace:
            # 96 = 32 VACE latent channels (inactive + reactive) + 64 mask channels (the 8x8 pixel block).
            net = comfy.ldm.wan.model.VaceWanModel(vace_layers=1, vace_in_dim=96, **kwargs)
        else:
            net = comfy.ldm.wan.model.WanModel(model_type="t2v", **kwargs)
        _save(_random_state(net, seed, "model.diffusion_model."), path)
    return path.name


def write_tiny_wan_vace(models_dir: Path) -> str:
    """Tiny Wan 2.1 VACE diffusion model (diffusion_models/)."""
    return _wan(models_dir, "tiny_wan21_vace.safetensors", True, 1)


def write_tiny_wan_t2v(models_dir: Path) -> str:
    """Tiny Wan 2.1 T2V diffusion model (diffusion_models/)."""
    return _wan(models_dir, "tiny_wan21_t2v_ext.safetensors", False, 2)


def write_tiny_wan_vae(models_dir: Path) -> str:
    """Tiny Wan 2.1 VAE (vae/); the host reads its width from decoder.head.0.gamma."""
    import comfy.ldm.wan.vae

    path = Path(models_dir) / "vae" / "tiny_wan21_vae_ext.safetensors"
    if not path.exists():
        vae = comfy.ldm.wan.vae.WanVAE(dim=4, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                       temperal_downsample=[False, True, True], dropout=0.0)
        _save(_random_state(vae, 3), path)
    return path.name


def write_tiny_wan_lora(models_dir: Path, rank: int = 4) -> str:
    """A tiny random LoRA for the tiny Wan models (loras/): the blocks' self-attention q/k/v/o."""
    path = Path(models_dir) / "loras" / "tiny_wan21_lora.safetensors"
    if not path.exists():
        g = torch.Generator().manual_seed(4)
        state = {}
        for proj in ("q", "k", "v", "o"):
            key = f"diffusion_model.blocks.0.self_attn.{proj}"
            state[f"{key}.lora_up.weight"] = torch.randn(128, rank, generator=g) * 0.5
            state[f"{key}.lora_down.weight"] = torch.randn(rank, 128, generator=g) * 0.5
            state[f"{key}.alpha"] = torch.tensor(float(rank))
        _save(state, path)
    return path.name


#: LTX-Video transformer config (the host's model detection reads metadata["config"]["transformer"]).
LTXV_TRANSFORMER = {"num_attention_heads": 2, "attention_head_dim": 32, "num_layers": 1, "in_channels": 128,
                    "out_channels": 128, "cross_attention_dim": 64, "caption_channels": 4096}
#: LTX-Video VAE config (metadata["config"]["vae"]): patch 4 and three space-time compressions = 8x32x32.
LTXV_VAE = {"_class_name": "CausalVideoAutoencoder", "dims": 3, "in_channels": 3, "out_channels": 3,
            # the decoder runs the blocks in reverse: up_blocks.0 must be a res_x block (the key the host detects)
            "latent_channels": 128, "blocks": [["compress_all", 1], ["compress_all", 1], ["compress_all", 1],
                                               ["res_x", 1]],
            "scaling_factor": 1.0, "norm_layer": "pixel_norm", "patch_size": 4, "latent_log_var": "uniform",
            "use_quant_conv": False, "causal_decoder": False}


def write_tiny_ltxv(models_dir: Path) -> str:
    """Tiny LTX-Video checkpoint (checkpoints/): transformer (``model.diffusion_model.``) and VAE (``vae.``) in one
    file, configured through its ``config`` metadata as LTX-Video's own checkpoints are; the host's
    CheckpointLoaderSimple reads both (its VAELoader would ignore the metadata)."""
    import comfy.ldm.lightricks.model
    import comfy.ldm.lightricks.vae.causal_video_autoencoder as cva
    import comfy.ops

    path = Path(models_dir) / "checkpoints" / "tiny_ltxv.safetensors"
    if not path.exists():
        meta = {"config": json.dumps({"transformer": LTXV_TRANSFORMER, "vae": LTXV_VAE})}
        net = comfy.ldm.lightricks.model.LTXVModel(**LTXV_TRANSFORMER, operations=comfy.ops.disable_weight_init,
                                                   device="meta")
        state = _random_state(net, 5, "model.diffusion_model.")
        vae = cva.VideoVAE(config=LTXV_VAE)
        for k, v in _random_state(vae, 6).items():
            if k.startswith("per_channel_statistics."):  # the latent statistics: identity normalisation
                v = torch.ones(128) if "std" in k else torch.zeros(128)
            state["vae." + k] = v
        _save(state, path, meta)
    return path.name
