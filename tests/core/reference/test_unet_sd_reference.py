"""The original ModelScope text-to-video format (``text2video_pytorch_model.pth``) against its own ``UNetSD``.

The original release of ModelScope T2V (before the diffusers port) ships its UNet as a bare state dict of
``UNetSD`` (``modelscope/models/multi_modal/video_synthesis/unet_sd.py``, PyPI ``modelscope``). A tiny ``UNetSD``
(the published structure with 32 base channels and head size 8) gets seeded random weights in every tensor and is
saved the way the release saves it. Our loader must detect the format, map it onto our UNet3D strictly (the same
LDM key map as MS-Vid2Vid-XL, with standard resampling and epsilon prediction), and the two networks must agree on
the same inputs to 1e-5 of the output's scale (float32 both; the differences are operation-order rounding, ~1e-7).
"""
from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from streamingt2v_core.__main__ import main
from streamingt2v_core.models import UNet3DConfig
from streamingt2v_core.models.loading import CheckpointError, detect_checkpoint_format, load_model
from tests.reference.modelscope_reference import randomize_, unet_sd_module

#: The published T2V configuration (configuration.json of the original release) with 32 base channels.
TINY_UNET_SD = dict(in_dim=4, dim=32, y_dim=768, context_dim=1024, out_dim=4, dim_mult=[1, 2, 4, 4], num_heads=8,
                    head_dim=8, num_res_blocks=2, attn_scales=[1, 0.5, 0.25], dropout=0.1, temporal_attention=True)
RTOL = 1e-5


@pytest.fixture(scope="module")
def reference_and_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    unet = unet_sd_module().UNetSD(**TINY_UNET_SD).eval()
    randomize_(unet, seed=5)
    path = tmp_path_factory.mktemp("t2v") / "text2video_pytorch_model.pth"
    torch.save(unet.state_dict(), path)  # the original loader reads torch.load(path) as the state dict itself
    return unet, path


def test_the_original_release_is_detected_as_its_own_format(reference_and_file) -> None:
    _, path = reference_and_file
    info = detect_checkpoint_format(path)
    assert (info.format, info.kind) == ("modelscope_t2v", "base_unet3d")
    config = info.config
    assert type(config) is UNet3DConfig and config.prediction_type == "epsilon"
    assert config.block_out_channels == (32, 64, 128, 128) and config.attention_head_dim == 8
    assert config.norm_num_groups == 32  # the original code's GroupNorm(32, ...), not a guess
    assert config.downsample_padding == 1 and config.upsample_trim_rows == 0
    # Not the published size: the head size came from transformer_in's 8 heads, and that is said.
    assert any("attention_head_dim=8 assumed" in note for note in info.assumptions), info.assumptions
    out = io.StringIO()
    assert main(["inspect", str(path)], out=out) == 0
    assert "format: modelscope_t2v" in out.getvalue() and "text2video_pytorch_model.pth" in out.getvalue()


@pytest.mark.parametrize("size", [(8, 8), (16, 8)], ids=["8x8", "16x8"])
def test_base_unet_matches_unet_sd(reference_and_file, size) -> None:
    unet, path = reference_and_file
    ours = load_model(path).model
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 4, *size, generator=gen)
    t = torch.tensor([981, 21], dtype=torch.long)
    context = torch.randn(2, 77, 1024, generator=gen)
    with torch.no_grad():
        expected = unet(x, t, context)
        got = ours(x, t.float(), context)
    assert got.shape == expected.shape
    scale = expected.abs().max()
    assert scale > 1e-2, "reference output is degenerate; the comparison would prove nothing"
    rel = ((got - expected).abs().max() / scale).item()
    assert rel < RTOL, f"max difference {rel:.2e} of the output scale (tolerance {RTOL:.0e})"


def test_the_same_file_wrapped_like_ms_vid2vid_is_the_refiner_and_kinds_decide_bare_files(reference_and_file,
                                                                                             tmp_path) -> None:
    """The two LDM-named formats share every key: the wrapping and the kind asked for tell them apart, and a bare
    file with no hint in its name is read as the refiner with that assumption stated."""
    unet, _ = reference_and_file
    wrapped = tmp_path / "weights.pth"
    torch.save({"state_dict": unet.state_dict()}, wrapped)
    assert detect_checkpoint_format(wrapped).format == "ms_vid2vid_xl"
    with pytest.raises(CheckpointError, match="kind='base_unet3d' was asked for.*MS-Vid2Vid-XL"):
        detect_checkpoint_format(wrapped, kind="base_unet3d")
    bare = tmp_path / "unet.pth"
    torch.save(unet.state_dict(), bare)
    assert detect_checkpoint_format(bare, kind="base_unet3d").format == "modelscope_t2v"
    assert detect_checkpoint_format(bare, kind="refiner_unet").format == "ms_vid2vid_xl"
    guessed = detect_checkpoint_format(bare)
    assert guessed.format == "ms_vid2vid_xl"
    assert any("pick kind base_unet3d" in note for note in guessed.assumptions), guessed.assumptions
