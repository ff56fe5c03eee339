"""The tiny encoders and VAE the host tests load (scripts/demo_weights_tiny_encoders.py), through the host's loaders.

They stand in for the full-size SD2 OpenCLIP-H text encoder, CLIP ViT-H vision and SD VAE, so they must give the pack
what the real ones give (1024-wide text tokens, a 1024-wide image embedding, 4-channel x8 latents), and the loader
hook must leave every real file alone: a full-size state dict (shapes only, on the meta device) is never taken for a
tiny one.
"""
from __future__ import annotations

import torch
from scripts.demo_weights import host_clip_h_text_shapes, host_clip_vision_h_shapes, host_vae_shapes
from scripts.demo_weights_tiny_encoders import (
    TINY_ENCODER_FILES,
    tiny_sd_vae_width,
    tiny_text_sizes,
    tiny_vision_config_for,
)


def _meta(shapes: dict) -> dict:
    return {k: torch.empty(v, device="meta") for k, v in shapes.items()}


def test_full_size_encoders_are_never_taken_for_tiny_ones(comfy_host):
    assert tiny_text_sizes(_meta(host_clip_h_text_shapes())) is None
    assert tiny_vision_config_for(_meta(host_clip_vision_h_shapes())) is None
    assert tiny_sd_vae_width(_meta(host_vae_shapes())) is None


def test_tiny_files_load_through_the_host_loaders_with_the_real_output_widths(comfy_host, host_weights):
    models = comfy_host.models_dir
    for name, relative in TINY_ENCODER_FILES.items():
        assert host_weights[name] == models / relative
    prompt = {
        "1": {"class_type": "CLIPLoader", "inputs": {"clip_name": "open_clip_h_text.safetensors", "type": "stable_diffusion"}},
        "2": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "clip_vision_vit_h.safetensors"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "sd_vae.safetensors"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 0], "text": "a cat walks on the street"}},
        "5": {"class_type": "EmptyImage", "inputs": {"width": 40, "height": 24, "batch_size": 2, "color": 0x8844CC}},
        "6": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["2", 0], "image": ["5", 0], "crop": "center"}},
        "7": {"class_type": "VAEEncode", "inputs": {"pixels": ["5", 0], "vae": ["3", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["3", 0]}},
    }
    out = comfy_host.run_prompt(prompt, outputs=["4", "6", "8"])
    tokens, extra = out["4"][0][0]
    assert tokens.shape == (1, 77, 1024)  # SD 2.x context width: what the UNets' cross-attention reads
    assert extra["pooled_output"].shape == (1, 1024)
    assert out["6"][0]["image_embeds"].shape == (2, 1024)  # ViT-H's projection: what the APM reads
    assert out["7"][0]["samples"].shape == (2, 4, 3, 5)  # 4 channels, x8
    assert out["8"][0].shape == (2, 24, 40, 3)
    for tensor in (tokens, out["6"][0]["image_embeds"], out["8"][0]):
        assert bool(tensor.isfinite().all())
    # the hooked loaders built the tiny models, not the real configs
    clip_vision = out["2"][0]
    assert sum(p.numel() for p in clip_vision.model.parameters()) < 2_000_000
    vae = out["3"][0]
    assert vae.first_stage_model.encoder.conv_in.out_channels == 32
