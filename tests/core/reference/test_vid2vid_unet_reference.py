"""Our refiner UNet against MS-Vid2Vid-XL's own ``Vid2VidSDUNet`` (the PyPI ``modelscope`` package's code).

A tiny ``Vid2VidSDUNet`` (same code as the 1.4 B refiner, 32 base channels, head size 8) gets seeded random weights
in every tensor, including those the original zero-initialises. Its state dict is saved as a ``non_ema_0035000.pth``
style file and read back through our loader (format detection, config inference, the LDM -> diffusers key map, the
Conv1d -> Linear reshape, strict key check). Both networks then run the same noisy latents, timesteps and text
context. The outputs must agree to 1e-5 of the output's scale: both run in float32, so the only differences are
rounding in a different operation order (measured ~1e-7); a wrong key, a transposed projection or a wrong norm moves
the output by O(1) (the last test shows one such swap failing the check).

Heights: the refiner's resampling (downsampling padded 2 rows / 1 column, upsampling trimmed by 1 row) only takes
latent heights of 2 mod 8 (90 = 720 px is one), so both sizes have such heights; the widths are multiples of 8.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streamingt2v_core.models import RefinerUNetConfig
from streamingt2v_core.models.key_maps import UNetKeyMap
from streamingt2v_core.models.loading import load_model
from tests.reference.modelscope_reference import tiny_vid2vid_unet

RTOL = 1e-5


def inputs(height: int, width: int, frames: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two batch items at different (integer, as the official sampler rounds them) timesteps."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, frames, height, width, generator=gen)
    t = torch.tensor([599, 38], dtype=torch.long)
    context = torch.randn(2, 77, 1024, generator=gen)
    return x, t, context


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.abs().max()
    assert scale > 1e-2, "reference output is degenerate; the comparison would prove nothing"
    return ((got - expected).abs().max() / scale).item()


def assert_matches_reference(got: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert got.shape == expected.shape, f"{what}: shape {tuple(got.shape)} vs reference {tuple(expected.shape)}"
    rel = relative_error(got, expected)
    assert rel < RTOL, f"{what}: max difference {rel:.2e} of the output scale (tolerance {RTOL:.0e})"


@pytest.fixture(scope="module")
def reference_and_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    unet = tiny_vid2vid_unet()
    path = tmp_path_factory.mktemp("vid2vid") / "non_ema_0035000.pth"
    # The published file holds the weights under "state_dict" (the official loader reads load_dict['state_dict']).
    torch.save({"state_dict": unet.state_dict()}, path)
    return unet, path


def test_reference_file_loads_as_ms_vid2vid_with_the_published_structure(reference_and_file) -> None:
    unet, path = reference_and_file
    loaded = load_model(path)
    assert (loaded.kind, loaded.format) == ("refiner_unet", "ms_vid2vid_xl")
    config = loaded.config
    assert isinstance(config, RefinerUNetConfig)
    assert config.block_out_channels == (32, 64, 128, 128) and config.layers_per_block == 2
    assert config.attention_head_dim == 8 and config.norm_num_groups == 32 and config.transformer_in_heads == 8
    assert config.prediction_type == "v_prediction"
    assert sum(t.numel() for t in loaded.model.state_dict().values()) == sum(
        t.numel() for t in unet.state_dict().values())


@pytest.mark.parametrize("size", [(10, 16), (18, 24)], ids=["10x16", "18x24"])
def test_refiner_unet_matches_vid2vid_sd_unet(reference_and_file, size) -> None:
    unet, path = reference_and_file
    ours = load_model(path).model
    x, t, context = inputs(*size)
    with torch.no_grad():
        expected = unet(x, t, context)
        got = ours(x, t.float(), context)
    assert_matches_reference(got, expected, f"refiner UNet at {size[0]}x{size[1]} latents")


def test_a_key_map_that_swaps_two_same_shaped_tensors_fails_the_check(reference_and_file, monkeypatch) -> None:
    """The check has teeth: a key map that swaps the two self-attentions of one temporal transformer (same shapes,
    so the strict key/shape check cannot see it) still loads, and the differential comparison then fails."""
    unet, path = reference_and_file
    swap = {"input_blocks.1.2.transformer_blocks.0.attn1.to_q.weight":
            "input_blocks.1.2.transformer_blocks.0.attn2.to_q.weight"}
    swap.update({v: k for k, v in swap.items()})

    class SwappingKeyMap(UNetKeyMap):
        def ldm_to_diffusers_key(self, key: str) -> str:
            return super().ldm_to_diffusers_key(swap.get(key, key))

        def diffusers_to_ldm_key(self, key: str) -> str:
            ldm = super().diffusers_to_ldm_key(key)
            return swap.get(ldm, ldm)

    state = unet.state_dict()
    a, b = list(swap)
    assert state[a].shape == state[b].shape and not torch.equal(state[a], state[b])
    monkeypatch.setattr("streamingt2v_core.models.loading.plans.UNetKeyMap", SwappingKeyMap)
    swapped = load_model(path).model  # the strict check passes: every key and shape is there
    x, t, context = inputs(10, 16)
    with torch.no_grad():
        expected = unet(x, t, context)
        got = swapped(x, t.float(), context)
    with pytest.raises(AssertionError, match="max difference"):
        assert_matches_reference(got, expected, "refiner UNet with a swapped key map")
    assert relative_error(got, expected) > 100 * RTOL
