"""The host's TorchCompileModel node on our MODELs: it compiles our UNet and the compiled model samples the same.

The node offers the ``inductor`` and ``cudagraphs`` backends. ``cudagraphs`` needs CUDA, and ``inductor`` compiles
the tiny UNet in about 12 minutes on this 2-core CPU (measured: it matches eager to 7e-6 relative), too slow for CI.
So the node runs unchanged except that ``torch.compile`` gets the ``aot_eager`` backend: the same Dynamo trace and
AOT-autograd graph that inductor starts from, without the C++ code generation. ``bench/gpu.sh`` times inductor on a
GPU.

With the host's PyTorch attention (what it uses on CUDA) the whole UNet is one graph with no graph break; the test
asserts it, since a graph break per block would make the compiled model mostly eager. (The host's CPU fallback
attention, sub-quadratic, reads free memory from /proc per call and breaks the graph there: a host limit on CPUs.)
"""
from __future__ import annotations

import functools

import pytest
import torch

from test_context_blend import load_tiny_refiner, text_cond


@pytest.fixture
def dynamo():
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield torch._dynamo
    torch._dynamo.reset()


def test_torch_compile_node_compiles_our_model_and_matches_eager(comfy_host, dynamo, monkeypatch):
    import comfy.patcher_extension
    import comfy.sample
    import comfy.samplers
    from comfy.ldm.modules.attention import attention_pytorch
    from comfy_api.torch_helpers.torch_compile import COMPILE_KEY

    model = load_tiny_refiner(comfy_host)
    inner = model.model.diffusion_model
    inner.set_attention_function(functools.partial(attention_pytorch, attn_precision=torch.float32))
    requested = []
    original_compile = torch.compile

    def compile_on_cpu(model=None, **kwargs):
        requested.append(kwargs.get("backend"))
        return original_compile(model, **dict(kwargs, backend="aot_eager"))

    monkeypatch.setattr(torch, "compile", compile_on_cpu)
    try:
        node = comfy_host.node_class("TorchCompileModel")
        compiled = node.execute(model=model, backend="inductor").result[0]
        assert requested == ["inductor"]
        assert compiled is not model and not model.get_wrappers(comfy.patcher_extension.WrappersMP.APPLY_MODEL, COMPILE_KEY)
        assert compiled.get_wrappers(comfy.patcher_extension.WrappersMP.APPLY_MODEL, COMPILE_KEY)

        latent = torch.randn(1, 4, 4, 10, 16, generator=torch.Generator().manual_seed(0))
        sigmas = torch.tensor([2.0, 1.0, 0.0])

        def sample(m):
            noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(1))
            return comfy.sample.sample_custom(m, noise, 3.0, comfy.samplers.sampler_object("euler"), sigmas,
                                              text_cond(0), text_cond(1), latent, disable_pbar=True, seed=0)

        with torch.inference_mode():
            eager = sample(model)
            out = sample(compiled)
    finally:
        inner.set_attention_function(pack_attention())
    stats = dynamo.utils.counters
    assert stats["stats"]["unique_graphs"] >= 1, "the compiled module never ran"
    assert not stats["graph_break"], dict(stats["graph_break"])
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)


def pack_attention():
    from test_context_blend import pack_module

    return pack_module("comfy_model").host_attention_function()
