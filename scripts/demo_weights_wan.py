"""Tiny random Wan 2.1 VACE weights for the Wan workflows, under the real file names artists use.

Four files, built from the host's own classes so the host's loaders detect them from their state
dicts exactly as they do the real files:

- ``diffusion_models/wan2.1_vace_1.3B_fp16.safetensors``: a ``comfy.ldm.wan.model.VaceWanModel``
  (``vace_patch_embedding`` / ``vace_blocks`` keys: ``UNETLoader`` detects WAN21_Vace) with one
  128-wide head (the host derives heads as dim // 128), two blocks and one VACE block;
- ``diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors``: the same without the VACE branch (a
  ``WanModel``, detected as WAN21_T2V), which the refined workflow's Refine runs on;
- ``text_encoders/umt5_xxl_fp16.safetensors``: a UMT5 encoder in the host's ``comfy.text_encoders.t5``
  layout with its SentencePiece tokenizer inside (``spiece_model``, as the Comfy-Org repackaged file
  carries it). ``CLIPLoader(type="wan")`` recognises UMT5-XXL by block 23 of a 4096-wide model, so the
  tiny one keeps 24 blocks of width 4096 and shrinks the rest (one 16-wide head, a 32-wide gated FF,
  a few hundred tokens): 36 MB instead of 11 GB;
- ``vae/wan_2.1_vae.safetensors``: a ``comfy.ldm.wan.vae.WanVAE`` (Wan 2.1's 4x temporal / 8x spatial
  stride, 16 latent channels) 8 wide instead of 96.

One caveat, stated plainly: the host builds its UMT5 from a fixed config file
(``umt5_config_xxl.json``), not from the weights' shapes, so it cannot build the tiny one unaided.
:func:`install_tiny_umt5_support` lets it: it hands the host's own ``<name>_model_config`` model
option the sizes read from a *tiny* UMT5 state dict (a real file has the config's sizes and passes
untouched). The in-process CI host installs it before running the Wan workflows; a real ComfyUI with
these demo files and no hook fails at CLIPLoader with the host's own size-mismatch error.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import torch

WAN_WEIGHT_FILES = {
    "wan_vace": "diffusion_models/wan2.1_vace_1.3B_fp16.safetensors",
    "wan_t2v": "diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors",
    "wan_text_encoder": "text_encoders/umt5_xxl_fp16.safetensors",
    "wan_vae": "vae/wan_2.1_vae.safetensors",
}
# UMT5-XXL as the host's umt5_config_xxl.json has it; a state dict with these sizes is a real file.
REAL_UMT5 = {"d_ff": 10240, "vocab_size": 256384, "num_heads": 64, "d_kv": 64}
TINY_UMT5 = {"d_ff": 32, "num_heads": 1, "d_kv": 16}
UMT5_FF_KEY = "encoder.block.0.layer.1.DenseReluDense.wi_1.weight"
# Words of the prompts the workflows ship and of typical video prompts: the tiny tokenizer's corpus.
_TOKENIZER_CORPUS = """
A cat running on the street. A dog walks along the beach at sunset, waves, golden light.
An astronaut rides a horse on the moon, cinematic, slow camera pan, highly detailed.
A red car drives through a city at night with neon lights and rain on the road.
Aerial view of a forest river in autumn, mist, drone shot, smooth motion.
A woman dances in a field of flowers, wind, soft focus, film grain, realistic.
blurry, low quality, static, distorted, watermark, text, overexposed, jpeg artifacts, deformed.
"""


def _random_fill(shapes: dict[str, torch.Size], seed: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    from scripts.demo_weights import _random_fill as fill

    return fill(shapes, seed, dtype)


def _meta_shapes(factory) -> dict[str, torch.Size]:
    from scripts.demo_weights import _meta_state_shapes

    return _meta_state_shapes(factory)


TINY_WAN = {"dim": 128, "ffn_dim": 256, "num_heads": 1, "num_layers": 2, "in_dim": 16, "out_dim": 16, "text_dim": 4096}


def tiny_wan_vace_state(seed: int = 0, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """A tiny Wan 2.1 VACE (t2v backbone + VACE branch) state dict, keys as the host saves them."""
    import comfy.ldm.wan.model
    import comfy.ops

    # vace_in_dim 96 = 2 x 16 latent channels (inactive/reactive control) + 64 mask channels (8x8 pixels).
    shapes = _meta_shapes(lambda: comfy.ldm.wan.model.VaceWanModel(
        vace_layers=1, vace_in_dim=96, operations=comfy.ops.disable_weight_init, device="meta", **TINY_WAN))
    return {f"model.diffusion_model.{k}": v for k, v in _random_fill(shapes, seed, dtype).items()}


def tiny_wan_t2v_state(seed: int = 0, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """A tiny Wan 2.1 T2V state dict (the VACE model's backbone alone)."""
    import comfy.ldm.wan.model
    import comfy.ops

    shapes = _meta_shapes(lambda: comfy.ldm.wan.model.WanModel(
        model_type="t2v", operations=comfy.ops.disable_weight_init, device="meta", **TINY_WAN))
    return {f"model.diffusion_model.{k}": v for k, v in _random_fill(shapes, seed, dtype).items()}


def tiny_wan21_vae_state(seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """A tiny Wan 2.1 VAE state dict; the host reads its width from ``decoder.head.0.gamma``."""
    import comfy.ldm.wan.vae

    vae = comfy.ldm.wan.vae.WanVAE(dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                   temperal_downsample=[False, True, True], dropout=0.0)
    g = torch.Generator().manual_seed(seed)
    # 0.05-scaled noise: decoded frames stay in range through the 3-D conv stack (fan-in init saturates it).
    return {k: (torch.randn(v.shape, generator=g) * 0.05 if v.is_floating_point() else v).to(dtype).contiguous()
            for k, v in vae.state_dict().items()}


def tiny_umt5_tokenizer() -> bytes:
    """A small SentencePiece model with UMT5's special ids (pad 0, eos 1, unk 2, no bos), trained on a few
    prompts; deterministic (one thread, fixed corpus)."""
    import sentencepiece as spm

    model = io.BytesIO()
    sentences = [s.strip() for s in _TOKENIZER_CORPUS.replace(",", ".").split(".") if s.strip()]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences * 4), model_writer=model, vocab_size=256, hard_vocab_limit=False,
        model_type="unigram", character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, num_threads=1,
        minloglevel=2)
    return model.getvalue()


def tiny_umt5_state(seed: int = 0, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """A tiny UMT5 encoder with the tokenizer inside: 24 blocks of width 4096 (what the host detects as
    UMT5-XXL), small everywhere else; vocabulary = the tokenizer's pieces."""
    import json

    import comfy.ops
    import comfy.text_encoders.t5
    import sentencepiece as spm

    proto = tiny_umt5_tokenizer()
    vocab = spm.SentencePieceProcessor(model_proto=proto).get_piece_size()
    config_path = Path(comfy.text_encoders.t5.__file__).with_name("umt5_config_xxl.json")
    config = {**json.loads(config_path.read_text()), **TINY_UMT5, "vocab_size": vocab}
    shapes = _meta_shapes(lambda: comfy.text_encoders.t5.T5(config, torch.float32, "meta", comfy.ops.manual_cast))
    state = _random_fill(shapes, seed, dtype)
    state["spiece_model"] = torch.frombuffer(bytearray(proto), dtype=torch.uint8).clone()
    return state


def tiny_umt5_sizes(state_dict: dict) -> dict | None:
    """The config sizes of a tiny UMT5 state dict (None for anything else, a real UMT5-XXL included)."""
    ff = state_dict.get(UMT5_FF_KEY)
    bias = state_dict.get("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
    shared = state_dict.get("shared.weight")
    q = state_dict.get("encoder.block.0.layer.0.SelfAttention.q.weight")
    # UMT5 has a relative attention bias in every block (T5 v1.1 only in the first): only UMT5s are resized.
    per_layer_bias = "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight" in state_dict
    if ff is None or bias is None or shared is None or q is None or ff.shape[-1] != 4096 or not per_layer_bias:
        return None
    sizes = {"d_ff": int(ff.shape[0]), "vocab_size": int(shared.shape[0]), "num_heads": int(bias.shape[1]),
             "d_kv": int(q.shape[0]) // int(bias.shape[1])}
    return None if sizes == REAL_UMT5 else sizes


def install_tiny_umt5_support() -> None:
    """Let the in-process host build a tiny UMT5 (see the module docstring); idempotent, and a real
    UMT5-XXL loads exactly as before."""
    import comfy.sd

    original = comfy.sd.load_text_encoder_state_dicts
    if getattr(original, "streamingt2v_tiny_umt5", False):
        return

    def load_text_encoder_state_dicts(state_dicts=[], *args, model_options={}, **kwargs):  # noqa: B006 (host's signature)
        sizes = tiny_umt5_sizes(state_dicts[0]) if len(state_dicts) == 1 else None
        if sizes is not None:
            model_options = {**model_options, "umt5xxl_model_config": sizes}
        return original(state_dicts, *args, model_options=model_options, **kwargs)

    load_text_encoder_state_dicts.streamingt2v_tiny_umt5 = True
    comfy.sd.load_text_encoder_state_dicts = load_text_encoder_state_dicts


def write_wan_demo(models_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Write the Wan files where absent; a demo file already there is kept, a real one never touched."""
    from scripts.demo_weights import write_missing

    makers = {
        "wan_vace": (lambda: tiny_wan_vace_state(seed + 21), "tiny Wan 2.1 VACE (VaceWanModel, dim 128, 2 blocks, 1 VACE block)"),
        "wan_t2v": (lambda: tiny_wan_t2v_state(seed + 24), "tiny Wan 2.1 T2V (WanModel, dim 128, 2 blocks)"),
        "wan_text_encoder": (lambda: tiny_umt5_state(seed + 22), "tiny UMT5 (24 blocks of width 4096, 1 head, FF 32) + tokenizer"),
        "wan_vae": (lambda: tiny_wan21_vae_state(seed + 23), "tiny Wan 2.1 VAE (WanVAE, width 8)"),
    }
    return write_missing(models_dir, WAN_WEIGHT_FILES, makers)


def parameter_count(state: dict[str, torch.Tensor]) -> int:
    return sum(math.prod(v.shape) for k, v in state.items() if k != "spiece_model")
