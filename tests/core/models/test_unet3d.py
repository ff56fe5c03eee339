"""UNet3D: equivalence to diffusers' UNet3DConditionModel, shapes, attention injection, configs, dtypes."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from streamingt2v_core.models import (
    ExtenderConfig,
    RefinerUNetConfig,
    UNet3D,
    UNet3DConfig,
    sdpa_attention,
)
from streamingt2v_core.models.attention import Attention


def _randomize(module: nn.Module, std: float = 0.05, seed: int = 0) -> None:
    """Random values in *every* parameter, including the zero-initialised ones, so nothing is trivially zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def _inputs(batch: int = 2, frames: int = 16, h: int = 8, w: int = 8, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, 4, frames, h, w, generator=gen)
    context = torch.randn(batch, 77, 1024, generator=gen)
    timestep = torch.tensor([981.0, 21.0][:batch])
    return sample, timestep, context


def _diffusers_unet(cfg: UNet3DConfig):
    diffusers = pytest.importorskip("diffusers")
    return diffusers.UNet3DConditionModel(**cfg.diffusers_kwargs()).eval()


@pytest.mark.parametrize("size", [(8, 8), (6, 10)], ids=["8x8", "6x10-odd-upsample"])
def test_matches_diffusers_reference(tmp_path, size):
    """Random diffusers weights saved as safetensors load strictly into our UNet3D and give the same output."""
    from safetensors.torch import load_file, save_file

    cfg = UNet3DConfig.tiny()
    ref = _diffusers_unet(cfg)
    _randomize(ref)
    path = tmp_path / "diffusers_unet.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))

    ours = UNet3D(cfg).eval()
    ours.load_state_dict(load_file(str(path)), strict=True)

    sample, timestep, context = _inputs(h=size[0], w=size[1])
    with torch.no_grad():
        expected = ref(sample, timestep, context).sample
        got = ours(sample, timestep, context)
    assert got.shape == expected.shape == sample.shape
    scale = expected.abs().max()
    assert scale > 1e-2, "reference output is degenerate; the comparison would prove nothing"
    rel = ((got - expected).abs().max() / scale).item()
    assert rel < 1e-5, f"max relative difference to diffusers {rel:.2e}"


def test_matches_diffusers_reference_in_float64(tmp_path):
    """The same comparison in float64, where round-off (~1e-15) is far below the effect of any constant: a
    GroupNorm eps of 1e-5 instead of 1e-6 moves the output by ~1e-6 relative, which fp32's 1e-5 tolerance cannot see
    but 1e-9 here does."""
    cfg = UNet3DConfig.tiny()
    ref = _diffusers_unet(cfg).double()
    _randomize(ref)
    ours = UNet3D(cfg).double().eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    sample, timestep, context = (t.double() for t in _inputs())
    with torch.no_grad():
        expected = ref(sample, timestep, context).sample
        got = ours(sample, timestep, context)
    scale = expected.abs().max()
    assert scale > 1e-2, "reference output is degenerate; the comparison would prove nothing"
    rel = ((got - expected).abs().max() / scale).item()
    assert rel < 1e-9, f"max relative difference to diffusers in float64 {rel:.2e}"


def test_skip_shapes_follow_study_table():
    """12 skips: conv_in/transformer_in output + 2 per level + 3 downsamples (study §2.5 table)."""
    full = UNet3DConfig.full()
    assert full.num_skips == 12
    assert full.skip_channels() == [320, 320, 320, 320, 640, 640, 640, 1280, 1280, 1280, 1280, 1280]

    cfg = UNet3DConfig.tiny()
    model = UNet3D(cfg).eval()
    sample, timestep, context = _inputs(batch=1, h=8, w=8)
    with torch.no_grad():
        emb = model.embed_timestep(timestep[:1], 1, 16)
        _, skips = model.encode(model.fold_frames(sample), emb, context, 16)
    # Latent divisors per skip in the study's table: 32²,32²,32²,16²,16²,16²,8²,8²,8²,4²,4²,4² for 32² latents.
    divisors = [1, 1, 1, 2, 2, 2, 4, 4, 4, 8, 8, 8]
    expected = [(16, c, 8 // d, 8 // d) for c, d in zip(cfg.skip_channels(), divisors)]
    assert [tuple(s.shape) for s in skips] == expected


def test_refiner_config_24_frame_chunk():
    cfg = RefinerUNetConfig.tiny()
    assert cfg.prediction_type == "v_prediction" and cfg.chunk_frames == 24
    model = UNet3D(cfg).eval()
    # 10 rows: 10 -> 6 -> 4 -> 3 and back with MS-Vid2Vid-XL's (2, 1) padding and row trim (like 90 -> ... -> 13).
    sample, timestep, context = _inputs(batch=1, frames=24, h=10, w=16)
    with torch.no_grad():
        out = model(sample, timestep[:1], context)
    assert out.shape == (1, 4, 24, 10, 16)
    assert torch.isfinite(out).all()


def test_refiner_resampling_at_720p_latents():
    """MS-Vid2Vid-XL resampling (read in its Vid2VidSDUNet): downsample pad (2 rows, 1 col), upsample 2x then drop the
    first and last row: 90x160 latents go 90 -> 46 -> 24 -> 13 and back. Shapes only, on the meta device."""
    cfg = RefinerUNetConfig.full()
    assert cfg.downsample_padding == (2, 1) and cfg.upsample_trim_rows == 1
    with torch.device("meta"):
        model = UNet3D(cfg)
        sample = torch.empty(1, 4, 2, 90, 160)
        context = torch.empty(1, 77, 1024)
        emb = model.embed_timestep(torch.empty(1), 1, 2)
        _, skips = model.encode(model.fold_frames(sample), emb, context, 2)
        out = model(sample, torch.empty(1), context)
    assert [tuple(s.shape[-2:]) for s in skips] == (
        [(90, 160)] * 3 + [(46, 80)] * 3 + [(24, 40)] * 3 + [(13, 20)] * 3
    )
    assert out.shape == (1, 4, 2, 90, 160)
    up = model.up_blocks[0].upsamplers[0]
    x = torch.arange(12.0).view(1, 1, 3, 4)
    expected = torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")[..., 1:-1, :]
    with torch.no_grad():
        up_cpu = type(up)(1, trim_rows=1)
        nn.init.dirac_(up_cpu.conv.weight)
        nn.init.zeros_(up_cpu.conv.bias)
        torch.testing.assert_close(up_cpu(x), expected)
    with pytest.raises(ValueError, match="latent size 12x20"):
        cfg.check_latent_size(12, 20)
    UNet3DConfig.full().check_latent_size(45, 77)  # the T2V UNet upsamples to the skip size: anything goes


def test_attention_injection_point_is_used_by_every_layer():
    cfg = UNet3DConfig.tiny()
    model = UNet3D(cfg).eval()
    _randomize(model)
    sample, timestep, context = _inputs(batch=1)
    n_layers = sum(isinstance(m, Attention) for m in model.modules())
    # transformer_in + (2 spatial + 2 temporal per cross-attn layer... ) x 2 attentions each
    assert n_layers == 2 * (1 + 2 * (3 * 2 + 1 + 3 * 3))

    calls = []

    def manual_attention(q, k, v, heads):
        calls.append(q.shape)
        b, n, inner = q.shape
        d = inner // heads
        qh, kh, vh = (t.reshape(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
        w = torch.softmax(qh @ kh.transpose(-1, -2) / d**0.5, dim=-1)
        return (w @ vh).transpose(1, 2).reshape(b, n, inner)

    with torch.no_grad():
        default = model(sample, timestep[:1], context)
        model.set_attention_function(manual_attention)
        injected = model(sample, timestep[:1], context)
        model.set_attention_function(None)
        back = model(sample, timestep[:1], context)
    assert len(calls) == n_layers
    torch.testing.assert_close(injected, default, rtol=1e-4, atol=1e-5)
    assert torch.equal(back, default)


def test_sdpa_attention_layout():
    q, k, v = torch.randn(3, 5, 16), torch.randn(3, 7, 16), torch.randn(3, 7, 16)
    out = sdpa_attention(q, k, v, 4)
    qh, kh, vh = (t.view(3, -1, 4, 4).transpose(1, 2) for t in (q, k, v))
    ref = (torch.softmax(qh @ kh.transpose(-1, -2) / 2.0, -1) @ vh).transpose(1, 2).reshape(3, 5, 16)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="heads"):
        sdpa_attention(q, k, v, 3)


def test_timestep_forms_agree_and_bad_inputs_raise():
    model = UNet3D(UNet3DConfig.tiny()).eval()
    sample, _, context = _inputs(batch=2, frames=4)
    with torch.no_grad():
        a = model(sample, 500, context)
        b = model(sample, torch.tensor(500), context)
        c = model(sample, torch.tensor([500.0, 500.0]), context)
        d = model(sample, torch.tensor([500, 20]), context)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.allclose(a[1], d[1])
    with pytest.raises(ValueError, match="timestep"):
        model(sample, torch.tensor([1, 2, 3]), context)
    with pytest.raises(ValueError, match="sample"):
        model(sample[:, :3], 500, context)
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        model(sample, 500, context[..., :512])


def test_runs_in_parameter_dtype():
    model = UNet3D(UNet3DConfig.tiny()).eval()
    _randomize(model, std=0.02)
    sample, timestep, context = _inputs(batch=1, frames=4)
    with torch.no_grad():
        ref = model(sample, timestep[:1], context)
        out = model.to(torch.bfloat16)(sample, timestep[:1], context)  # fp32 inputs are cast to bf16
    assert out.dtype == torch.bfloat16
    err = (out.float() - ref).abs().max() / ref.abs().max()
    assert err < 0.05, f"bf16 relative error {err:.3f}"


@pytest.mark.parametrize("cls", [UNet3DConfig, RefinerUNetConfig, ExtenderConfig])
def test_config_round_trip(cls):
    for preset in (cls.full(), cls.tiny()):
        data = json.loads(json.dumps(preset.to_dict()))
        assert cls.from_dict(data) == preset
    with pytest.raises(ValueError, match="unknown"):
        cls.from_dict({"not_a_field": 1})


def test_config_validation_names_field():
    with pytest.raises(ValueError, match="block_out_channels"):
        UNet3DConfig(block_out_channels=(30, 64, 64, 64), norm_num_groups=8, attention_head_dim=8)
    with pytest.raises(ValueError, match="prediction_type"):
        UNet3DConfig(prediction_type="sample")
    with pytest.raises(ValueError, match="num_cond_frames"):
        ExtenderConfig(num_cond_frames=20)
