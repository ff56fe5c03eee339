"""fp16 and bf16 without surprises: the extender and the refiner stay finite and close to fp32, and the blocks that
overflow in half precision if computed naively (attention logits, the timestep sinusoid, norm statistics) do not.

Tolerance: relative to the fp32 output, the RMS error is at most 10 units of round-off of the dtype
(eps = 2^-10 for fp16, 2^-7 for bf16: 0.0098 and 0.078) and the largest error at most 20; measured at these sizes:
fp16 ~3.5e-3, bf16 ~2.8e-2, i.e. 3-4 units, the accumulation of one rounding per layer.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from streamingt2v_core.models import ExtenderConfig, RefinerUNetConfig, StreamingT2VExtender, UNet3D
from streamingt2v_core.models.attention import Attention
from streamingt2v_core.models.blocks import TemporalTransformer, timestep_embedding

EPS = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}
LOW = [pytest.param(torch.float16, id="fp16"), pytest.param(torch.bfloat16, id="bf16")]


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Fan-in-scaled random weights everywhere (zero-init gates too, so every path contributes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
            elif name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def _check_close(low: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> None:
    low = low.float()
    assert torch.isfinite(low).all()
    rms = ((low - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()).item()
    worst = ((low - ref).abs().max() / ref.abs().max()).item()
    assert rms <= 10 * EPS[dtype] and worst <= 20 * EPS[dtype], (rms, worst)


@pytest.fixture(scope="module")
def extender_case():
    model = StreamingT2VExtender(ExtenderConfig.tiny()).eval()
    _randomize(model, 0)
    g = torch.Generator().manual_seed(1)
    inputs = (torch.randn(2, 4, 16, 8, 8, generator=g), torch.tensor([999.0, 999.0]), torch.randn(2, 77, 1024, generator=g),
              torch.randn(2, 1024, generator=g), torch.rand(2, 8, 3, 64, 64, generator=g) * 2 - 1)
    with torch.no_grad():
        reference = model(*inputs).float()
    return model, inputs, reference


@pytest.fixture(scope="module")
def refiner_case():
    model = UNet3D(RefinerUNetConfig.tiny()).eval()
    _randomize(model, 1)
    g = torch.Generator().manual_seed(2)
    inputs = (torch.randn(2, 4, 8, 10, 16, generator=g), torch.tensor([999.0, 999.0]), torch.randn(2, 77, 1024, generator=g))
    with torch.no_grad():
        reference = model(*inputs).float()
    return model, inputs, reference


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("case", ["extender_case", "refiner_case"])
def test_models_in_half_precision_match_fp32(request, case, dtype):
    model, inputs, reference = request.getfixturevalue(case)
    try:
        with torch.no_grad():
            out = model.to(dtype)(*inputs)
    finally:
        model.float()
    assert out.dtype == dtype
    _check_close(out, reference, dtype)


@pytest.mark.parametrize("dtype", LOW)
def test_attention_softmax_does_not_overflow(dtype):
    """Logits of ~1e5 (beyond fp16's 65504): a naive fp16 QK^T overflows, our attention (fused kernel, fp32
    accumulation) does not."""
    torch.manual_seed(0)
    attn = Attention(64, None, heads=1, dim_head=64).eval()
    with torch.no_grad():
        attn.to_q.weight.copy_(torch.eye(64) * 40)
        attn.to_k.weight.copy_(torch.eye(64) * 40)
    x = torch.randn(3, 12, 64)
    with torch.no_grad():
        reference = attn(x)
        low = attn.to(dtype)(x.to(dtype))
        q = attn.to_q(x.to(dtype))
        naive_logits = q @ q.transpose(-1, -2)
    if dtype == torch.float16:
        assert not torch.isfinite(naive_logits).all()  # the hazard is real at these inputs
    _check_close(low, reference, dtype)


@pytest.mark.parametrize("dtype", LOW)
def test_norms_keep_fp32_statistics(dtype):
    """Activations of mean 300 and std 400 (squares beyond fp16's range): GroupNorm/LayerNorm kernels accumulate
    their statistics in fp32, so the temporal transformer stays finite and accurate."""
    block = TemporalTransformer(16, heads=2, dim_head=8, groups=4).eval()
    _randomize(block, 3)
    x = torch.randn(2 * 6, 16, 3, 3) * 400 + 300
    with torch.no_grad():
        reference = block(x, 6)
        low = block.to(dtype)(x.to(dtype), 6)
    assert torch.isfinite(F.group_norm(x.to(dtype), 4)).all()
    _check_close(low, reference, dtype)


@pytest.mark.parametrize("dtype", LOW)
def test_timestep_embedding_is_computed_in_fp32(dtype):
    """t * frequency reaches 999 radians; in fp16 its spacing is 0.5 rad, so a half-precision sinusoid would be
    wrong by O(1). The sinusoid is fp32 whatever the model dtype; only the MLP after it runs in the dtype."""
    t = torch.tensor([999.0, 998.0, 1.0])  # timesteps stay fp32 (bf16 cannot even hold 999: it rounds to 1000)
    emb = timestep_embedding(t, 32)
    assert emb.dtype == torch.float32
    exponent = -torch.log(torch.tensor(10000.0)) * torch.arange(16) / 16
    naive = torch.cos(t.to(dtype)[:, None] * torch.exp(exponent).to(dtype)[None]).float()
    assert (naive - emb[:, :16]).abs().max() > 0.1  # what fp32 avoids
    model = UNet3D(RefinerUNetConfig.tiny()).eval()
    _randomize(model, 4)
    with torch.no_grad():
        reference = model.embed_timestep(torch.tensor([999.0]), 1, 1)
        low = model.to(dtype).embed_timestep(torch.tensor([999.0]), 1, 1)
    _check_close(low, reference, dtype)
