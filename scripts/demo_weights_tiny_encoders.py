"""Tiny random SD2 OpenCLIP-H text encoder, CLIP ViT-H vision tower and SD VAE, for tests not about those models.

The demo's host encoders (scripts/demo_weights.write_host_encoders) have the real sizes: 354 M, 632 M and 84 M
parameters, about 4 GB in fp32 once loaded, seconds of CPU per prompt and per anchor frame, and a VAE decode that
took more than half of a workflow test's time. The tests load them in every module that runs a workflow, which made
the suite slow and its RSS large (issue 24). These tiny ones keep what the pack sees of each model, nothing else:

- text: a ``comfy.clip_model.CLIPTextModel`` 1024 wide (the UNets' cross-attention context) with the real CLIP BPE
  vocabulary (49,408 tokens, so the host's SD2 tokenizer works unchanged) but three layers (SD 2.x reads the
  penultimate one; the host needs more than two) and a 64-wide MLP;
- vision: a ``comfy.clip_model.CLIPVisionModelProjection`` at 224 px with patch 14 (the real preprocessing) and a
  1024-wide projection (the ``image_embeds`` the APM reads) but two 64-wide layers;
- VAE: the SD ``AutoencoderKL`` layout (4 latent channels, x8, the same keys) 32 wide instead of 128 (32 is the
  narrowest its 32-group norms allow): 1/16 of the parameters and of the decode's work.

The host picks an encoder's config by its layer count (``detect_te_model``: block 22 is CLIP-H; ``load_clipvision_
from_sd``: layer 30 is ViT-H), so it cannot build these unaided. :func:`install_tiny_encoder_support` lets it: a
1024-wide text encoder with fewer than 23 layers is taken as CLIP-H with its own sizes (through the host's
``clip_h_model_config`` model option), and a vision tower with a 1024-wide projection and fewer than 31 layers gets a
config read from its shapes; an SD VAE narrower than 128 gets its width from ``encoder.conv_in``. Real files never
match these tests, and load exactly as before. The in-process test host
installs it; a real ComfyUI without it cannot load these files (so the README's demo keeps the full-size ones).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

TINY_ENCODER_FILES = {
    "text_encoder": "text_encoders/open_clip_h_text.safetensors",
    "clip_vision": "clip_vision/clip_vision_vit_h.safetensors",
    "vae": "vae/sd_vae.safetensors",
}
TINY_TEXT = {"num_hidden_layers": 3, "intermediate_size": 64}
TINY_VAE_WIDTH = 32
SD_VAE_WIDTH = 128
TINY_VISION = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 2}
CONTEXT_WIDTH = 1024  # SD 2.x cross-attention context and ViT-H's projection: what the pack's models read
_TEXT_FC1 = "text_model.encoder.layers.{}.mlp.fc1.weight"
_VISION_NORM = "vision_model.encoder.layers.{}.layer_norm1.weight"


def _host_config(relative: str) -> dict:
    import comfy.ops

    return json.loads((Path(comfy.ops.__file__).parent / relative).read_text())


def tiny_text_config() -> dict:
    return {**_host_config("text_encoders/sd2_clip_config.json"), **TINY_TEXT}


def tiny_vision_config() -> dict:
    return {**_host_config("clip_vision_config_h.json"), **TINY_VISION}


def tiny_clip_h_text_state(seed: int = 0, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    import comfy.ops
    from comfy.clip_model import CLIPTextModel

    from scripts.demo_weights import _meta_state_shapes, _random_fill

    config = tiny_text_config()
    shapes = _meta_state_shapes(lambda: CLIPTextModel(config, torch.float32, "meta", comfy.ops.manual_cast))
    return _random_fill(shapes, seed, dtype)


def tiny_clip_vision_h_state(seed: int = 0, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    import comfy.ops
    from comfy.clip_model import CLIPVisionModelProjection

    from scripts.demo_weights import _meta_state_shapes, _random_fill

    config = tiny_vision_config()
    shapes = _meta_state_shapes(lambda: CLIPVisionModelProjection(config, torch.float32, "meta", comfy.ops.manual_cast))
    return _random_fill(shapes, seed, dtype)


def _sd_vae_ddconfig(width: int) -> dict:
    # the host's default SD 1.x/2.x VAE parameters (comfy/sd.py), with the width as the only change
    return {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": width,
            "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}


def tiny_sd_vae_state(seed: int = 0, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    from comfy.ldm.models.autoencoder import AutoencoderKL

    from scripts.demo_weights import _meta_state_shapes, _random_fill

    ddconfig = _sd_vae_ddconfig(TINY_VAE_WIDTH)
    return _random_fill(_meta_state_shapes(lambda: AutoencoderKL(ddconfig=ddconfig, embed_dim=4)), seed, dtype)


def tiny_sd_vae_width(state_dict) -> int | None:
    """The width of a tiny SD VAE state dict (the SD layout, narrower than 128); None for anything else."""
    conv_in = state_dict.get("encoder.conv_in.weight")
    sd_layout = "decoder.up.3.upsample.conv.weight" in state_dict and "decoder.conv_in.weight" in state_dict
    if conv_in is None or not sd_layout or conv_in.ndim != 4 or "decoder.mid.block_1.mix_factor" in state_dict:
        return None
    width = int(conv_in.shape[0])
    return width if width < SD_VAE_WIDTH and state_dict["decoder.conv_in.weight"].shape[1] == 4 else None


def _layer_count(state_dict, pattern: str) -> int:
    count = 0
    while pattern.format(count) in state_dict:
        count += 1
    return count


def tiny_text_sizes(state_dict) -> dict | None:
    """The config sizes of a tiny CLIP-H text state dict; None for anything else (a real CLIP-H/L/G included)."""
    fc1 = state_dict.get(_TEXT_FC1.format(0))
    layers = _layer_count(state_dict, _TEXT_FC1)
    if fc1 is None or fc1.shape[-1] != CONTEXT_WIDTH or layers >= 23:
        return None
    return {"num_hidden_layers": layers, "intermediate_size": int(fc1.shape[0])}


def tiny_vision_config_for(state_dict) -> dict | None:
    """The config of a tiny ViT-H state dict; None for anything else (every real tower has 23 layers or more)."""
    projection = state_dict.get("visual_projection.weight")
    fc1 = state_dict.get("vision_model.encoder.layers.0.mlp.fc1.weight")
    layers = _layer_count(state_dict, _VISION_NORM)
    if projection is None or fc1 is None or projection.shape[0] != CONTEXT_WIDTH or not 0 < layers < 23:
        return None
    hidden = int(projection.shape[1])
    heads = TINY_VISION["num_attention_heads"] if hidden == TINY_VISION["hidden_size"] else max(1, hidden // 64)
    return {**_host_config("clip_vision_config_h.json"), "hidden_size": hidden, "intermediate_size": int(fc1.shape[0]),
            "num_attention_heads": heads, "num_hidden_layers": layers}


def install_tiny_encoder_support() -> None:
    """Let the in-process host load the tiny encoders (see the module docstring); idempotent, real files unchanged."""
    import comfy.clip_vision
    import comfy.sd

    if getattr(comfy.sd.load_text_encoder_state_dicts, "streamingt2v_tiny_clip_h", False):
        return
    original_detect = comfy.sd.detect_te_model
    original_load_text = comfy.sd.load_text_encoder_state_dicts
    original_load_vision = comfy.clip_vision.load_clipvision_from_sd
    original_vae_init = comfy.sd.VAE.__init__

    def detect_te_model(sd):
        return comfy.sd.TEModel.CLIP_H if tiny_text_sizes(sd) is not None else original_detect(sd)

    def load_text_encoder_state_dicts(state_dicts=[], *args, model_options={}, **kwargs):  # noqa: B006 (host's signature)
        sizes = tiny_text_sizes(state_dicts[0]) if len(state_dicts) == 1 else None
        if sizes is not None:
            model_options = {**model_options, "clip_h_model_config": sizes}
        return original_load_text(state_dicts, *args, model_options=model_options, **kwargs)

    def load_clipvision_from_sd(sd, prefix="", convert_keys=False):
        config = None if convert_keys else tiny_vision_config_for(sd)
        if config is None:
            return original_load_vision(sd, prefix=prefix, convert_keys=convert_keys)
        # the host's ClipVisionModel reads its config from a file
        fd, path = tempfile.mkstemp(prefix="tiny_clip_vision_", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(config, f)
            clip = comfy.clip_vision.ClipVisionModel(path)
        finally:
            os.unlink(path)
        missing, _ = clip.load_sd(sd)
        if missing:
            raise RuntimeError(f"tiny CLIP vision file is missing {missing[:3]}")
        return clip

    def vae_init(self, sd=None, device=None, config=None, dtype=None, metadata=None):
        width = tiny_sd_vae_width(sd) if config is None and sd is not None else None
        if width is not None:  # the host's config path: AutoencoderKL(**config["params"]), SD VAE defaults otherwise
            config = {"params": {"embed_dim": 4, "ddconfig": _sd_vae_ddconfig(width)}}
        original_vae_init(self, sd=sd, device=device, config=config, dtype=dtype, metadata=metadata)

    load_text_encoder_state_dicts.streamingt2v_tiny_clip_h = True
    comfy.sd.detect_te_model = detect_te_model
    comfy.sd.load_text_encoder_state_dicts = load_text_encoder_state_dicts
    comfy.clip_vision.load_clipvision_from_sd = load_clipvision_from_sd
    comfy.sd.VAE.__init__ = vae_init


def write_tiny_host_encoders(models_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Write the tiny text, vision and VAE files under the real names where absent (a file already there is kept: a real
    one, or an earlier tiny or full-size demo file), and install the host hook in this process."""
    from scripts.demo_weights import write_missing

    makers = {
        "text_encoder": (lambda: tiny_clip_h_text_state(seed + 1), "tiny SD2 OpenCLIP-H text (3 layers, 1024 wide)"),
        "clip_vision": (lambda: tiny_clip_vision_h_state(seed + 2), "tiny CLIP ViT-H/14 vision (2 layers, 1024 projection)"),
        "vae": (lambda: tiny_sd_vae_state(seed + 3), "tiny SD VAE (AutoencoderKL layout, 32 wide)"),
    }
    written = write_missing(models_dir, TINY_ENCODER_FILES, makers)
    install_tiny_encoder_support()
    return written


HOOK_NODE_NAME = "streamingt2v_tiny_model_hook.py"


def write_hook_custom_node(custom_nodes_dir: Path) -> Path:
    """A one-file custom node that installs the tiny-model hooks (these encoders and the Wan demo's tiny UMT5) in a
    real ComfyUI server started on ``custom_nodes_dir``'s base folder: how the tests' real servers load the tiny
    files. It registers no nodes."""
    repo_root = Path(__file__).resolve().parents[1]
    path = Path(custom_nodes_dir) / HOOK_NODE_NAME
    path.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(repo_root)!r})\n"
        "from scripts.demo_weights_tiny_encoders import install_tiny_encoder_support\n"
        "from scripts.demo_weights_wan import install_tiny_umt5_support\n"
        "install_tiny_encoder_support()\n"
        "install_tiny_umt5_support()\n"
        "NODE_CLASS_MAPPINGS = {}\n")
    return path
