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


# fp8 weight storage (Model Loader weight_dtype fp8_e4m3fn / fp8_e5m2, as the host's UNETLoader): the Linear/Conv
# weights are stored in 8 bits and cast per layer to the compute dtype (fp32 on this CPU). The exact reference is the
# fp32 model with those weights rounded to fp8: equal to fp32 round-off. Against the unrounded weights the output
# moves by the rounding: e4m3fn keeps 3 mantissa bits (relative rounding <= 2^-4 for normal values) but its smallest
# normal is 2^-6, so the tiny checkpoint's small random weights (|w| ~ 0.01-0.05) fall partly into its subnormals,
# where the relative error is larger; e5m2 keeps 2 bits (<= 2^-3) with normals down to 2^-14. Measured on the tiny
# refiner's output, relative RMS: e4m3fn 0.197, e5m2 0.337. The bounds are ~1.5x that; plain (unscaled) fp8
# storage, as the host's UNETLoader offers, is a memory saving with visible quantisation.
FP8_BOUNDS = {"fp8_e4m3fn": (torch.float8_e4m3fn, 0.3), "fp8_e5m2": (torch.float8_e5m2, 0.5)}


@pytest.mark.parametrize("dtype_name", list(FP8_BOUNDS))
def test_fp8_weights_load_and_match_rounded_fp32(comfy_host, dtype_name):
    import comfy.model_management
    import comfy.sample
    import comfy.samplers

    fp8, bound = FP8_BOUNDS[dtype_name]
    loader = comfy_host.node_class("StreamingT2VModelLoader")
    name = write_tiny_refiner(comfy_host.models_dir)
    full = loader.execute(model_name=name, weight_dtype="fp32", kind="auto").result[0]
    low, info = loader.execute(model_name=name, weight_dtype=dtype_name, kind="auto").result
    assert str(fp8) in info
    inner = low.model.diffusion_model
    assert low.model.manual_cast_dtype == torch.float32 and inner.dtype == torch.float32
    linear = inner.transformer_in.transformer_blocks[0].attn1.to_q
    assert linear.weight.dtype == fp8 and linear.comfy_cast_weights
    stored = sum(p.numel() * p.element_size() for p in inner.parameters())
    assert stored < 0.3 * sum(p.numel() * 4 for p in full.model.diffusion_model.parameters())
    # the reference: fp32 weights rounded through fp8 (give the zero-init output layers weights first, in both)
    g = torch.Generator().manual_seed(5)
    rounded = {}
    with torch.no_grad():
        for (n, p_full), (_, p_low) in zip(full.model.diffusion_model.named_parameters(), inner.named_parameters()):
            if not p_full.abs().sum():
                fresh = torch.randn(p_full.shape, generator=g) * 0.05
                p_full.copy_(fresh)
                p_low.copy_(fresh.to(p_low.dtype))
            rounded[n] = p_low.detach().float()
    comfy.model_management.load_models_gpu([full, low])
    gen = torch.Generator().manual_seed(1)
    x, t, ctx = torch.randn(2, 4, 8, 10, 16, generator=gen) * 3, torch.tensor([4.0, 4.0]), torch.randn(2, 77, 1024, generator=gen)
    with torch.inference_mode():
        reference = full.model.apply_model(x, t, c_crossattn=ctx)
        out = low.model.apply_model(x, t, c_crossattn=ctx)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    rms = ((out - reference).pow(2).mean().sqrt() / reference.pow(2).mean().sqrt()).item()
    assert 1e-4 < rms <= bound, rms  # quantised, within the stated error
    originals = {n: p.detach().clone() for n, p in full.model.diffusion_model.named_parameters()}
    with torch.no_grad():
        for n, p in full.model.diffusion_model.named_parameters():
            p.copy_(rounded[n])
        with torch.inference_mode():
            exact = full.model.apply_model(x, t, c_crossattn=ctx)
        for n, p in full.model.diffusion_model.named_parameters():
            p.copy_(originals[n])
    torch.testing.assert_close(out, exact, rtol=1e-5, atol=1e-5)
    # and it samples through the host
    latent = torch.zeros(1, 4, 4, 10, 16)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(3)
    cond = [[torch.randn(1, 77, 1024, generator=g), {}]]
    with torch.inference_mode():
        sampled = comfy.sample.sample_custom(low, noise, 1.0, comfy.samplers.sampler_object("euler"),
                                             torch.tensor([2.0, 1.0, 0.0]), cond, cond, latent, disable_pbar=True, seed=0)
    assert torch.isfinite(sampled).all()
