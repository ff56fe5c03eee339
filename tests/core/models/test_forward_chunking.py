"""Forward chunking of the feed-forwards (blocks.set_forward_chunking): exact, on by default where it lowers the peak.

Chunking cuts the tokens of ``ff(norm3(x)) + x`` into pieces; each token's arithmetic is the same, only the GEMM's
row count changes, so chunked and unchunked outputs agree to float round-off: fp32 to 1e-5 relative; in fp16/bf16 chunking adds no
error of its own against the fp32 output (the BLAS may block a shorter GEMM differently; see ``_compare``).
"""
from __future__ import annotations

import pytest
import torch

from streamingt2v_core.models import ExtenderConfig, RefinerUNetConfig, StreamingT2VExtender, UNet3D
from streamingt2v_core.models.blocks import (
    DEFAULT_FF_CHUNK_ELEMENTS,
    BasicTransformerBlock,
    TemporalTransformer,
    set_forward_chunking,
)
from streamingt2v_core.models.memory_estimate import measure_peak_bytes_tracked

EPS = {torch.float32: 2.0**-23, torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}
DTYPES = [pytest.param(torch.float32, id="fp32"), pytest.param(torch.float16, id="fp16"),
          pytest.param(torch.bfloat16, id="bf16")]
#: The extender's half-precision runs take ~12 s each on a CPU: in the whole suite, not the quick tier.
EXTENDER_DTYPES = [DTYPES[0]] + [pytest.param(p.values[0], id=p.id, marks=pytest.mark.slow) for p in DTYPES[1:]]
#: Small enough that every block of the tiny models is cut into several pieces at the test sizes.
SMALL_LIMIT = 4 * 64 * 37


def _randomize(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
            elif name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def _count_ff_calls(model: torch.nn.Module) -> list[int]:
    calls = [0]

    def hook(*_):
        calls[0] += 1

    for module in model.modules():
        if isinstance(module, BasicTransformerBlock):
            module.ff.register_forward_hook(hook)
    return calls


def _rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt()).item()


def _compare(model, inputs, dtype):
    reference = None
    if dtype != torch.float32:
        with torch.inference_mode():  # the fp32 output: what fp16/bf16 round-off is measured against
            set_forward_chunking(model, 0)
            reference = model(*inputs).float()
    model = model.to(dtype)
    blocks = sum(isinstance(m, BasicTransformerBlock) for m in model.modules())
    calls = _count_ff_calls(model)
    with torch.inference_mode():
        set_forward_chunking(model, 0)
        plain = model(*inputs).float()
        assert calls[0] == blocks
        set_forward_chunking(model, SMALL_LIMIT)
        calls[0] = 0
        chunked = model(*inputs).float()
    assert calls[0] > 3 * blocks, "the small limit did not cut the feed-forwards into pieces"
    assert torch.isfinite(chunked).all()
    rms = _rms(chunked, plain)
    worst = ((chunked - plain).abs().max() / plain.abs().max()).item()
    if dtype == torch.float32:
        assert rms <= 1e-5 and worst <= 8e-5, (rms, worst)
        return
    # fp16/bf16: both paths round at every layer, and a shorter GEMM may round differently, so the two differ by a
    # few units of round-off after the whole UNet (measured: ~4 fp16 units). What must hold is that chunking adds no
    # error of its own: the chunked output is as close to the fp32 output as the unchunked one (within 25 %), and
    # the two are closer to each other than twice that round-off. A wrong piece (a token dropped, doubled or
    # misplaced) moves outputs by O(1), far beyond these bounds.
    own = _rms(plain, reference)
    assert own <= 64 * EPS[dtype], ("fp16/bf16 round-off itself", own)
    assert _rms(chunked, reference) <= 1.25 * own + EPS[dtype], (_rms(chunked, reference), own)
    assert rms <= 2 * own + EPS[dtype] and worst <= 64 * EPS[dtype], (rms, worst, own)


def _batch(dtype: torch.dtype) -> int:
    """CFG's batch of 2 in fp32; 1 in fp16/bf16, whose CPU kernels are many times slower (a token's pieces do not
    depend on the batch, and fp32 keeps the batched case)."""
    return 2 if dtype == torch.float32 else 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_refiner_chunked_equals_unchunked(dtype):
    torch.manual_seed(0)
    model = UNet3D(RefinerUNetConfig.tiny()).eval()
    _randomize(model, 1)
    g = torch.Generator().manual_seed(2)
    batch = _batch(dtype)
    inputs = (torch.randn(batch, 4, 8, 10, 16, generator=g), torch.tensor([500.0] * batch),
              torch.randn(batch, 77, 1024, generator=g))
    _compare(model, inputs, dtype)


@pytest.mark.parametrize("dtype", EXTENDER_DTYPES)
def test_extender_chunked_equals_unchunked(dtype):
    torch.manual_seed(0)
    model = StreamingT2VExtender(ExtenderConfig.tiny()).eval()
    _randomize(model, 3)
    g = torch.Generator().manual_seed(4)
    batch = _batch(dtype)
    inputs = (torch.randn(batch, 4, 16, 8, 8, generator=g), torch.tensor([500.0] * batch),
              torch.randn(batch, 77, 1024, generator=g), torch.randn(batch, 1024, generator=g),
              torch.rand(batch, 8, 3, 64, 64, generator=g) * 2 - 1)
    _compare(model, inputs, dtype)


def test_default_limit_chunks_only_large_inputs():
    """On by default, at a size that does not change small calls: 8,192 tokens per piece for the published
    transformer_in (inner width 2048), so the tiny test models run in one piece and a 720p refiner in many."""
    block = BasicTransformerBlock(512, 8, 64)
    assert block.ff_chunk_elements is None
    assert block.ff_chunk_tokens() == DEFAULT_FF_CHUNK_ELEMENTS // (4 * 2048) == 8192
    set_forward_chunking(block, 0)
    assert block.ff_chunk_tokens() == 0
    model = UNet3D(RefinerUNetConfig.tiny())
    blocks = sum(isinstance(m, BasicTransformerBlock) for m in model.modules())
    calls = _count_ff_calls(model)
    with torch.inference_mode():
        model(torch.randn(1, 4, 8, 10, 16), 10.0, torch.randn(1, 77, 1024))
    assert calls[0] == blocks


@pytest.mark.parametrize("bad", [-1, 1.5, True, "64"])
def test_bad_limit_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="max_elements"):
        set_forward_chunking(BasicTransformerBlock(16, 2, 8), bad)


def test_chunking_cuts_the_transformer_in_peak_at_the_published_width():
    """transformer_in at the published width (512 channels, 8 heads of 64) on 1280x720 CFG latents (691,200
    tokens), on the meta device: unchunked its GEGLU holds 4 x 2048 elements per token (10.5 GiB in fp16); with the
    default limit the peak is the block's input, output and attention tensors plus one 128 MiB piece."""
    with torch.device("meta"):
        layer = TemporalTransformer(320, 8, 64, 32).to(torch.float16).eval()
        x = torch.empty(2 * 24, 320, 90, 160, dtype=torch.float16)
    peaks = {}
    for limit in (0, None):
        set_forward_chunking(layer, limit)
        peaks[limit] = measure_peak_bytes_tracked(lambda: layer(x, 24))
    tokens = 2 * 24 * 90 * 160
    assert peaks[0] >= tokens * 4 * 2048 * 2  # the whole GEGLU intermediate
    assert peaks[None] <= tokens * 512 * 2 * 4 + DEFAULT_FF_CHUNK_ELEMENTS * 2 * 1.5
    assert peaks[None] < 0.4 * peaks[0], {k: v / 2**30 for k, v in peaks.items()}
