"""Forward chunking through the host MODEL: with LoRA patches (the host's load_lora_for_models, what
LoraLoaderModelOnly calls) and under TorchCompileModel the chunked refiner gives the unchunked output.

The tiny refiner runs its blocks in one piece at the default limit, so the tests force a small limit that cuts every
transformer and feed-forward into pieces (counted), and compare with chunking off.
"""
from __future__ import annotations

import pytest
import torch

from streamingt2v_core.models.blocks import BasicTransformerBlock
from test_context_blend import load_tiny_refiner, pack_module, text_cond

SMALL_LIMIT = 4 * 64 * 37
COMPILE_LIMIT = 4 * 64 * 320


def _lora(model, seed: int) -> dict[str, torch.Tensor]:
    """A rank-2 LoRA on every attention projection and feed-forward output, under kohya ``lora_unet_`` names."""
    g = torch.Generator().manual_seed(seed)
    lora = {}
    for key, p in model.model.diffusion_model.state_dict().items():
        if key.endswith(("to_q.weight", "to_v.weight", "ff.net.2.weight")):
            name = "lora_unet_" + key[: -len(".weight")].replace(".", "_")
            lora[f"{name}.lora_down.weight"] = torch.randn(2, p.shape[1], generator=g) * 0.3
            lora[f"{name}.lora_up.weight"] = torch.randn(p.shape[0], 2, generator=g) * 0.3
    return lora


def _pieces(model, handles: list | None = None) -> list[int]:
    """A counter of feed-forward calls (pieces) over the model's transformer blocks; the hooks' handles go to
    ``handles`` when given, for removal."""
    calls = [0]
    for module in model.model.diffusion_model.modules():
        if isinstance(module, BasicTransformerBlock):
            handle = module.ff.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
            if handles is not None:
                handles.append(handle)
    return calls


@pytest.fixture(scope="module")
def refiner(comfy_host):
    return load_tiny_refiner(comfy_host)


def test_chunked_refiner_with_a_lora_matches_unchunked(comfy_host, refiner):
    import comfy.model_management
    import comfy.sd

    patched, _ = comfy.sd.load_lora_for_models(refiner, None, _lora(refiner, 3), 1.0, 0.0)
    assert len(patched.patches) > 10
    comfy.model_management.load_models_gpu([patched])
    inner = patched.model.diffusion_model
    blocks = sum(isinstance(m, BasicTransformerBlock) for m in inner.modules())
    calls = _pieces(patched)
    g = torch.Generator().manual_seed(1)
    x, t, ctx = torch.randn(2, 4, 8, 10, 16, generator=g) * 3, torch.tensor([4.0, 4.0]), torch.randn(2, 77, 1024, generator=g)
    try:
        with torch.inference_mode():
            inner.set_forward_chunking(0)
            plain = patched.model.apply_model(x, t, c_crossattn=ctx)
            calls[0] = 0
            inner.set_forward_chunking(SMALL_LIMIT)
            chunked = patched.model.apply_model(x, t, c_crossattn=ctx)
        assert calls[0] > 3 * blocks
        with torch.inference_mode():
            comfy.model_management.load_models_gpu([refiner])
            unpatched = refiner.model.apply_model(x, t, c_crossattn=ctx)
    finally:
        inner.set_forward_chunking(None)
    assert (plain - unpatched).abs().max() > 1e-3  # the LoRA is applied
    torch.testing.assert_close(chunked, plain, rtol=1e-5, atol=1e-5)


def test_torch_compile_node_on_a_chunked_refiner_matches_eager_unchunked(comfy_host, refiner, monkeypatch):
    """The host's TorchCompileModel (the aot_eager backend, as tests/host/test_torch_compile.py explains) traces the
    piece loops without a graph break and samples what the unchunked eager model samples."""
    import functools

    import comfy.sample
    import comfy.samplers
    import torch._dynamo
    from comfy.ldm.modules.attention import attention_pytorch

    inner = refiner.model.diffusion_model
    inner.set_attention_function(functools.partial(attention_pytorch, attn_precision=torch.float32))
    original_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model=None, **kw: original_compile(model, **dict(kw, backend="aot_eager")))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    latent = torch.randn(1, 4, 4, 10, 16, generator=torch.Generator().manual_seed(0))
    sigmas = torch.tensor([2.0, 0.0])

    def sample(m):
        noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(1))
        return comfy.sample.sample_custom(m, noise, 3.0, comfy.samplers.sampler_object("euler"), sigmas,
                                          text_cond(0), text_cond(1), latent, disable_pbar=True, seed=0)

    handles: list = []
    calls = _pieces(refiner, handles)
    try:
        with torch.inference_mode():
            inner.set_forward_chunking(0)
            eager = sample(refiner)
            unchunked_calls, calls[0] = calls[0], 0
            # Few pieces (each is traced into the graph, and tracing is most of this test's time), but blocks still
            # run in more than one: counted on the eager model at the same limit.
            inner.set_forward_chunking(COMPILE_LIMIT)
            sample(refiner)
            assert calls[0] > unchunked_calls, f"{calls[0]} feed-forward pieces vs {unchunked_calls} unchunked"
            torch._dynamo.reset()
            compiled = comfy_host.node_class("TorchCompileModel").execute(model=refiner, backend="inductor").result[0]
            out = sample(compiled)
    finally:
        for handle in handles:
            handle.remove()
        inner.set_forward_chunking(None)
        inner.set_attention_function(pack_module("comfy_model").host_attention_function())
        torch._dynamo.reset()
    stats = torch._dynamo.utils.counters
    assert stats["stats"]["unique_graphs"] >= 1, "the compiled module never ran"
    assert not stats["graph_break"], dict(stats["graph_break"])
    # aot_eager decomposes GroupNorm, GEGLU and attention into primitives that round differently in fp32: measured
    # up to 5e-5 on O(1) outputs after the sampler step; a wrong or missing piece moves outputs by O(1).
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=2e-4)
