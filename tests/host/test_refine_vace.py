"""Refine on a Wan VACE model: the host's ``vace_context`` ([B, N, 96, T, H, W], one axis more than the latent)
is cut per window by our context handler, so each window's model call gets the VACE frames of its own frames.

The host's own rule (0.3.75) slices only tensors with the frame count on the latent's frame axis: without our cut
the whole video's VACE frames reach every window and the VACE patch embedding fails on the size mismatch (the
second test shows that failure is what the cut prevents). Tiny Wan 2.1 VACE and Wan VAE from the host's loaders.
"""
from __future__ import annotations

import pytest
import torch
from tiny_host_models import WAN_TEXT_DIM, write_tiny_wan_vace, write_tiny_wan_vae

W, H, FRAMES = 64, 32, 25  # 25 frames -> 7 latent frames of 4x8; windows of 4 overlapping by 2
REFINE = dict(resize_mode="pad", upscale_method="bilinear", denoise=0.6, cfg=5.0, guidance_rescale=0.0,
              sampler_name="euler", scheduler="simple", seed=0, blend_mode="randomized", crop_padding=False,
              output="images", fps=8.0, width=W, height=H, chunk=4, overlap=2, steps=2)


def pack_module(comfy_host, name: str):
    import importlib

    package = comfy_host.node_class("StreamingT2VRefine").__module__.rsplit(".", 1)[0]
    return importlib.import_module(f"{package}.{name}")


@pytest.fixture(scope="module")
def vace(comfy_host):
    d = comfy_host.models_dir
    nodes = comfy_host.nodes
    model = nodes.UNETLoader().load_unet(write_tiny_wan_vace(d), "default")[0]
    vae = nodes.VAELoader().load_vae(write_tiny_wan_vae(d))[0]
    g = torch.Generator().manual_seed(0)
    pos, neg = [[torch.randn(1, 6, WAN_TEXT_DIM, generator=g), {}]], [[torch.zeros(1, 6, WAN_TEXT_DIM), {}]]
    control = torch.rand(FRAMES, H, W, 3, generator=g)
    pos, neg, latent, _trim = comfy_host.node_class("WanVaceToVideo").execute(
        pos, neg, vae, W, H, FRAMES, 1, 0.8, control_video=control).result
    frames = torch.rand(FRAMES, H, W, 3, generator=torch.Generator().manual_seed(1))
    return model, vae, pos, neg, latent["samples"], frames


def refine_recording_calls(comfy_host, model, vae, pos, neg, frames):
    """Run the Refine node; return the windows it ran and, per diffusion-model call, (x, vace_context, strength)."""
    calls, windows = [], []
    diffusion_model = model.model.diffusion_model

    def record(_module, args, kwargs):
        calls.append((args[0].detach().clone(), kwargs["vace_context"].detach().clone(), kwargs["vace_strength"]))

    hook = diffusion_model.register_forward_pre_hook(record, with_kwargs=True)
    refine_module = pack_module(comfy_host, "refine")
    refine_module.handler_hook = lambda h: setattr(h, "window_observer",
                                                   lambda step, i, span, x, s: windows.append(span))
    try:
        images, _video = comfy_host.node_class("StreamingT2VRefine").execute(
            images=frames, model=model, vae=vae, positive=pos, negative=neg, **REFINE).result
    finally:
        hook.remove()
        refine_module.handler_hook = None
    return images, windows, calls


def test_each_window_gets_the_vace_frames_of_its_own_frames(comfy_host, vace):
    model, vae, pos, neg, latent, frames = vace
    assert type(model.model).__name__ == "WAN21_Vace"
    images, windows, calls = refine_recording_calls(comfy_host, model, vae, pos, neg, frames)
    assert tuple(images.shape) == (FRAMES, H, W, 3) and torch.isfinite(images).all()
    # 2 steps x 3 windows, one model call each (cond and uncond batched in it)
    assert windows == [(0, 4), (2, 6), (3, 7)] * 2 and len(calls) == len(windows)
    # the whole video's vace_context, as the host builds it from WanVaceToVideo's conditioning
    whole = model.model.extra_conds(noise=torch.zeros_like(latent), vace_frames=pos[0][1]["vace_frames"],
                                    vace_mask=pos[0][1]["vace_mask"])["vace_context"].cond
    assert tuple(whole.shape) == (1, 1, 96, 7, H // 8, W // 8)
    for (start, end), (x, context, strength) in zip(windows, calls):
        assert x.shape[2] == end - start
        assert context.shape == (x.shape[0], 1, 96, end - start, H // 8, W // 8)
        for item in context:  # cond and uncond: WanVaceToVideo gives both the same VACE frames
            torch.testing.assert_close(item, whole[0, :, :, start:end].to(item.dtype), rtol=0, atol=1e-6)
        assert strength == [0.8]  # per control video, not per frame: passed whole


def test_without_the_cut_the_hosts_vace_forward_fails(comfy_host, vace, monkeypatch):
    model, vae, pos, neg, _latent, frames = vace
    monkeypatch.setattr(pack_module(comfy_host, "context_blend"), "_EXTRA_FRAME_AXES", {})
    with pytest.raises(Exception, match=r"size of tensor a \(\d+\) must match"):
        refine_recording_calls(comfy_host, model, vae, pos, neg, frames)
