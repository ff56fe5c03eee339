"""Per-frame ControlNet on our UNets, in the real host: the host's ControlNetLoader and Apply ControlNet, our
Initial Chunk and Extend nodes, the run store's reuse rule, and the refusals.

Weights: the demo weights (scripts/demo_weights.py): our tiny base UNet3D and extender, and a tiny random SD 2.x-layout
ControlNet in the host's file format (``control_model.*`` keys) whose residuals fit them; tiny SD 1.x / SDXL
ControlNets and a T2I-Adapter are written here for the refusals. Text conditioning is random 77x1024 tokens (the
host's OpenCLIP-H is not needed to check where the control goes); latents are 8x8 (64x64 pixels), 1-2 steps.
"""
from __future__ import annotations

import importlib
import re

import pytest
import torch

SIZE = 64
LATENT = SIZE // 8


def pack_module(comfy_host, name: str):
    package = comfy_host.node_class("StreamingT2VExtend").__module__.rsplit(".", 1)[0]
    return importlib.import_module(f"{package}.{name}")


def text_cond(seed: int) -> list:
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, 77, 1024, generator=g), {}]]


def control_video(frames: int, seed: int = 0, size: int = SIZE) -> torch.Tensor:
    """IMAGE frames whose mean grey level encodes the frame index (frame i: (i + 1) / 64 + a small texture)."""
    g = torch.Generator().manual_seed(seed)
    texture = 0.02 * torch.rand(1, size, size, 3, generator=g)
    levels = (torch.arange(frames, dtype=torch.float32) + 1) / 64
    return levels.view(-1, 1, 1, 1) + texture


def frame_index_of(hint: torch.Tensor) -> list[int]:
    """Inverse of :func:`control_video` for the hint tensors the ControlNet receives ([N, 3, H, W])."""
    means = (hint.float() - 0.01).mean(dim=(1, 2, 3))
    return [round(float(m) * 64) - 1 for m in means]


@pytest.fixture(scope="module")
def weights(comfy_host, host_weights):
    from scripts.demo_weights import demo_unet_config, write_tiny_controlnet

    import comfy.t2i_adapter.adapter
    from safetensors.torch import save_file

    folder = comfy_host.models_dir / "controlnet"
    names = {"sd2": host_weights["controlnet"].name}
    others = {"sd15": dict(context_dim=768), "sdxl": dict(context_dim=2048, adm_in_channels=2816, levels=3)}
    for key, kwargs in others.items():
        path = folder / f"tiny_test_{key}.safetensors"
        if not path.exists():
            write_tiny_controlnet(path, demo_unet_config(), seed=5, **kwargs)
        names[key] = path.name
    path = folder / "tiny_test_t2i_adapter.safetensors"
    if not path.exists():
        with torch.device("meta"):
            adapter = comfy.t2i_adapter.adapter.Adapter(cin=192, channels=[32, 64, 128, 128], nums_rb=2, ksize=1,
                                                        sk=True, use_conv=False)
        g = torch.Generator().manual_seed(0)
        save_file({k: torch.randn(v.shape, generator=g) * 0.02 for k, v in adapter.state_dict().items()}, str(path))
    names["t2i"] = path.name
    return names


def load_controlnet(comfy_host, name: str):
    return comfy_host.nodes.ControlNetLoader().load_controlnet(name)[0]


def load_model(comfy_host, file_name: str):
    loader = comfy_host.node_class("StreamingT2VModelLoader")
    return loader.execute(model_name=file_name, weight_dtype="fp32", kind="auto").result[0]


@pytest.fixture(scope="module")
def base(comfy_host, host_weights):
    return load_model(comfy_host, host_weights["base_unet3d"].name)


@pytest.fixture(scope="module")
def extender(comfy_host, host_weights):
    return load_model(comfy_host, host_weights["extender"].name)


@pytest.fixture(scope="module")
def controlnet(comfy_host, weights):
    return load_controlnet(comfy_host, weights["sd2"])


def apply(comfy_host, positive, negative, controlnet, video, strength=1.0, start=0.0, end=1.0):
    """The host's own 'Apply ControlNet' node."""
    return comfy_host.nodes.ControlNetApplyAdvanced().apply_controlnet(positive, negative, controlnet, video,
                                                                      strength, start, end)


def with_control(conditioning: list, control) -> list:
    return [[t, {**d, "control": control, "control_apply_to_uncond": False}] for t, d in conditioning]


class ControlNetCalls:
    """Records every forward of a host ControlNet model: the hint frames and the residuals it returned."""

    def __init__(self, controlnet) -> None:
        self.hints: list[torch.Tensor] = []
        self.timesteps: list[float] = []  # the model timestep of each call (one call per sampler step here)
        self.outputs: list[dict] = []
        self.model = controlnet.control_model
        self.handle = self.model.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output):
        self.hints.append(kwargs["hint"].detach().clone())
        self.timesteps.append(float(kwargs["timesteps"].reshape(-1)[0]))
        self.outputs.append({k: [t.detach().clone() for t in v] for k, v in output.items()})

    def close(self) -> None:
        self.handle.remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def sample_first_chunk(comfy_host, model, positive, negative, frames=16, steps=2, seed=3):
    """The Initial Chunk node's own sampling function (comfy.sample.sample, the KSampler path): the latent."""
    initial = pack_module(comfy_host, "initial_chunk")
    return initial.sample_video_latent(model, positive, negative, (1, 4, frames, LATENT, LATENT), seed, steps, 7.0,
                                       "euler", "normal")


# --------------------------------------------------------------------------------------------------------------------
# The host's loader and our UNets
# --------------------------------------------------------------------------------------------------------------------

def test_tiny_sd2_controlnet_is_loaded_by_the_hosts_loader_and_fits_our_unets(comfy_host, controlnet, base, extender):
    import comfy.cldm.cldm
    import comfy.controlnet

    assert type(controlnet) is comfy.controlnet.ControlNet
    cm = controlnet.control_model
    assert isinstance(cm, comfy.cldm.cldm.ControlNet)
    residual_widths = [zc[0].out_channels for zc in cm.zero_convs]
    for model in (base, extender):
        config = pack_module(comfy_host, "controlnet").unet_config_of(model)
        assert residual_widths == config.skip_channels() and len(residual_widths) == config.num_skips == 12
        assert cm.middle_block_out[0].out_channels == config.block_out_channels[-1]
        context = next(m.in_features for n, m in cm.named_modules() if n.endswith("attn2.to_k"))
        assert context == config.cross_attention_dim == 1024


# --------------------------------------------------------------------------------------------------------------------
# Initial Chunk: strength 0, frame alignment, residuals
# --------------------------------------------------------------------------------------------------------------------

def test_strength_zero_gives_exactly_the_output_without_controlnet(comfy_host, base, controlnet):
    positive, negative = text_cond(0), text_cond(1)
    plain = sample_first_chunk(comfy_host, base, positive, negative)
    # The host node returns the conditioning unchanged at strength 0; a ControlNet set to 0 by hand still runs (its
    # residuals are multiplied by 0) and must not change a bit.
    pos0, neg0 = apply(comfy_host, positive, negative, controlnet, control_video(16), strength=0.0)
    assert pos0 is positive and neg0 is negative
    zero = controlnet.copy().set_cond_hint(control_video(16).movedim(-1, 1), 0.0)
    with ControlNetCalls(controlnet) as calls:
        out = sample_first_chunk(comfy_host, base, with_control(positive, zero), with_control(negative, zero))
    assert calls.hints, "the ControlNet did not run"
    assert torch.equal(out, plain)


def test_output_follows_the_control_frames(comfy_host, base, controlnet):
    positive, negative = text_cond(0), text_cond(1)
    plain = sample_first_chunk(comfy_host, base, positive, negative)
    runs = []
    for seed in (0, 0, 1):
        pos, neg = apply(comfy_host, positive, negative, controlnet, control_video(16, seed=seed) * (1 + seed))
        runs.append(sample_first_chunk(comfy_host, base, pos, neg))
    assert torch.equal(runs[0], runs[1])  # same control frames: same video
    assert not torch.allclose(runs[0], plain, atol=1e-4)  # the ControlNet steers
    assert not torch.allclose(runs[0], runs[2], atol=1e-4)  # other control frames: another video
    assert all(bool(torch.isfinite(r).all()) for r in runs)


def test_hint_frame_i_steers_latent_frame_i_and_a_short_video_stops(comfy_host, base, controlnet):
    """Frames folded into the batch, hint frames aligned: the ControlNet sees control frames 0..15 for latent
    frames 0..15 (cond and uncond in one call); a 10-frame control video controls frames 0..9 only, and the
    residuals of frames 10..15 are exactly zero."""
    positive, negative = text_cond(0), text_cond(1)
    captured = []
    original = base.model._forward_core
    base.model._forward_core = lambda x, t, c, extra, control=None: (captured.append(control), original(x, t, c, extra, control))[1]
    try:
        for frames in (16, 10):
            captured.clear()
            pos, neg = apply(comfy_host, positive, negative, controlnet, control_video(frames))
            with ControlNetCalls(controlnet) as calls:
                sample_first_chunk(comfy_host, base, pos, neg, steps=1)
            assert len(calls.hints) == 1
            n = min(frames, 16)
            assert frame_index_of(calls.hints[0]) == list(range(n)) * 2  # cond and uncond, frame index fastest
            residuals = captured[0]
            config = pack_module(comfy_host, "controlnet").unet_config_of(base)
            assert len(residuals.skips) == config.num_skips and residuals.mid is not None
            for i, (skip, out) in enumerate(zip(residuals.skips, calls.outputs[0]["output"])):
                per_frame = skip.view(2, 16, *skip.shape[1:])
                assert torch.equal(per_frame[:, :n].reshape(2 * n, *skip.shape[1:]), out), f"skip {i}"
                assert bool((per_frame[:, n:] == 0).all()), f"skip {i}: frames past the control video"
                assert out.abs().max() > 0, f"skip {i}: no residual"
            assert torch.equal(residuals.mid.view(2, 16, *residuals.mid.shape[1:])[:, :n].reshape(2 * n, *residuals.mid.shape[1:]),
                               calls.outputs[0]["middle"][0])
    finally:
        del base.model._forward_core


def test_one_control_image_steers_every_frame(comfy_host, base, controlnet):
    """One control image: the host broadcasts it (its own rule), and the UNet gets a non-zero residual for every one
    of the 16 frames, cond and uncond, equal to the ControlNet's output for that frame (not frames 0..0 only, as a
    1-frame control video would give with the stop rule)."""
    positive, negative = text_cond(0), text_cond(1)
    captured = []
    original = base.model._forward_core
    base.model._forward_core = lambda x, t, c, extra, control=None: (captured.append(control), original(x, t, c, extra, control))[1]
    try:
        pos, neg = apply(comfy_host, positive, negative, controlnet, control_video(1))
        with ControlNetCalls(controlnet) as calls:
            sample_first_chunk(comfy_host, base, pos, neg, steps=1)
    finally:
        del base.model._forward_core
    assert calls.hints[0].shape[0] == 1 and frame_index_of(calls.hints[0]) == [0]  # one image, given once
    residuals = captured[0]
    for i, (skip, out) in enumerate(zip(residuals.skips, calls.outputs[0]["output"])):
        assert skip.shape[0] == out.shape[0] == 32, f"skip {i}"  # 16 frames x (cond, uncond)
        per_frame = skip.reshape(32, -1).abs().amax(dim=1)
        assert bool((per_frame > 0).all()), f"skip {i}: frames {torch.nonzero(per_frame == 0).flatten().tolist()} unsteered"
        assert torch.equal(skip, out), f"skip {i}"
    mid = residuals.mid.reshape(32, -1).abs().amax(dim=1)
    assert bool((mid > 0).all())


def test_start_and_end_percent_are_the_hosts(comfy_host, base, controlnet):
    """start 50 %, end 100 %: the ControlNet runs exactly at the steps whose sigma is at or below the host's sigma for
    50 % (its percent_to_sigma), i.e. the later steps, and not at the others."""
    import comfy.samplers

    positive, negative = text_cond(0), text_cond(1)
    pos, neg = apply(comfy_host, positive, negative, controlnet, control_video(16), start=0.5, end=1.0)
    with ControlNetCalls(controlnet) as calls:
        sample_first_chunk(comfy_host, base, pos, neg, steps=4)
    sampling = base.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, "normal", 4)[:-1]  # euler: one model call per step
    start = sampling.percent_to_sigma(0.5)
    expected = [round(float(sampling.timestep(s)), 2) for s in sigmas if float(s) <= start]
    assert 0 < len(expected) < 4, "the check needs steps on both sides of 50 %"
    assert [round(t, 2) for t in calls.timesteps] == expected


# --------------------------------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------------------------------

REFUSALS = {
    "sd15": "is an SD 1.x ControlNet (768-wide CLIP-L text context)",
    "sdxl": "is an SDXL ControlNet",
    "t2i": "is a T2I-Adapter",
}


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_other_families_are_refused_before_sampling(comfy_host, weights, base, kind):
    positive, negative = text_cond(0), text_cond(1)
    control = load_controlnet(comfy_host, weights[kind])
    pos, neg = apply(comfy_host, positive, negative, control, control_video(16))
    initial = comfy_host.node_class("StreamingT2VInitialChunk")
    message = re.escape(REFUSALS[kind]) + ".*Only SD 2.x ControlNets fit"
    with pytest.raises(ValueError, match="^positive: the ControlNet applied to it " + message):
        initial.execute(model=base, positive=pos, negative=neg, vae=None, width=SIZE, height=SIZE, frames=16,
                        seed=0, steps=1, cfg=7.0, sampler_name="euler", scheduler="normal")
    # Any other path into the sampler (a KSampler on our MODEL) is refused by our wrapper before the host loads
    # anything: no deep shape error.
    with pytest.raises(ValueError, match="^positive: the ControlNet applied to it " + message):
        sample_first_chunk(comfy_host, base, pos, neg, steps=1)


def test_control_lora_and_a_chained_misfit_are_refused(comfy_host, base, controlnet, weights):
    import comfy.controlnet

    positive, negative = text_cond(0), text_cond(1)
    lora = comfy.controlnet.ControlLora({"lora_controlnet": torch.zeros(1)}).set_cond_hint(control_video(4).movedim(-1, 1))
    with pytest.raises(ValueError, match="^negative: the ControlNet applied to it is a Control-LoRA"):
        pack_module(comfy_host, "controlnet").check_conditioning_controls(base, positive=positive,
                                                                          negative=with_control(negative, lora))
    pos, neg = apply(comfy_host, positive, negative, controlnet, control_video(16))
    pos, neg = apply(comfy_host, pos, neg, load_controlnet(comfy_host, weights["sd15"]), control_video(16))
    with pytest.raises(ValueError, match="^positive: ControlNet 2 of the 2 chained applied to it is an SD 1.x"):
        sample_first_chunk(comfy_host, base, pos, neg, steps=1)


def test_the_old_apply_controlnet_node_works_too(comfy_host, base, controlnet):
    """The host's plain 'Apply ControlNet (OLD)' sets the ControlNet on positive only and asks the sampler to copy
    it to the negative; both halves are steered, by the same per-frame adapter."""
    positive, negative = text_cond(0), text_cond(1)
    plain = sample_first_chunk(comfy_host, base, positive, negative, steps=1)
    pos = comfy_host.nodes.ControlNetApply().apply_controlnet(positive, controlnet, control_video(16), 1.0)[0]
    assert "control" not in negative[0][1]
    with ControlNetCalls(controlnet) as calls:
        out = sample_first_chunk(comfy_host, base, pos, negative, steps=1)
    assert frame_index_of(calls.hints[0]) == list(range(16)) * 2  # cond and uncond
    assert not torch.allclose(out, plain, atol=1e-4)


def test_extend_refuses_before_any_work(comfy_host, weights, host_weights):
    """Extend checks the ControlNet before it opens a run folder, encodes the anchor or samples anything (the
    CLIP vision model and VAE given here would fail if they were used)."""
    extender = load_model(comfy_host, host_weights["extender"].name)
    pos, neg = apply(comfy_host, text_cond(0), text_cond(1), load_controlnet(comfy_host, weights["sd15"]),
                     control_video(16))
    extend = comfy_host.node_class("StreamingT2VExtend")
    runs_before = sorted((comfy_host.output_dir / "StreamingT2V" / "runs").glob("*")) \
        if (comfy_host.output_dir / "StreamingT2V" / "runs").exists() else []
    with pytest.raises(ValueError, match="^positive: the ControlNet applied to it is an SD 1.x ControlNet"):
        extend.execute(model=extender, positive=pos, negative=neg, clip_vision=object(), vae=object(),
                       first_chunk=torch.rand(16, SIZE, SIZE, 3), total_frames=24, seed=0, steps=1, cfg=7.5,
                       sampler_name="ddpm", scheduler="ddim_uniform", width=SIZE, height=SIZE, disk_cache=True,
                       run_name="refused_controlnet_run")
    runs_after = sorted((comfy_host.output_dir / "StreamingT2V" / "runs").glob("*")) \
        if (comfy_host.output_dir / "StreamingT2V" / "runs").exists() else []
    assert runs_after == runs_before
