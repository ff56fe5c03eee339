"""The extender against the official StreamingT2V code, through a recorded fixture.

``tests/data/official_extender_fixture/`` holds a tiny extender built from the official classes (branch
``StreamingModelscope``, commit a8aceea5) with random weights, every zero-initialised gate made non-zero, saved under
the exact ``streaming_t2v.ckpt`` key names, and the output of one classifier-free-guidance step of the official
pipeline (CAM on the first 8 noisy frames with the conditioning frames, APM tokens of the anchor and of the grey
image, ``u + 7.5 (c - u)``). ``scripts/record_official_extender_fixture.py`` wrote it; its README says how.

Here our loader reads the file through its official-format path (format detection, config inferred from shapes,
strict keys and shapes), our extender runs the same step, and the output must equal the official one.

Tolerances, relative to the largest magnitude of the recorded guided output (about 9.7):

- ``TOL = 1e-5`` in float64. Both sides run the same arithmetic without fp32 round-off; we measured 1.8e-14. A real
  change of the computation moves the output by far more: zeroing the conditioning frames by 1.5 (150 % of the
  scale), zeroing the anchor embedding by 0.54, each of the four same-shaped-tensor swaps below (what a wrong key
  map does) by 0.41 to 1.3. The tests assert at least 1000x resp. 100x the tolerance.
- ``FP32_TOL = 1e-4`` in float32, the precision the official inference runs in. There the CFG step (7.5 x the
  difference of two predictions) amplifies round-off: the official fp32 output itself is 1.07e-5 away from its
  fp64 value, ours 0.9e-5 to 1.2e-5 (by thread count) from the official fp32 one. 1e-4 leaves room for other CPUs'
  summation orders and is still 4000x below the smallest real deviation above.
"""
from __future__ import annotations

import copy
import json
import lzma
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load

from streamingt2v_core.models import ExtenderConfig, UNet3DConfig
from streamingt2v_core.models.key_maps import read_key_list
from streamingt2v_core.models.loading import load_model
from streamingt2v_core.sampling import cfg_combine

DATA = Path(__file__).resolve().parents[2] / "data"
FIXTURE = DATA / "official_extender_fixture"
OFFICIAL_KEYS = DATA / "official_keys" / "streaming_t2v_full_state_dict.tsv"

TOL = 1e-5
FP32_TOL = 1e-4

#: The tiny config the fixture was recorded at (see its README), as our loader must infer it from the shapes.
EXPECTED_CONFIG = ExtenderConfig(
    unet=UNet3DConfig(
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(32, 64),
        attention_head_dim=8,
        norm_num_groups=32,
    ),
    cond_embedding_channels=(8, 8, 16, 16),
    resampler_inner_dim=8,
    merger_head_dim=8,
)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("official_extender") / "streaming_t2v_tiny.safetensors"
    path.write_bytes(lzma.decompress((FIXTURE / "weights.safetensors.xz").read_bytes()))
    return path


@pytest.fixture(scope="module")
def records() -> dict[str, torch.Tensor]:
    return load(lzma.decompress((FIXTURE / "io.safetensors.xz").read_bytes()))


@pytest.fixture(scope="module")
def loaded(weights_file):
    return load_model(weights_file, kind="extender", dtype="fp32")


@pytest.fixture(scope="module")
def extender_fp64(loaded):
    return copy.deepcopy(loaded.model).to(torch.float64)


def _cfg_step(model, records, dtype, cond_frames=None, anchor=None) -> torch.Tensor:
    """One CFG step: batch ``[uncond, cond]`` = (negative text, grey image) and (text, anchor), shared frames."""
    frames = records["cond_frames"] if cond_frames is None else cond_frames
    anchor = records["image_embeds_anchor"] if anchor is None else anchor
    with torch.no_grad():
        eps = model(
            records["sample"].expand(2, -1, -1, -1, -1).to(dtype),
            records["timestep"],
            torch.cat([records["text_uncond"], records["text_cond"]]).to(dtype),
            torch.cat([records["image_embeds_grey"], anchor]).to(dtype),
            frames.to(dtype),
        )
    uncond, cond = eps.chunk(2)
    return cfg_combine(cond, uncond, float(records["guidance_scale"]))


def _relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max |ours - ref| over max |ref|."""
    return float((ours.double() - ref.double()).abs().max() / ref.double().abs().max())


def test_fixture_is_loaded_as_the_official_checkpoint_format(loaded, weights_file):
    """The file uses streaming_t2v.ckpt's names; our loader detects it, infers the tiny config, loads strictly."""
    with safe_open(str(weights_file), "pt") as f:
        keys = set(f.keys())
        provenance = json.loads(f.metadata()["official_extender_fixture"])
    assert provenance["official_commit"].startswith("a8aceea5")
    assert keys <= set(read_key_list(OFFICIAL_KEYS)), sorted(keys - set(read_key_list(OFFICIAL_KEYS)))[:5]
    assert {k.split(".", 1)[0] for k in keys} == {"base_model", "unet", "resampler"}
    assert loaded.format == "official_streaming_t2v_ckpt"
    assert loaded.config == EXPECTED_CONFIG
    assert set(loaded.model.state_dict()) == keys


def test_cfg_step_matches_official_in_float64(extender_fp64, records):
    ours = _cfg_step(extender_fp64, records, torch.float64)
    error = _relative_error(ours, records["eps_guided_fp64"])
    assert error <= TOL, f"guided eps differs from the official code by {error:.2e} of its scale"


def test_cfg_step_matches_official_in_float32(loaded, records):
    ours = _cfg_step(loaded.model, records, torch.float32)
    assert ours.dtype == torch.float32
    error = _relative_error(ours, records["eps_guided"])
    assert error <= FP32_TOL, f"fp32 guided eps differs from the official fp32 run by {error:.2e} of its scale"


@pytest.mark.parametrize("replaced", ["cond_frames", "anchor"])
def test_conditioning_frames_and_anchor_each_change_the_output(extender_fp64, records, replaced):
    """Zeroed frames / anchor embedding: still equal to the official run with those inputs, and far from the original
    output, so a CAM or APM path that ignored its input could not pass the comparison above."""
    if replaced == "cond_frames":
        ours = _cfg_step(extender_fp64, records, torch.float64, cond_frames=torch.zeros_like(records["cond_frames"]))
        ref = records["eps_guided_frames_zeroed_fp64"]
    else:
        ours = _cfg_step(extender_fp64, records, torch.float64, anchor=torch.zeros_like(records["image_embeds_anchor"]))
        ref = records["eps_guided_anchor_zeroed_fp64"]
    assert _relative_error(ours, ref) <= TOL
    moved = _relative_error(ours, records["eps_guided_fp64"])
    assert moved > 1000 * TOL, f"replacing {replaced} moved the output by only {moved:.2e} of its scale"


@pytest.mark.parametrize(
    "key_a,key_b",
    [
        # two CAM mergers of the same width (what a key map that shifts the skip index would do)
        (
            "base_model.cross_attention_merger_down_blocks.1.temporal_transformer.attention.to_k.weight",
            "base_model.cross_attention_merger_down_blocks.2.temporal_transformer.attention.to_k.weight",
        ),
        # the APM token mixers of two spatial cross-attentions
        (
            "base_model.down_blocks.0.attentions.0.transformer_blocks.0.attn2.conv.weight",
            "base_model.down_blocks.0.attentions.1.transformer_blocks.0.attn2.conv.weight",
        ),
        # key and value projections of a text cross-attention
        (
            "base_model.up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_k.weight",
            "base_model.up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_v.weight",
        ),
        # the CAM's copy of a resnet conv and the base model's
        ("unet.down_blocks.0.resnets.0.conv1.weight", "base_model.down_blocks.0.resnets.0.conv1.weight"),
    ],
)
def test_swapping_two_same_shaped_tensors_fails_the_comparison(extender_fp64, records, key_a, key_b):
    state = extender_fp64.state_dict()
    a, b = state[key_a], state[key_b]
    assert a.shape == b.shape
    saved = a.clone()
    with torch.no_grad():
        a.copy_(b)
        b.copy_(saved)
    try:
        error = _relative_error(_cfg_step(extender_fp64, records, torch.float64), records["eps_guided_fp64"])
    finally:
        with torch.no_grad():
            b.copy_(a)
            a.copy_(saved)
    assert error > 100 * TOL, f"swapping {key_a} and {key_b} moved the output by only {error:.2e} of its scale"
