"""StreamingT2V extender (CAM + APM): shapes, zero-init identities, which inputs matter when, attention injection."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from streamingt2v_core.models import (
    AppearanceMixingCrossAttention,
    ConditionalAttentionModule,
    ExtenderConfig,
    StreamingT2VExtender,
    UNet3D,
)
from streamingt2v_core.models.attention import Attention

def _is_zero_init(name: str) -> bool:
    """The parameters that make a fresh extender equal to its base UNet3D."""
    return (
        ("cross_attention_merger" in name and ".temporal_transformer.proj_out." in name)
        or "controlnet_cond_embedding.conv_out." in name
        or name.endswith("attn2.alpha")
    )


def _fan_in_randn(p: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """Random weights scaled by 1/sqrt(fan_in), so signals keep their size through the (deep) network."""
    fan_in = p[0].numel() if p.ndim >= 2 else 1
    return torch.randn(p.shape, generator=gen) / fan_in**0.5


def _randomize_except_zero_init(module: nn.Module, seed: int = 0) -> None:
    """Random weights everywhere (also the temporal convs' zero-init conv4) except the three zero-init gates."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if _is_zero_init(name):
                continue
            if p.ndim >= 2:
                p.copy_(_fan_in_randn(p, gen))
            elif name.endswith("weight"):  # norm scales
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def _set(module: nn.Module, predicate, alpha: float = 0.5) -> int:
    """Make the selected gates non-zero: scalars (APM alpha) to ``alpha``, weights/biases to random values."""
    n = 0
    with torch.no_grad():
        for name, p in module.named_parameters():
            if predicate(name):
                if p.ndim == 0:
                    p.fill_(alpha)
                else:
                    p.copy_(_fan_in_randn(p) if p.ndim >= 2 else 0.1 * torch.randn_like(p))
                n += 1
    return n


def _merger_proj_out(name: str) -> bool:
    return "cross_attention_merger" in name and ".proj_out." in name


def _cond_conv_out(name: str) -> bool:
    return "controlnet_cond_embedding.conv_out." in name


def _alpha(name: str) -> bool:
    return name.endswith("attn2.alpha")


@pytest.fixture(scope="module")
def cfg() -> ExtenderConfig:
    return ExtenderConfig.tiny()


@pytest.fixture()
def extender(cfg) -> StreamingT2VExtender:
    model = StreamingT2VExtender(cfg).eval()
    _randomize_except_zero_init(model)
    return model


def _inputs(batch: int = 1, seed: int = 3, h: int = 8, w: int = 8):
    gen = torch.Generator().manual_seed(seed)
    return dict(
        sample=torch.randn(batch, 4, 16, h, w, generator=gen),
        timestep=torch.tensor([501.0] * batch),
        encoder_hidden_states=torch.randn(batch, 77, 1024, generator=gen),
        image_embeds=torch.randn(batch, 1024, generator=gen),
        cond_frames=torch.rand(batch, 8, 3, 8 * h, 8 * w, generator=gen) * 2 - 1,
    )


def _differs(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Different well beyond float round-off (1e-4 of the output scale; round-off is ~1e-7)."""
    return bool((a - b).abs().max() > 1e-4 * a.abs().max())


def _run(model, **inputs):
    with torch.no_grad():
        return model(**inputs)


def test_end_to_end_shapes_and_cam_features_match_base_skips(extender, cfg):
    inputs = _inputs(batch=2)
    out = _run(extender, **inputs)
    assert out.shape == (2, 4, 16, 8, 8)
    assert torch.isfinite(out).all()

    base = extender.base_model
    with torch.no_grad():
        context = extender.build_context(inputs["encoder_hidden_states"], inputs["image_embeds"])
        assert context.shape == (2, 77 + 16, 1024)
        cam = extender.unet(inputs["sample"], inputs["timestep"], context, inputs["cond_frames"])
        emb = base.embed_timestep(inputs["timestep"], 2, 16)
        _, skips = base.encode(base.fold_frames(inputs["sample"]), emb, context, 16)
    assert len(cam.skips) == len(skips) == 12
    for i, (c, s) in enumerate(zip(cam.skips, skips)):
        # Same channels/resolution; batch 2*8 CAM frames vs 2*16 base frames.
        assert c.shape[0] == 2 * 8 and s.shape[0] == 2 * 16, i
        assert c.shape[1:] == s.shape[1:], i
    assert cam.mid.shape == (2 * 8, cfg.unet.block_out_channels[-1], 1, 1)
    # Values: a CAM initialised from the base (ControlNet init: encoder copied, E_cond's conv_out zero) computes the
    # base encoder's own skips and mid of the first 8 noisy frames (text tokens only; APM alpha is 0 at init).
    from streamingt2v_core.models.cam import ConditionalAttentionModule

    copy = ConditionalAttentionModule.from_unet(base, num_cond_frames=cfg.num_cond_frames,
                                                cond_embedding_channels=cfg.cond_embedding_channels).eval()
    with torch.no_grad():
        copy.controlnet_cond_embedding.conv_out.weight.zero_()
        copy.controlnet_cond_embedding.conv_out.bias.zero_()
        got = copy(inputs["sample"], inputs["timestep"], context, inputs["cond_frames"])
        emb8 = base.embed_timestep(inputs["timestep"], 2, 8)
        hidden, skips8 = base.encode(base.fold_frames(inputs["sample"][:, :, :8]), emb8, context, 8)
        mid8 = base.mid_block(hidden, emb8, context, 8)
    for i, (c, s) in enumerate(zip(got.skips + [got.mid], skips8 + [mid8])):
        assert s.abs().max() > 1e-3, i
        torch.testing.assert_close(c, s, rtol=1e-5, atol=1e-5 * float(s.abs().max()), msg=f"feature {i}")
    assert _differs(got.skips[-1], cam.skips[-1])  # the extender's own (random) CAM weights: other features


def test_fresh_extender_is_exactly_its_base_unet(extender, cfg):
    """Zero-init merger P_out, E_cond conv_out and APM alpha: the extender equals the plain UNet3D bitwise."""
    plain = UNet3D(cfg.unet).eval()
    plain_keys = set(plain.state_dict())
    base_sd = extender.base_model.state_dict()
    plain.load_state_dict({k: v for k, v in base_sd.items() if k in plain_keys}, strict=True)
    inputs = _inputs(batch=2)
    out = _run(extender, **inputs)
    with torch.no_grad():
        ref = plain(inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"])
    assert ref.abs().max() > 1e-2
    assert torch.equal(out, ref)


@pytest.mark.parametrize("which", ["merger_proj_out", "apm_alpha"])
def test_non_zero_gates_change_the_output(extender, which):
    inputs = _inputs()
    before = _run(extender, **inputs)
    if which == "merger_proj_out":
        assert _set(extender, _merger_proj_out) == 2 * 13
        # E_cond conv_out stays zero: the CAM still sees the noisy frames and text, so the output must change.
    else:
        assert _set(extender, _alpha) == 16
    after = _run(extender, **inputs)
    assert _differs(after, before)


def test_cond_frames_matter_only_once_p_out_and_e_cond_out_are_non_zero(extender):
    inputs = _inputs()
    other = dict(inputs, cond_frames=-inputs["cond_frames"])
    assert torch.equal(_run(extender, **inputs), _run(extender, **other)), "fresh: mergers are identities"

    _set(extender, _merger_proj_out)
    assert torch.equal(_run(extender, **inputs), _run(extender, **other)), "E_cond conv_out still zero"

    _set(extender, _cond_conv_out)
    assert _differs(_run(extender, **inputs), _run(extender, **other))


def test_anchor_embedding_matters_only_once_alpha_is_non_zero(extender):
    inputs = _inputs()
    other = dict(inputs, image_embeds=torch.randn(1, 1024))
    assert torch.equal(_run(extender, **inputs), _run(extender, **other)), "alpha = 0: image tokens unused"
    _set(extender, _alpha)
    assert _differs(_run(extender, **inputs), _run(extender, **other))


def test_cam_reads_only_the_first_cond_frames_of_the_noisy_chunk(extender):
    _set(extender, _cond_conv_out)
    inputs = _inputs()
    changed = inputs["sample"].clone()
    changed[:, :, 8:] = torch.randn_like(changed[:, :, 8:])
    with torch.no_grad():
        ctx = extender.build_context(inputs["encoder_hidden_states"], inputs["image_embeds"])
        a = extender.unet(inputs["sample"], inputs["timestep"], ctx, inputs["cond_frames"])
        b = extender.unet(changed, inputs["timestep"], ctx, inputs["cond_frames"])
        changed[:, :, 0] += 1.0
        c = extender.unet(changed, inputs["timestep"], ctx, inputs["cond_frames"])
    assert all(torch.equal(x, y) for x, y in zip(a.skips + [a.mid], b.skips + [b.mid]))
    assert not torch.equal(b.mid, c.mid)


def test_shared_cond_frames_broadcast_over_cfg_batch(extender):
    _set(extender, _merger_proj_out)
    _set(extender, _cond_conv_out)
    inputs = _inputs(batch=2)
    shared = inputs["cond_frames"][:1]
    a = _run(extender, **dict(inputs, cond_frames=shared.expand(2, -1, -1, -1, -1)))
    b = _run(extender, **dict(inputs, cond_frames=shared))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_apm_mixing_applies_with_any_attention_function(extender):
    """The official code drops the APM mixing without xformers; ours is in every backend."""
    _set(extender, _alpha)
    _set(extender, _merger_proj_out)
    _set(extender, _cond_conv_out)
    n_layers = sum(isinstance(m, Attention) for m in extender.modules())
    assert sum(isinstance(m, AppearanceMixingCrossAttention) for m in extender.modules()) == 16
    calls = []

    def counting(q, k, v, heads):
        calls.append(1)
        b, n, inner = q.shape
        d = inner // heads
        qh, kh, vh = (t.reshape(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
        return (torch.softmax(qh @ kh.transpose(-1, -2) / d**0.5, -1) @ vh).transpose(1, 2).reshape(b, n, inner)

    inputs = _inputs()
    default = _run(extender, **inputs)
    extender.set_attention_function(counting)
    injected = _run(extender, **inputs)
    # base (66) + 13 mergers + CAM encoder/mid (2 + 4 * (6 + 1)) attention layers, each called once.
    assert n_layers == 66 + 13 + 30
    assert len(calls) == n_layers
    torch.testing.assert_close(injected, default, rtol=1e-4, atol=1e-5)


def test_bad_inputs_name_the_argument(extender):
    inputs = _inputs()
    with pytest.raises(ValueError, match="cond_frames"):
        _run(extender, **dict(inputs, cond_frames=inputs["cond_frames"][:, :7]))
    with pytest.raises(ValueError, match="cond_frames"):
        _run(extender, **dict(inputs, cond_frames=inputs["cond_frames"][..., :32, :32]))
    with pytest.raises(ValueError, match="image_embeds"):
        _run(extender, **dict(inputs, image_embeds=torch.randn(1, 768)))
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        _run(extender, **dict(inputs, encoder_hidden_states=torch.randn(1, 93, 1024)))


def test_cam_from_unet_copies_the_encoder():
    """ControlNet-style init: with E_cond's zero conv_out the CAM reproduces the UNet encoder on its frames."""
    cfg = ExtenderConfig.tiny()
    unet = UNet3D(cfg.unet).eval()
    _randomize_except_zero_init(unet, seed=5)
    cam = ConditionalAttentionModule.from_unet(unet, num_cond_frames=8).eval()
    inputs = _inputs()
    sample8 = inputs["sample"][:, :, :8]
    with torch.no_grad():
        feats = cam(sample8, inputs["timestep"], inputs["encoder_hidden_states"], inputs["cond_frames"])
        emb = unet.embed_timestep(inputs["timestep"], 1, 8)
        hidden, skips = unet.encode(unet.fold_frames(sample8), emb, inputs["encoder_hidden_states"], 8)
        mid = unet.mid_block(hidden, emb, inputs["encoder_hidden_states"], 8)
    assert all(torch.equal(a, b) for a, b in zip(feats.skips, skips))
    assert torch.equal(feats.mid, mid)
