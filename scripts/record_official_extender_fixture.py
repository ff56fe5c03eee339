"""Record the official StreamingT2V extender's output as a test fixture (never run in CI).

Builds a tiny extender from the **official** classes of ``Picsart-AI-Research/StreamingT2V`` (branch
``StreamingModelscope``, commit a8aceea5), imported from a checkout given on the command line: the augmented base
UNet3D (``base_model``: CAM mergers + APM mixers), the CAM (``ControlNetModel.from_unet``, called ``unet`` in the
checkpoint) and the APM resampler (``ImgEmbContextResampler``). Every parameter gets a seeded random value,
including the ones the official code initialises to zero (merger ``proj_out``, E_cond ``conv_out``, the APM ``alpha``
gates, the temporal convs' last conv); otherwise the CAM and APM paths would add nothing and the fixture could not
tell a correct extender from a plain UNet3D.

It then runs one classifier-free-guidance step exactly as the official pipeline
(``TextToVideoSDPipeline.__call__`` in ``pipeline_text_to_video_w_controlnet_synth.py``) does for one denoising
step: the anchor's and the grey image's CLIP embeddings through the resampler, ``[negative text | grey tokens]`` and
``[text | anchor tokens]`` stacked by the official ``_encode_prompt``, the conditioning frames duplicated for the two
halves, the CAM on the first 8 noisy frames, the base UNet with the CAM features, ``u + w (c - u)``. It runs in fp32
(what the official inference uses) and in fp64 (the same computation without fp32 round-off, which the CFG step
amplifies to about 1e-5 of the output's scale). Two more fp64 runs replace the conditioning frames by zeros and the
anchor embedding by zeros: both inputs change the output, so the fixture checks the CAM and APM paths too.

Written to ``--out`` (default ``tests/data/official_extender_fixture/``), lzma-compressed safetensors:

- ``weights.safetensors.xz``: the weights under the exact ``streaming_t2v.ckpt`` names (``base_model.*``,
  ``unet.*``, ``resampler.*``), fp32, values on a coarse grid (a small integer times a power of two) so that
  they compress; the network is still a generic random network (activations are not quantised).
- ``io.safetensors.xz``: the inputs (noisy latent, timestep, text contexts, conditioning frames, anchor and grey
  image embeddings, guidance scale) and the outputs.

Run (outside CI; the official code needs diffusers 0.27, transformers 4.39, open_clip 2.24, pytorch_lightning 2.0,
einops, kornia; see the fixture's README for the exact set-up)::

    python scripts/record_official_extender_fixture.py --official /path/to/StreamingT2V

xformers is not needed: the official APM mixing lives in its xformers attention processor, which the official
``VideoLDM`` installs whenever xformers is importable. This script installs that same processor and gives it
``xformers.ops.memory_efficient_attention`` as plain softmax attention (the operation that kernel computes).
Nothing of the official code is copied here; it is imported.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import lzma
import math
import sys
import types
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "tests" / "data" / "official_extender_fixture"
OFFICIAL_KEYS = REPO_ROOT / "tests" / "data" / "official_keys" / "streaming_t2v_full_state_dict.tsv"
OFFICIAL_COMMIT = "a8aceea5db48cf2b8eeec1d6a694bb8cc8e95800"

#: The tiny configuration. Interface sizes are the real ones, because the official code hard-codes them: 1024-d
#: context (the APM LayerNorm), 77 text + 16 image tokens (the APM Conv1d 93 -> 77), 8 conditioning frames of a
#: 16-frame chunk. Widths are multiples of 32 because the official temporal convs and CAM mergers hard-code
#: GroupNorm(32). Two levels keep every block type (CrossAttnDownBlock3D, DownBlock3D, mid, UpBlock3D,
#: CrossAttnUpBlock3D) with one down- and one upsampling; the 32 -> 64 widths give 2 channels per group at level 1.
TINY = {
    "block_out_channels": (32, 64),
    "down_block_types": ("CrossAttnDownBlock3D", "DownBlock3D"),
    "up_block_types": ("UpBlock3D", "CrossAttnUpBlock3D"),
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 1024,
    "conditioning_embedding_out_channels": (8, 8, 16, 16),
    "resampler_inner_dim": 8,
    "num_frames": 16,
    "num_cond_frames": 8,
    "latent_height": 4,
    "latent_width": 6,
}
TIMESTEP = 481  # one of the official 50 DDIM steps (981, 961, ..., 1)
GUIDANCE_SCALE = 7.5  # official inference_long_video.yaml
SEED = 20250327

#: Official modules whose source defines what the fixture records (hashed into the metadata).
_OFFICIAL_SOURCES = (
    "t2v_enhanced/model/diffusers_conditional/models/controlnet/unet_3d_condition.py",
    "t2v_enhanced/model/diffusers_conditional/models/controlnet/unet_3d_blocks.py",
    "t2v_enhanced/model/diffusers_conditional/models/controlnet/controlnet.py",
    "t2v_enhanced/model/diffusers_conditional/models/controlnet/conditioning.py",
    "t2v_enhanced/model/diffusers_conditional/models/controlnet/attention.py",
    "t2v_enhanced/model/diffusers_conditional/models/controlnet/attention_processor.py",
    "t2v_enhanced/model/diffusers_conditional/models/controlnet/processor.py",
    "t2v_enhanced/model/diffusers_conditional/models/controlnet/transformer_2d.py",
    "t2v_enhanced/model/diffusers_conditional/models/controlnet/transformer_temporal.py",
    "t2v_enhanced/model/diffusers_conditional/models/controlnet/image_embedder.py",
    "t2v_enhanced/model/diffusers_conditional/models/controlnet/pipeline_text_to_video_w_controlnet_synth.py",
    "t2v_enhanced/model/layers/conv_channel_extension.py",
)


# --------------------------------------------------------------------------------------------------------------------
# Official modules
# --------------------------------------------------------------------------------------------------------------------


def _memory_efficient_attention(query, key, value, attn_bias=None, op=None, scale=None):
    """What ``xformers.ops.memory_efficient_attention`` computes: ``softmax(q k^T * scale) v`` per batch row."""
    if attn_bias is not None:
        raise NotImplementedError("the official extender runs without attention masks")
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    weights = torch.softmax(query @ key.transpose(-1, -2) * scale, dim=-1)
    return weights @ value


def import_official(root: Path) -> types.SimpleNamespace:
    """Import the official modules from the checkout at ``root`` (its ``t2v_enhanced`` package)."""
    if not (root / _OFFICIAL_SOURCES[0]).is_file():
        raise SystemExit(f"--official: {root} is not a StreamingT2V checkout (no {_OFFICIAL_SOURCES[0]})")
    sys.path.insert(0, str(root))
    try:
        import diffusers
        from t2v_enhanced.model import pl_module_params_controlnet as params
        from t2v_enhanced.model.diffusers_conditional.models.controlnet import (
            conditioning,
            controlnet,
            image_embedder,
            pipeline_text_to_video_w_controlnet_synth as pipeline,
            processor,
            unet_3d_condition,
        )
    except ImportError as error:
        raise SystemExit(
            f"cannot import the official StreamingT2V modules from {root}: {error}. They need diffusers 0.27, "
            "transformers 4.39, open_clip_torch 2.24, pytorch_lightning 2.0, einops and kornia (see the fixture README)"
        ) from error
    if not diffusers.__version__.startswith("0.27."):
        raise SystemExit(f"the official code pins diffusers 0.27.2; this environment has {diffusers.__version__}")
    processor.xformers = types.SimpleNamespace(
        ops=types.SimpleNamespace(memory_efficient_attention=_memory_efficient_attention)
    )
    return types.SimpleNamespace(
        params=params,
        conditioning=conditioning,
        controlnet=controlnet,
        image_embedder=image_embedder,
        pipeline=pipeline,
        processor=processor,
        unet_3d_condition=unet_3d_condition,
    )


def official_source_digest(root: Path) -> str:
    """sha256 over the official source files that define the recorded computation."""
    digest = hashlib.sha256()
    for rel in _OFFICIAL_SOURCES:
        digest.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return digest.hexdigest()


def build_official(off: types.SimpleNamespace) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """(base_model, CAM, resampler) built like ``VideoLDM.__init__`` with the shipped config.yaml, at TINY size."""
    # The CAM mergers take their head size from a constructor default (64, the full model's attention_head_dim);
    # at the tiny size it is the tiny attention_head_dim, which is also what a loader reading the config from
    # weight shapes must assume (a merger's head count does not show in its weights).
    off.unet_3d_condition.ConditionalModel = functools.partial(
        off.conditioning.ConditionalModel, attention_head_dim=TINY["attention_head_dim"]
    )
    # Only the class name of the image encoder is read by the UNets (OpenCLIP: image tokens repeated per frame);
    # a real FrozenOpenCLIPImageEmbedder would download ViT-H/14, and the fixture starts from its embeddings.
    encoder_class = off.image_embedder.FrozenOpenCLIPImageEmbedder
    image_encoder = encoder_class.__new__(encoder_class)
    unet_params = off.params.UNetParams(
        conditioning_embedding_out_channels=list(TINY["conditioning_embedding_out_channels"]),
        num_frame_conditioning=1,
        frame_expansion="none",
        downsample_controlnet_cond=True,
        num_frames=TINY["num_frames"],
        merging_mode="addition",
        condition_encoder="",
        zero_conv_mode="Identity",
        clean_model=True,
        merging_mode_base="attention_cross_attention",
        use_resampler=True,
        use_standard_attention_processor=False,
        resampler_cls=off.image_embedder.__name__ + ".ImgEmbContextResampler",
        resampler_merging_layers=4,
        image_encoder_obj=image_encoder,
        num_control_input_frames=TINY["num_cond_frames"],
        use_image_tokens_main=True,
        use_image_tokens_ctrl=False,
    )
    base = off.unet_3d_condition.UNet3DConditionModel(
        sample_size=TINY["latent_height"],
        block_out_channels=TINY["block_out_channels"],
        down_block_types=TINY["down_block_types"],
        up_block_types=TINY["up_block_types"],
        layers_per_block=TINY["layers_per_block"],
        attention_head_dim=TINY["attention_head_dim"],
        cross_attention_dim=TINY["cross_attention_dim"],
        norm_num_groups=TINY["norm_num_groups"],
        norm_eps=TINY["norm_eps"],
        merging_mode=unet_params.merging_mode_base,
        use_image_embedding=True,
        use_fps_conditioning=False,
        unet_params=unet_params,
    )
    cam = off.controlnet.ControlNetModel.from_unet(
        unet=base,
        conditioning_embedding_out_channels=unet_params.conditioning_embedding_out_channels,
        downsample_controlnet_cond=True,
        num_frames=unet_params.num_control_input_frames,  # frame_expansion "none": the CAM sees 8 frames
        num_frame_conditioning=unet_params.num_control_input_frames,
        frame_expansion="none",
        pre_transformer_in_cond=False,
        num_tranformers=1,
        vae=None,
        zero_conv_mode="Identity",
        merging_mode="addition",
        condition_encoder="",
        use_controlnet_mask=False,
        use_image_embedding=False,
        unet_params=unet_params,
        use_image_encoder_normalization=False,
    )
    resampler = off.image_embedder.ImgEmbContextResampler(
        inner_dim=TINY["resampler_inner_dim"], cross_attention_dim=TINY["cross_attention_dim"], expansion_factor=16
    )
    # VideoLDM installs its xformers processor (the one with the APM mixing) on both UNets when xformers imports.
    for module, masks in ((cam, unet_params.attention_mask_params), (base, unet_params.attention_mask_params_base)):
        off.processor.set_use_memory_efficient_attention_xformers(
            module,
            num_frame_conditioning=unet_params.num_control_input_frames,
            num_frames=unet_params.num_frames,
            attention_mask_params=masks,
        )
    return base.eval(), cam.eval(), resampler.eval()


# --------------------------------------------------------------------------------------------------------------------
# Random values on a coarse grid
# --------------------------------------------------------------------------------------------------------------------


def _grid(shape: tuple[int, ...], std: float, gen: torch.Generator, levels: int = 2) -> torch.Tensor:
    """Gaussian-like values ``q * 2^k``, ``q`` an integer in ``[-levels, levels]``, standard deviation about ``std``.

    A power-of-two step keeps every value exact in fp16/bf16/fp32, and the few levels make the file compress
    about 11x (lzma), which keeps the fixture small although the 1024-wide context projections are not.
    """
    step = 2.0 ** round(math.log2(std / (levels / 2)))
    q = torch.clamp(torch.round(torch.randn(shape, generator=gen) * levels / 2), -levels, levels)
    return q * step


def randomize(modules: dict[str, torch.nn.Module], seed: int) -> None:
    """Seeded values for every parameter, in sorted checkpoint-key order (zero-initialised ones included)."""
    gen = torch.Generator().manual_seed(seed)
    params = {prefix + k: p for prefix, m in modules.items() for k, p in m.named_parameters()}
    with torch.no_grad():
        for name in sorted(params):
            p = params[name]
            if name.endswith(".alpha"):  # APM gate: SiLU(alpha) between about 0.3 and 1.5
                value = 0.5 + 0.25 * torch.randint(0, 6, (), generator=gen).float()
            elif p.ndim >= 2:  # linear / conv weights: variance-preserving scale
                # E_cond has no normalisation: without a gain for its SiLUs the frames' signal would fade over its
                # 8 convs and the conditioning frames would barely change the output.
                gain = 2.0 if ".controlnet_cond_embedding." in name else 1.0
                value = _grid(tuple(p.shape), gain / math.sqrt(p[0].numel()), gen)
            elif name.endswith("weight"):  # norm scales around 1
                value = 1.0 + _grid(tuple(p.shape), 0.125, gen)
            else:  # biases
                value = _grid(tuple(p.shape), 0.125, gen)
            p.copy_(value.to(p.dtype))


def make_inputs(seed: int) -> dict[str, torch.Tensor]:
    """Inputs of one CFG step (batch 1), on a 1/32 grid (exact in fp16 too; compresses)."""
    gen = torch.Generator().manual_seed(seed + 1)
    h, w, f, fc = TINY["latent_height"], TINY["latent_width"], TINY["num_frames"], TINY["num_cond_frames"]

    def normal(*shape: int) -> torch.Tensor:
        return torch.clamp(torch.round(torch.randn(shape, generator=gen) * 32), -256, 256) / 32

    return {
        "sample": normal(1, 4, f, h, w),  # noisy latent [B, 4, F, H, W]
        "timestep": torch.tensor(TIMESTEP, dtype=torch.int64),
        "text_cond": normal(1, 77, TINY["cross_attention_dim"]),  # prompt tokens (CLIP last hidden state)
        "text_uncond": normal(1, 77, TINY["cross_attention_dim"]),  # negative-prompt tokens
        # last 8 frames of the previous chunk, RGB in [-1, 1], [B, 8, 3, 8H, 8W]
        "cond_frames": torch.round((torch.rand(1, fc, 3, 8 * h, 8 * w, generator=gen) * 2 - 1) * 32) / 32,
        "image_embeds_anchor": normal(1, TINY["cross_attention_dim"]),  # pooled CLIP embedding of the anchor frame
        "image_embeds_grey": normal(1, TINY["cross_attention_dim"]),  # ... of the mid-grey frame (uncond half)
        "guidance_scale": torch.tensor(GUIDANCE_SCALE, dtype=torch.float64),
    }


# --------------------------------------------------------------------------------------------------------------------
# One CFG step, as the official pipeline runs it
# --------------------------------------------------------------------------------------------------------------------


def official_cfg_step(
    off: types.SimpleNamespace,
    base: torch.nn.Module,
    cam: torch.nn.Module,
    resampler: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    dtype: torch.dtype,
) -> dict[str, torch.Tensor]:
    """eps_uncond, eps_cond and the guided eps of one denoising step of ``TextToVideoSDPipeline.__call__``."""
    for module in (base, cam, resampler):
        module.to(dtype)
    x = {k: (v.to(dtype) if v.is_floating_point() and k != "guidance_scale" else v) for k, v in inputs.items()}
    with torch.no_grad():
        # pipeline: img_cond = resampler(encoder(anchor)); img_cond_unc = resampler(encoder(zeros_like(anchor)))
        img_cond = resampler(x["image_embeds_anchor"], batch_size=1)
        img_cond_unc = resampler(x["image_embeds_grey"], batch_size=1)
        stub = types.SimpleNamespace(text_encoder=types.SimpleNamespace(dtype=dtype))
        prompt_embeds = off.pipeline.TextToVideoSDPipeline._encode_prompt(
            stub,
            None,
            torch.device("cpu"),
            1,
            True,
            None,
            prompt_embeds=x["text_cond"],
            negative_prompt_embeds=x["text_uncond"],
            img_cond=img_cond,
            img_cond_unc=img_cond_unc,
        )
        # prepare_image with cfg_text_image=False: the same frames for both halves, then (B F) C H W
        image = torch.cat([x["cond_frames"]] * 2)
        image = image.reshape(-1, *image.shape[2:])
        latent_model_input = torch.cat([x["sample"]] * 2)  # DDIM's scale_model_input is the identity
        t = x["timestep"]
        down, mid = cam(
            latent_model_input[:, : base.config.in_channels],
            t,
            encoder_hidden_states=prompt_embeds,
            controlnet_cond=image,
            attention_mask=None,
            vq_gan=None,
            weight_control_sample=1.0,
            return_dict=False,
            controlnet_mask=None,
        )
        noise_pred = base(
            latent_model_input,
            t,
            encoder_hidden_states=prompt_embeds,
            cross_attention_kwargs=None,
            attention_mask=None,
            down_block_additional_residuals=[s.to(dtype=latent_model_input.dtype) for s in down],
            mid_block_additional_residual=mid.to(dtype=latent_model_input.dtype),
            fps=None,
        ).sample
        uncond, cond = noise_pred.chunk(2)
        guided = uncond + float(inputs["guidance_scale"]) * (cond - uncond)
    return {"eps_uncond": uncond, "eps_cond": cond, "eps_guided": guided}


# --------------------------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------------------------


def _read_official_keys() -> set[str]:
    keys = set()
    for line in OFFICIAL_KEYS.read_text().splitlines():
        if line and not line.startswith("#"):
            keys.add(line.split("\t", 1)[0])
    return keys


def _write_xz(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> int:
    from safetensors.torch import save

    data = lzma.compress(save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata), preset=9)
    path.write_bytes(data)
    return len(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout of Picsart-AI-Research/StreamingT2V")
    parser.add_argument("--commit", default=OFFICIAL_COMMIT, help="the checkout's commit (recorded in the metadata)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture folder")
    args = parser.parse_args(argv)

    off = import_official(args.official.resolve())
    base, cam, resampler = build_official(off)
    modules = {"base_model.": base, "unet.": cam, "resampler.": resampler}
    randomize(modules, SEED)
    weights = {prefix + k: v.detach().clone() for prefix, m in modules.items() for k, v in m.state_dict().items()}
    unknown = sorted(set(weights) - _read_official_keys())
    if unknown:
        raise SystemExit(f"keys not in streaming_t2v.ckpt ({len(unknown)}): {unknown[:5]}")

    inputs = make_inputs(SEED)
    outputs = official_cfg_step(off, base, cam, resampler, inputs, torch.float32)
    outputs_fp64 = official_cfg_step(off, base, cam, resampler, inputs, torch.float64)
    replaced = {
        "eps_guided_frames_zeroed_fp64": dict(inputs, cond_frames=torch.zeros_like(inputs["cond_frames"])),
        "eps_guided_anchor_zeroed_fp64": dict(inputs, image_embeds_anchor=inputs["image_embeds_anchor"] * 0),
    }
    teeth = {name: official_cfg_step(off, base, cam, resampler, x, torch.float64) for name, x in replaced.items()}
    teeth = {name: run["eps_guided"] for name, run in teeth.items()}

    records = dict(inputs)
    records.update(outputs)
    records.update({k + "_fp64": v for k, v in outputs_fp64.items()})
    records.update(teeth)
    provenance = {
        "official_repository": "Picsart-AI-Research/StreamingT2V",
        "official_branch": "StreamingModelscope",
        "official_commit": args.commit,
        "official_source_sha256": official_source_digest(args.official.resolve()),
        "tiny_config": TINY,
        "seed": SEED,
    }
    # One metadata entry: safetensors writes a metadata map in arbitrary order, one key keeps the bytes stable.
    metadata = {"official_extender_fixture": json.dumps(provenance, sort_keys=True)}
    args.out.mkdir(parents=True, exist_ok=True)
    n_weights = _write_xz(args.out / "weights.safetensors.xz", weights, metadata)
    n_io = _write_xz(args.out / "io.safetensors.xz", records, metadata)

    ref, ref64 = outputs["eps_guided"].double(), outputs_fp64["eps_guided"]
    scale = ref64.abs().max()
    print(f"official source sha256: {provenance['official_source_sha256']}")
    print(f"weights: {len(weights)} tensors, {sum(v.numel() for v in weights.values())} values, {n_weights} bytes")
    print(f"io: {len(records)} tensors, {n_io} bytes")
    print(f"eps_guided: max |x| {scale:.4f}, std {ref64.std():.4f}")
    spread = (ref - ref64).abs().max()
    print(f"official fp32 vs fp64: max abs {spread:.3e} ({spread / scale:.2e} of max |x|)")
    for name, run in teeth.items():
        print(f"{name}: max abs change {(run - ref64).abs().max():.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
