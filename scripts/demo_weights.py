"""Random demo/test weights, in real key layouts, for every file the workflows load.

No model hub is reachable here, so the demo and the host tests write their own weights:
- the host's own encoders (SD VAE, SD2 OpenCLIP-H text encoder, CLIP ViT-H vision) at their real
  sizes, because the host's `VAELoader`, `CLIPLoader` and `CLIPVisionLoader` detect the model from
  key names and shapes and accept no smaller form; they are built from the host's own classes on
  the meta device (so the key layout is exactly what the host loads) and filled with seeded
  random values;
- our own UNets (base UNet3D, extender, MS-Vid2Vid-XL refiner) as tiny configs in the real
  checkpoint layouts, through `streamingt2v_core.models.tiny_checkpoints.write_tiny_checkpoint`;
- a tiny SD 2.x-layout ControlNet in the host's ControlNet file format (`control_model.*` keys, as the
  ControlNet 1.1 releases), built from the host's own `comfy.cldm.cldm.ControlNet` class, whose
  residuals fit the tiny base UNet and extender (`write_tiny_controlnet`);
- for the Wan workflows, a tiny Wan 2.1 VACE, UMT5 text encoder and Wan 2.1 VAE under the real file
  names (scripts/demo_weights_wan.py, which says how the host is let build the tiny UMT5).

Every output of such weights is noise. The file names are the ones the workflows reference
(`WEIGHT_FILES`). Must run with the host importable (sys.path has the ComfyUI folder).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

try:
    from scripts.demo_weights_wan import WAN_WEIGHT_FILES, install_tiny_umt5_support, write_wan_demo
except ImportError:  # run as a script: scripts/ is on sys.path, the repository root not yet
    from demo_weights_wan import WAN_WEIGHT_FILES, install_tiny_umt5_support, write_wan_demo

# Where each workflow file looks for its weights, relative to the host's models folder.
WEIGHT_FILES = {
    "vae": "vae/sd_vae.safetensors",
    "text_encoder": "text_encoders/open_clip_h_text.safetensors",
    "clip_vision": "clip_vision/clip_vision_vit_h.safetensors",
    "base_unet3d": "streamingt2v/modelscope_t2v_unet.safetensors",
    "extender": "streamingt2v/streaming_t2v.safetensors",
    "refiner_unet": "streamingt2v/ms_vid2vid_xl.safetensors",
    "controlnet": "controlnet/control_v11p_sd21_canny.safetensors",
    **WAN_WEIGHT_FILES,
}
DEMO_MARKER = "streamingt2v_random_demo_weights"


def _random_fill(shapes: dict[str, torch.Size], seed: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Seeded random values with the statistics of a freshly initialised network.

    Norm scales 1, biases 0, other weights N(0, 1/fan_in): activations stay bounded through deep
    stacks, so decoded frames and text embeddings are finite noise rather than inf/NaN.
    """
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        leaf = key.rsplit(".", 2)
        is_norm = any(s in key for s in ("norm", "ln_", "layer_norm", "layernorm")) and key.endswith(".weight")
        if is_norm:
            t = torch.ones(shape)
        elif key.endswith(".bias") or len(shape) == 0:
            t = torch.zeros(shape)
        elif len(shape) == 1:
            t = torch.randn(shape, generator=g) * 0.02
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
            if "embedding" in key and len(shape) == 2:
                fan_in = shape[1]
            t = torch.randn(shape, generator=g) / math.sqrt(max(fan_in, 1))
        del leaf
        out[key] = t.to(dtype).contiguous()
    return out


def _meta_state_shapes(module_factory) -> dict[str, torch.Size]:
    with torch.device("meta"):
        module = module_factory()
    return {k: v.shape for k, v in module.state_dict().items()}


def host_vae_shapes() -> dict[str, torch.Size]:
    from comfy.ldm.models.autoencoder import AutoencoderKL

    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    return _meta_state_shapes(lambda: AutoencoderKL(ddconfig=ddconfig, embed_dim=4))


def host_clip_h_text_shapes() -> dict[str, torch.Size]:
    import comfy.ops
    from comfy.clip_model import CLIPTextModel

    cfg_path = Path(sys.modules["comfy.ops"].__file__).parent / "text_encoders" / "sd2_clip_config.json"
    config = json.loads(cfg_path.read_text())
    shapes = _meta_state_shapes(lambda: CLIPTextModel(config, torch.float32, "meta", comfy.ops.manual_cast))
    return shapes


def host_clip_vision_h_shapes() -> dict[str, torch.Size]:
    import comfy.ops
    from comfy.clip_model import CLIPVisionModelProjection

    cfg_path = Path(sys.modules["comfy.ops"].__file__).parent / "clip_vision_config_h.json"
    config = json.loads(cfg_path.read_text())
    return _meta_state_shapes(lambda: CLIPVisionModelProjection(config, torch.float32, "meta", comfy.ops.manual_cast))


def tiny_controlnet_kwargs(unet_config, context_dim: int = 1024, adm_in_channels: int | None = None,
                           levels: int | None = None) -> dict:
    """Constructor arguments of the host's ``comfy.cldm.cldm.ControlNet`` whose residuals fit ``unet_config``
    (a ``UNet3DConfig``): one zero conv per skip connection with its channels, a mid of the last level's width.

    The SD 2.x layout: a spatial transformer after every res block but on the last level, one in the mid block,
    1024-wide context, linear proj_in/out. The host builds ControlNets with 32-group GroupNorms and 64-wide heads,
    so widths must be multiples of 32, and levels narrower than one 64-wide head get no transformer.
    ``context_dim``/``adm_in_channels``/``levels`` make ControlNets of other families for refusal tests (SD 1.x:
    768; SDXL: 2048, adm 2816, 3 levels).
    """
    import comfy.ops

    channels = list(unet_config.block_out_channels)[: levels or None]
    c0 = channels[0]
    if any(c % 32 for c in channels) or any(c % c0 for c in channels):
        raise ValueError(f"unet_config: the host's ControlNet needs widths that are multiples of 32 and of the first "
                         f"level's; got {channels}")
    if adm_in_channels is None:  # SD 1.x/2.x: transformers on every level but the last
        depth = [1 if (c % 64 == 0 and level < len(channels) - 1) else 0 for level, c in enumerate(channels)]
    else:  # SDXL: on every level but the first
        depth = [1 if (c % 64 == 0 and level > 0) else 0 for level, c in enumerate(channels)]
    kwargs = dict(
        image_size=32, in_channels=unet_config.in_channels, model_channels=c0, hint_channels=3,
        num_res_blocks=[unet_config.layers_per_block] * len(channels), channel_mult=[c // c0 for c in channels],
        transformer_depth=[d for d in depth for _ in range(unet_config.layers_per_block)],
        transformer_depth_middle=1 if channels[-1] % 64 == 0 else -1, context_dim=context_dim,
        use_linear_in_transformer=True, num_head_channels=64, num_heads=-1, use_spatial_transformer=True,
        legacy=False, dtype=torch.float32, device="meta", operations=comfy.ops.disable_weight_init,
    )
    if adm_in_channels is not None:
        kwargs.update(num_classes="sequential", adm_in_channels=adm_in_channels)
    return kwargs


def write_tiny_controlnet(path: Path, unet_config=None, *, context_dim: int = 1024, adm_in_channels: int | None = None,
                          levels: int | None = None, seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    """A random ControlNet in the host's file format (``control_model.`` keys, safetensors) that the host's
    ``ControlNetLoader`` detects and loads; by default an SD 2.x-layout one fitting the demo UNets."""
    from comfy.cldm.cldm import ControlNet

    unet_config = unet_config if unet_config is not None else demo_unet_config()
    kwargs = tiny_controlnet_kwargs(unet_config, context_dim, adm_in_channels, levels)
    shapes = {f"control_model.{k}": v for k, v in _meta_state_shapes(lambda: ControlNet(**kwargs)).items()}
    path = Path(path)
    _write(path, _random_fill(shapes, seed, dtype),
           f"tiny ControlNet (SD 2.x layout, widths {list(unet_config.block_out_channels)}, context {context_dim})")
    return path


def _write(path: Path, tensors: dict[str, torch.Tensor], what: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    save_file(tensors, str(tmp), metadata={DEMO_MARKER: "1", "what": what})
    os.replace(tmp, path)


def write_missing(models_dir: Path, files: dict[str, str], makers: dict) -> dict[str, Path]:
    """Write each ``makers[name] = (make_state, what)`` to ``models_dir / files[name]`` where no file is there yet; an
    existing file (a real one, or an earlier demo file) is kept either way. Returns every name's path."""
    written = {}
    for name, (make, what) in makers.items():
        path = Path(models_dir) / files[name]
        if not path.exists():
            _write(path, make(), what)
        written[name] = path
    return written


def _is_demo_file(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get(DEMO_MARKER) == "1"
    except Exception:
        return False


def write_host_encoders(models_dir: Path, seed: int = 0, dtype: torch.dtype = torch.float16) -> dict[str, Path]:
    """Write the VAE, text encoder and CLIP vision files (skipped when a demo file is already there)."""
    models_dir = Path(models_dir)
    makers = {
        "vae": (host_vae_shapes, "SD VAE (AutoencoderKL, 4 latent channels)"),
        "text_encoder": (host_clip_h_text_shapes, "SD2 OpenCLIP-H text encoder (24 layers, 1024)"),
        "clip_vision": (host_clip_vision_h_shapes, "CLIP ViT-H/14 vision tower with projection (1024)"),
    }
    written = {}
    for name, (shapes_fn, what) in makers.items():
        path = models_dir / WEIGHT_FILES[name]
        if path.exists() and not _is_demo_file(path):
            written[name] = path  # a real file the user put there: never overwrite it
            continue
        if not path.exists():
            _write(path, _random_fill(shapes_fn(), seed + len(written), dtype), what)
        written[name] = path
    return written


def demo_unet_config():
    """The UNet3D of the demo base UNet and extender: the tiny preset with 32-wide first levels and 32 norm groups.

    32 is the narrowest width a ControlNet built by the host can have (its ResBlocks use 32-group GroupNorms), and
    a ControlNet's residuals must have the UNet's skip widths: so the ControlNet workflow runs on demo weights too.
    The groups are what the loader infers from shapes for a file without config (the diffusers-layout base UNet).
    """
    from streamingt2v_core.models.config import UNet3DConfig

    return dataclasses.replace(UNet3DConfig.tiny(), block_out_channels=(32, 32, 64, 64), norm_num_groups=32)


def demo_pack_config(kind: str):
    """The core config each demo UNet is written with (the refiner keeps the tiny preset)."""
    from streamingt2v_core.models.config import ExtenderConfig, RefinerUNetConfig

    if kind == "base_unet3d":
        return demo_unet_config()
    if kind == "extender":
        unet = demo_unet_config()
        return dataclasses.replace(ExtenderConfig.tiny(), unet=unet, merger_head_dim=unet.attention_head_dim)
    return RefinerUNetConfig.tiny()


def _first_width(path: Path, kind: str) -> int | None:
    """Width of the first level of a safetensors UNet file (None if unreadable)."""
    try:
        from safetensors import safe_open

        key = "base_model.conv_in.weight" if kind == "extender" else "conv_in.weight"
        with safe_open(str(path), "pt") as f:
            return int(f.get_slice(key).get_shape()[0]) if key in f.keys() else None
    except Exception:
        return None


def write_pack_models(models_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Write tiny random weights of our three UNets in their real checkpoint layouts (see :func:`demo_pack_config`).

    A tiny file from an older demo with other widths is written again; a real file is never touched."""
    from streamingt2v_core.models.tiny_checkpoints import write_tiny_checkpoint

    models_dir = Path(models_dir)
    layouts = {"base_unet3d": "diffusers", "extender": "converted", "refiner_unet": "converted"}
    written = {}
    for kind, layout in layouts.items():
        path = models_dir / WEIGHT_FILES[kind]
        if path.exists() and not _is_demo_file(path) and not _is_tiny_pack_file(path):
            written[kind] = path
            continue
        config = demo_pack_config(kind)
        width = config.unet.block_out_channels[0] if kind == "extender" else config.block_out_channels[0]
        if path.exists() and kind != "refiner_unet" and _first_width(path, kind) != width:
            path.unlink()  # an older demo's tiny UNet: the ControlNet demo needs the current widths
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_tiny_checkpoint(path, kind, layout, seed=seed, config=config)
        written[kind] = path
    return written


def write_controlnet_demo(models_dir: Path, seed: int = 0) -> dict[str, Path]:
    """The tiny SD 2.x-layout ControlNet the ControlNet workflow loads (a real file is never touched)."""
    path = Path(models_dir) / WEIGHT_FILES["controlnet"]
    if not path.exists() or _is_demo_file(path):
        if not path.exists():
            write_tiny_controlnet(path, seed=seed + 11)
    return {"controlnet": path}


def _is_tiny_pack_file(path: Path) -> bool:
    return path.stat().st_size < 200 * 1024 * 1024


def write_all(models_dir: Path, seed: int = 0) -> dict[str, Path]:
    out = write_host_encoders(models_dir, seed=seed)
    out.update(write_pack_models(models_dir, seed=seed))
    out.update(write_controlnet_demo(models_dir, seed=seed))
    out.update(write_wan_demo(models_dir, seed=seed))
    # The host builds UMT5 from a fixed config, so the tiny demo UMT5 loads only with this (a real
    # UMT5-XXL loads as before); this process is the one that will load the files just written.
    install_demo_loader_hooks()
    return out


def install_demo_loader_hooks() -> None:
    """Let this process's host load the tiny demo files it cannot build from its fixed configs: the Wan demo's UMT5
    and the tests' tiny encoders and VAE (scripts/demo_weights_tiny_encoders.py). Real files load as before."""
    try:
        from scripts.demo_weights_tiny_encoders import install_tiny_encoder_support
    except ImportError:  # run as a script from scripts/
        from demo_weights_tiny_encoders import install_tiny_encoder_support
    install_tiny_umt5_support()
    install_tiny_encoder_support()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models_dir", type=Path, help="the host's models folder to fill")
    parser.add_argument("--host", type=Path, default=Path(__file__).resolve().parents[1] / ".host" / "ComfyUI")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.host))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    # import the host the way it runs here: no argument parsing of our argv, CPU
    import comfy.options

    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args as host_args

    host_args.cpu = True
    for name, path in write_all(args.models_dir, seed=args.seed).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
