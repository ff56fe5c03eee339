"""Attention calls never exceed the batch x heads limit, and splitting changes nothing.

The 720p refiner shapes are walked on the meta device: the full MS-Vid2Vid-XL config at 24 x 90 x 160 latents with
CFG batch 2 runs through every real module, with a recording attention function, and no arithmetic is done.
"""
from __future__ import annotations

import pytest
import torch

from streamingt2v_core.models import ExtenderConfig, RefinerUNetConfig, StreamingT2VExtender, UNet3D
from streamingt2v_core.models.attention import (
    DEFAULT_MAX_BATCH_HEADS,
    Attention,
    sdpa_attention,
    set_attention_batch_limit,
    split_attention_call,
)


def naive_attention(q, k, v, heads):
    """Softmax(QK^T/sqrt(d))V written out, as a stand-in for any host attention function."""
    b, n, inner = q.shape
    d = inner // heads
    qh, kh, vh = (t.reshape(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
    w = torch.softmax(qh @ kh.transpose(-1, -2) / d**0.5, dim=-1)
    return (w @ vh).transpose(1, 2).reshape(b, n, inner)


class Recorder:
    """An attention function that records (batch, heads) of every call; ``inner`` computes the result."""

    def __init__(self, inner=None):
        self.calls: list[tuple[int, int, int, int]] = []
        self.inner = inner

    def __call__(self, q, k, v, heads):
        self.calls.append((q.shape[0], heads, q.shape[1], k.shape[1]))
        if self.inner is None:
            return torch.empty_like(q)  # meta device: shapes only
        return self.inner(q, k, v, heads)


@pytest.mark.parametrize("fn", [sdpa_attention, naive_attention], ids=["sdpa", "host-like"])
@pytest.mark.parametrize("limit", [1, 7, 12, 10_000])
def test_split_call_equals_unsplit(fn, limit):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(37, 6, 32, generator=g) for _ in range(3))
    whole = fn(q, k, v, 4)
    recorder = Recorder(fn)
    split = split_attention_call(recorder, q, k, v, 4, limit)
    # bit-identical: each sequence is computed by the same kernel on the same data, only in another call
    torch.testing.assert_close(split, whole, rtol=0, atol=1e-6)
    assert all(b * h <= max(limit, h) for b, h, _, _ in recorder.calls)
    assert sum(b for b, _, _, _ in recorder.calls) == 37
    expected_calls = -(-37 // max(1, limit // 4))
    assert len(recorder.calls) == expected_calls


def test_attention_module_splits_self_and_folded_cross_attention():
    torch.manual_seed(0)
    self_attn = Attention(16, None, heads=2, dim_head=8).eval()
    cross = Attention(16, 24, heads=2, dim_head=8).eval()
    x = torch.randn(50, 5, 16)
    ctx = torch.randn(2, 7, 24)  # one context per video, 25 frames each folded into the batch
    with torch.no_grad():
        ref_self, ref_cross = self_attn(x), cross(x, ctx)
        for module in (self_attn, cross):
            module.attention_fn = Recorder(naive_attention)
        self_attn.max_batch_heads = 6  # 3 sequences of 2 heads per call
        cross.max_batch_heads = 3  # 1 video of 2 heads per call
        got_self, got_cross = self_attn(x), cross(x, ctx)
    torch.testing.assert_close(got_self, ref_self, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_cross, ref_cross, rtol=1e-5, atol=1e-6)
    assert [c[0] for c in self_attn.attention_fn.calls] == [3] * 16 + [2]
    # the folded cross-attention has batch 2 (videos, 25 frames x 5 tokens each); 2 x 2 heads exceeds 3
    assert [c[:3] for c in cross.attention_fn.calls] == [(1, 2, 125), (1, 2, 125)]


def test_tiny_unet_output_unchanged_by_a_small_limit():
    torch.manual_seed(0)
    model = UNet3D(RefinerUNetConfig.tiny()).eval()
    for p in model.parameters():  # zero-init output convs would hide differences
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(2, 4, 4, 10, 16)
    ctx = torch.randn(2, 77, 1024)
    with torch.no_grad():
        ref = model(x, torch.tensor([300.0, 300.0]), ctx)
        recorder = Recorder(sdpa_attention)
        model.set_attention_function(recorder)
        model.set_attention_batch_limit(64)
        got = model(x, torch.tensor([300.0, 300.0]), ctx)
    assert max(b * h for b, h, _, _ in recorder.calls) <= 64
    assert len(recorder.calls) > sum(isinstance(m, Attention) for m in model.modules())  # some layers were split
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


def _meta_refiner_720p_calls(limit: int | None) -> Recorder:
    """Walk the full MS-Vid2Vid-XL UNet at 720p (24 x 90 x 160 latents, CFG batch 2) on the meta device."""
    with torch.device("meta"):
        model = UNet3D(RefinerUNetConfig.full()).to(torch.float16)
        x = torch.empty(2, 4, 24, 90, 160, dtype=torch.float16)
        ctx = torch.empty(2, 77, 1024, dtype=torch.float16)
    recorder = Recorder()
    model.set_attention_function(recorder)
    if limit is not None:
        model.set_attention_batch_limit(limit)
    with torch.no_grad():
        out = model(x, torch.tensor([599.0, 599.0], device="meta"), ctx)
    assert out.shape == (2, 4, 24, 90, 160)
    return recorder


@pytest.fixture(scope="module")
def refiner_720p_default() -> Recorder:
    return _meta_refiner_720p_calls(None)


@pytest.mark.slow  # a 720p refiner forward on the CPU: ~20 s; the whole suite runs it, the quick tier not
def test_720p_refiner_never_exceeds_the_default_limit(refiner_720p_default):
    calls = refiner_720p_default.calls
    # The first level's temporal attention has 2 x 90 x 160 = 28,800 sequences x 5 heads = 144,000 per layer,
    # over the 65,535 grid limit; it has 10 such layers (2 down + 3 up temporal transformers, 2 attentions each).
    assert _sequences_per_layer(calls)[(5, 24, 24)] == 10 * 28_800
    assert max(b * h for b, h, _, _ in calls) <= DEFAULT_MAX_BATCH_HEADS < 65_535


@pytest.mark.slow  # a 720p refiner forward on the CPU: ~20 s; the whole suite runs it, the quick tier not
def test_720p_refiner_respects_a_fake_limit(refiner_720p_default):
    limit = 1000
    recorder = _meta_refiner_720p_calls(limit)
    assert max(b * h for b, h, _, _ in recorder.calls) <= limit
    # every sequence of every attention layer is still attended to exactly once
    assert _sequences_per_layer(recorder.calls) == _sequences_per_layer(refiner_720p_default.calls)


def _sequences_per_layer(calls) -> dict[tuple[int, int, int], int]:
    total: dict[tuple[int, int, int], int] = {}
    for b, h, n, m in calls:
        total[(h, n, m)] = total.get((h, n, m), 0) + b
    return total


def test_extender_limit_reaches_cam_and_mergers():
    model = StreamingT2VExtender(ExtenderConfig.tiny())
    layers = set_attention_batch_limit(model, 123)
    assert layers == sum(isinstance(m, Attention) for m in model.modules()) == 66 + 13 + 30
    assert all(m.max_batch_heads == 123 for m in model.modules() if isinstance(m, Attention))
    with pytest.raises(ValueError, match="max_batch_heads"):
        set_attention_batch_limit(model, 0)
