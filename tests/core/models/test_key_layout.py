"""Full presets built on the meta device have exactly the official checkpoint's keys, shapes and parameter counts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from streamingt2v_core.models import (
    ExtenderConfig,
    RefinerUNetConfig,
    StreamingT2VExtender,
    UNet3D,
    UNet3DConfig,
)
from streamingt2v_core.models.key_maps import read_key_list

# The contract: the official checkpoints' key lists, copied into the repository from
# shared/reference/official_keys (see tests/data/official_keys/README.md).
KEYS_DIR = Path(__file__).resolve().parents[2] / "data" / "official_keys"


def _read_tsv(name: str) -> dict[str, tuple[int, ...]]:
    return read_key_list(KEYS_DIR / name)


def _shapes(module: torch.nn.Module, prefix: str = "") -> dict[str, tuple[int, ...]]:
    return {k[len(prefix) :]: tuple(v.shape) for k, v in module.state_dict().items() if k.startswith(prefix)}


def _assert_same_layout(ours: dict, ref: dict, what: str) -> None:
    missing = sorted(set(ref) - set(ours))
    unexpected = sorted(set(ours) - set(ref))
    wrong = sorted(k for k in set(ref) & set(ours) if ref[k] != ours[k])
    msg = (
        f"{what}: {len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} wrong shapes\n"
        f"  missing: {missing[:8]}\n  unexpected: {unexpected[:8]}\n"
        f"  wrong: {[(k, ref[k], ours[k]) for k in wrong[:8]]}"
    )
    assert not (missing or unexpected or wrong), msg


@pytest.fixture(scope="module")
def full_extender() -> StreamingT2VExtender:
    with torch.device("meta"):
        return StreamingT2VExtender(ExtenderConfig.full())


@pytest.mark.parametrize(
    "prefix,tsv",
    [
        ("base_model.", "streaming_t2v_base_model.tsv"),
        ("unet.", "streaming_t2v_cam.tsv"),
        ("resampler.", "streaming_t2v_resampler.tsv"),
    ],
)
def test_extender_keys_and_shapes_equal_official(full_extender, prefix, tsv):
    _assert_same_layout(_shapes(full_extender, prefix), _read_tsv(tsv), prefix)


def test_extender_has_only_the_three_prefixes(full_extender):
    assert {k.split(".", 1)[0] for k in full_extender.state_dict()} == {"base_model", "unet", "resampler"}


def test_plain_unet3d_is_the_base_model_without_cam_and_apm():
    """Plain UNet3D = diffusers UNet3DConditionModel keys = base_model keys minus the mergers and APM mixers."""
    ref = {
        k: v
        for k, v in _read_tsv("streaming_t2v_base_model.tsv").items()
        if "cross_attention_merger" not in k and not re.search(r"attn2\.(conv\.|conv_ln\.|alpha$)", k)
    }
    assert len(ref) == 1480
    with torch.device("meta"):
        base = UNet3D(UNet3DConfig.full())
        refiner = UNet3D(RefinerUNetConfig.full())
    _assert_same_layout(_shapes(base), ref, "UNet3D")
    _assert_same_layout(_shapes(refiner), ref, "refiner UNet3D")


def _count(module: torch.nn.Module, predicate=lambda name: True) -> int:
    return sum(p.numel() for n, p in module.named_parameters() if predicate(n))


def test_parameter_counts(full_extender):
    with torch.device("meta"):
        base = UNet3D(UNet3DConfig.full())
        refiner = UNet3D(RefinerUNetConfig.full())
    approx = [
        (_count(base), 1411.2e6, "base UNet3D"),
        (_count(refiner), 1411.2e6, "refiner UNet3D"),
        (_count(full_extender.base_model, lambda n: "cross_attention_merger" in n), 68.8e6, "mergers"),
        (_count(full_extender.resampler), 22.3e6, "resampler"),
    ]
    for got, want, what in approx:
        assert abs(got - want) / want < 0.005, f"{what}: {got} parameters, expected ~{want:.0f}"
    # Exact numbers from the key-list README.
    assert _count(base) == 1_411_233_860
    assert _count(full_extender.base_model) == 1_480_478_804
    assert _count(full_extender.unet) == 621_981_664
    assert _count(full_extender.resampler) == 22_299_904


def test_tiny_presets_have_the_full_structure():
    """tiny() shrinks sizes only: same key names as full()."""
    with torch.device("meta"):
        full = set(StreamingT2VExtender(ExtenderConfig.full()).state_dict())
        tiny = set(StreamingT2VExtender(ExtenderConfig.tiny()).state_dict())
        refiner_full = set(UNet3D(RefinerUNetConfig.full()).state_dict())
        refiner_tiny = set(UNet3D(RefinerUNetConfig.tiny()).state_dict())
    assert full == tiny
    assert refiner_full == refiner_tiny


def test_tiny_presets_keep_interface_dims():
    cfg = ExtenderConfig.tiny()
    assert cfg.unet.in_channels == cfg.unet.out_channels == 4
    assert cfg.unet.cross_attention_dim == 1024 and cfg.image_embed_dim == 1024
    assert (cfg.unet.text_tokens, cfg.num_image_tokens, cfg.context_tokens) == (77, 16, 93)
    assert (cfg.num_frames, cfg.num_cond_frames, cfg.apm_kernel_size) == (16, 8, 3)
    with torch.device("meta"):
        model = StreamingT2VExtender(cfg)
    conv = model.base_model.down_blocks[0].attentions[0].transformer_blocks[0].attn2.conv
    assert tuple(conv.weight.shape) == (77, 93, 3)
