"""The refiner side of per-frame control, in the real host: a host video model that takes its control as a latent
concatenated to its input (Wan 2.1 Fun-Control, conditioned by the host's own WanFunControlToVideo node) through
StreamingT2V Refine and its Randomized Blending Windows. Window k must see the control latent frames of window k.

The Wan model is a tiny random Wan 2.1 Fun-Control (i2v layout, 48 input channels = 16 latent + 32 concatenated:
the control video's latent and the start image's) built from the host's own classes, so the host's UNETLoader
detects it as WAN21_FunControl2V; the Wan 2.1 VAE is tiny too (test_refine_nodes.write_tiny_wan21).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_context_blend import pack_module
from test_refine_nodes import refine_inputs, write_tiny_wan21


def write_tiny_wan21_fun_control(models_dir: Path) -> str:
    import comfy.ldm.wan.model
    import comfy.ops
    from safetensors.torch import save_file

    path = models_dir / "diffusion_models" / "tiny_wan21_fun_control.safetensors"
    if not path.exists():
        net = comfy.ldm.wan.model.WanModel(model_type="i2v", dim=128, ffn_dim=256, num_heads=1, num_layers=1,
                                           in_dim=48, out_dim=16, text_dim=4096,
                                           operations=comfy.ops.disable_weight_init, device="meta")
        g = torch.Generator().manual_seed(3)
        state = {f"model.diffusion_model.{k}": torch.randn(v.shape, generator=g) * 0.02
                 for k, v in net.state_dict().items()}
        save_file(state, str(path))
    return path.name


@pytest.fixture(scope="module")
def fun_control(comfy_host):
    _, vae_name = write_tiny_wan21(comfy_host.models_dir)
    nodes = comfy_host.nodes
    model = nodes.UNETLoader().load_unet(write_tiny_wan21_fun_control(comfy_host.models_dir), "default")[0]
    vae = nodes.VAELoader().load_vae(vae_name)[0]
    return model, vae


def control_conditioning(comfy_host, vae, frames: int, width: int = 64, height: int = 32):
    """The host's WanFunControlToVideo on a control video whose frames differ from each other."""
    g = torch.Generator().manual_seed(4)
    video = torch.rand(frames, height, width, 3, generator=g) * torch.linspace(0.2, 1.0, frames).view(-1, 1, 1, 1)
    text = [[torch.randn(1, 8, 4096, generator=g), {}]]
    node = comfy_host.node_class("WanFunControlToVideo")
    positive, negative, _ = node.execute(positive=text, negative=[[torch.zeros(1, 8, 4096), {}]], vae=vae,
                                         width=width, height=height, length=frames, batch_size=1,
                                         control_video=video).result
    return positive, negative


def test_each_window_sees_the_control_frames_of_its_window(comfy_host, fun_control):
    model, vae = fun_control
    assert type(model.model).__name__ == "WAN21" and model.model.diffusion_model.patch_embedding.in_channels == 48
    positive, negative = control_conditioning(comfy_host, vae, 25)
    concat = positive[0][1]["concat_latent_image"]
    assert concat.shape[1:3] == (32, 7)  # control latent (16) + start image latent (16), 7 latent frames

    seen: list[tuple[tuple[int, int], torch.Tensor]] = []
    spans: list[tuple[int, int]] = []
    watched = model.clone()
    watched.set_model_unet_function_wrapper(
        lambda apply, args: (seen.append((spans[-1], args["c"]["c_concat"].clone())),
                             apply(args["input"], args["timestep"], **args["c"]))[1])
    pack_module("refine").handler_hook = lambda h: setattr(h, "window_observer", lambda step, i, span, x, s: spans.append(span))
    frames = torch.rand(25, 32, 64, 3, generator=torch.Generator().manual_seed(1))
    try:
        images, _ = comfy_host.node_class("StreamingT2VRefine").execute(
            images=frames, model=watched, vae=vae, positive=positive, negative=negative,
            **refine_inputs(width=64, height=32, chunk=4, overlap=2, steps=2, crop_padding=False)).result
    finally:
        pack_module("refine").handler_hook = None
    assert images.shape == (25, 32, 64, 3) and bool(torch.isfinite(images).all())

    # What the whole video's c_concat is (the host's own concat_cond), then window by window.
    whole = model.model.concat_cond(noise=torch.zeros(1, 16, 7, 4, 8), concat_latent_image=concat, device="cpu")
    assert whole.shape == (1, 32, 7, 4, 8)
    assert sorted({span for span, _ in seen}) == [(0, 4), (2, 6), (3, 7)]
    for (start, end), c_concat in seen:
        assert c_concat.shape[0] == 2  # cond and uncond in one call, each with the window's own control frames
        for half in c_concat:
            torch.testing.assert_close(half, whole[0, :, start:end].to(half.dtype), rtol=0, atol=1e-6)
    # teeth: the windows' control frames differ, so a window given another window's frames would fail above
    assert not torch.allclose(whole[0, :, 0:4], whole[0, :, 3:7], atol=1e-3)


def test_blending_windows_node_with_the_plain_ksampler_slices_the_control_too(comfy_host, fun_control):
    model, vae = fun_control
    positive, negative = control_conditioning(comfy_host, vae, 25)
    windowed = comfy_host.node_class("StreamingT2VRandomizedBlendingWindows").execute(
        model=model, chunk=4, overlap=2, blend_mode="randomized", seed=0, guidance_rescale=0.0, max_batch=0).result[0]
    seen = []
    windowed.set_model_unet_function_wrapper(
        lambda apply, args: (seen.append(args["c"]["c_concat"].clone()), apply(args["input"], args["timestep"], **args["c"]))[1])
    latent = {"samples": torch.zeros(1, 16, 7, 4, 8)}
    out = comfy_host.nodes.KSampler().sample(windowed, 0, 1, 5.0, "euler", "simple", positive, negative, latent)[0]
    assert out["samples"].shape == (1, 16, 7, 4, 8) and bool(torch.isfinite(out["samples"]).all())
    assert seen and all(c.shape[2] == 4 for c in seen)  # every call: windows of 4 latent frames
    # Which control frames: every item of every call (cond and uncond of each window in the call) is the whole
    # video's c_concat sliced to one window of the plan, and every window of the plan is seen.
    whole = model.model.concat_cond(noise=torch.zeros(1, 16, 7, 4, 8),
                                    concat_latent_image=positive[0][1]["concat_latent_image"], device="cpu")[0]
    windows = [(0, 4), (2, 6), (3, 7)]
    assert pack_module("context_blend").RandomizedBlendContextHandler(4, 2).windows_for(7) == windows
    assert not torch.allclose(whole[:, 0:4], whole[:, 2:6], atol=1e-3)  # teeth: the windows' frames differ
    matched = []
    for c_concat in seen:
        for item in c_concat:
            hits = [w for w in windows if torch.allclose(item, whole[:, w[0]:w[1]].to(item.dtype), rtol=0, atol=1e-6)]
            assert len(hits) == 1, "a call's control frames are not those of one window of the plan"
            matched.append(hits[0])
    assert sorted(set(matched)) == windows


def test_a_control_video_of_another_length_is_refused_naming_the_input(comfy_host, fun_control):
    model, vae = fun_control
    positive, negative = control_conditioning(comfy_host, vae, 29)  # 8 latent frames; the video has 7
    with pytest.raises(ValueError, match="positive/negative: the per-frame latent concatenated to the model input "
                                         r"\(c_concat, e.g. the control video of WanFunControlToVideo\) has 8 latent "
                                         "frames, the video being sampled has 7"):
        comfy_host.node_class("StreamingT2VRefine").execute(
            images=torch.rand(25, 32, 64, 3), model=model, vae=vae, positive=positive, negative=negative,
            **refine_inputs(width=64, height=32, chunk=4, overlap=2, steps=1, crop_padding=False))
