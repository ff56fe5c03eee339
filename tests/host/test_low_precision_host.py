"""Half precision in the host: our MODELs get the host's attention with the softmax in fp32 (as the host runs the SD2
family), so the host's non-fused attentions cannot overflow; a fp16 / bf16 refiner through the host's apply_model
stays finite and close to fp32 (tolerances as in tests/core/models/test_low_precision.py)."""
from __future__ import annotations

import pytest
import torch

from test_context_blend import pack_module, write_tiny_refiner

EPS = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}


def _close(low: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> None:
    low = low.float()
    assert torch.isfinite(low).all()
    rms = ((low - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()).item()
    assert rms <= 10 * EPS[dtype], rms


# sub-quadratic scales Q before its fp16 matmul and survives these logits; basic and split overflow without the upcast
@pytest.mark.parametrize("name, overflows", [("attention_basic", True), ("attention_split", True),
                                             ("attention_sub_quad", False)])
def test_injected_host_attention_upcasts_the_softmax(comfy_host, name, overflows):
    import comfy.ldm.modules.attention as host_attention

    fn = pack_module("comfy_model").host_attention_function()
    assert fn.keywords == {"attn_precision": torch.float32}
    kernel = getattr(host_attention, name)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(3, 12, 64, generator=g) * 40  # logits ~1e5, beyond fp16's 65504
    v = torch.randn(3, 12, 64, generator=g)
    reference = kernel(q, q, v, 1)
    plain = kernel(q.half(), q.half(), v.half(), 1)
    upcast = kernel(q.half(), q.half(), v.half(), 1, attn_precision=torch.float32)
    assert torch.isfinite(plain).all() != overflows  # the hazard at these inputs, without the upcast
    _close(upcast, reference, torch.float16)


@pytest.mark.parametrize("dtype_name, dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_half_precision_refiner_through_the_host_matches_fp32(comfy_host, dtype_name, dtype):
    import comfy.model_management

    loader = comfy_host.node_class("StreamingT2VModelLoader")
    name = write_tiny_refiner(comfy_host.models_dir)
    full = loader.execute(model_name=name, weight_dtype="fp32", kind="auto").result[0]
    half = loader.execute(model_name=name, weight_dtype=dtype_name, kind="auto").result[0]
    assert half.model.get_dtype() == dtype
    # the tiny checkpoint's zero-init output layers would make every output equal: give them weights
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for (n, p_full), (_, p_half) in zip(full.model.diffusion_model.named_parameters(),
                                           half.model.diffusion_model.named_parameters()):
            if not p_full.abs().sum():
                fresh = torch.randn(p_full.shape, generator=g) * 0.05
                p_full.copy_(fresh)
                p_half.copy_(fresh.to(dtype))
    comfy.model_management.load_models_gpu([full, half])
    gen = torch.Generator().manual_seed(1)
    x, t, ctx = torch.randn(2, 4, 8, 10, 16, generator=gen) * 3, torch.tensor([4.0, 4.0]), torch.randn(2, 77, 1024, generator=gen)
    with torch.inference_mode():
        reference = full.model.apply_model(x, t, c_crossattn=ctx)
        low = half.model.apply_model(x, t, c_crossattn=ctx)
    _close(low, reference.float(), dtype)
