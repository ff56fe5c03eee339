"""Randomized blending as the host's context-window mechanism (nodes/context_blend.py), in the real host.

A "deterministic denoiser stand-in" replaces the UNet through the host's own
``model_function_wrapper`` hook, so everything else is the host's path: ``comfy.sample`` ->
``CFGGuider`` -> ``calc_cond_batch`` -> our handler -> the host sampler (DPM++ 2M SDE).
"""
from __future__ import annotations

import sys

import pytest
import torch

TINY_REFINER = "streamingt2v/tiny_refiner_non_ema_0035000.pth"


def pack_module(name: str):
    """A module of this pack as the host imported it (custom_nodes/<pack>/nodes/<name>.py)."""
    matches = [m for k, m in sys.modules.items() if k.endswith(f".nodes.{name}") and "comfyui-streamingt2v" in k]
    assert matches, f"the host did not import nodes.{name} of the pack"
    return matches[0]


def write_tiny_refiner(models_dir) -> str:
    """Tiny random MS-Vid2Vid-XL UNet in the real (LDM, ``non_ema_0035000.pth``) key layout."""
    from streamingt2v_core.models.tiny_checkpoints import write_tiny_checkpoint

    path = models_dir / TINY_REFINER
    if not path.exists():
        write_tiny_checkpoint(path, "refiner_unet", "ms_vid2vid_xl", seed=0)
    return TINY_REFINER.split("/", 1)[1]


def load_tiny_refiner(comfy_host):
    name = write_tiny_refiner(comfy_host.models_dir)
    loader = comfy_host.node_class("StreamingT2VModelLoader")
    return loader.execute(model_name=name, weight_dtype="fp32", kind="auto").result[0]


def write_random_taesd(models_dir) -> str:
    """Random TAESD (the host's tiny SD-latent VAE) in its real layout; loads as VAELoader("taesd")."""
    import comfy.taesd.taesd
    from safetensors.torch import save_file

    approx = models_dir / "vae_approx"
    approx.mkdir(parents=True, exist_ok=True)
    if not (approx / "taesd_decoder.safetensors").exists():
        g = torch.Generator().manual_seed(0)
        taesd = comfy.taesd.taesd.TAESD()  # host ops leave parameters uninitialised: fill them ourselves

        def randomised(module) -> dict[str, torch.Tensor]:
            out = {}
            for k, v in module.state_dict().items():
                fan_in = max(1, v[0].numel()) if v.ndim > 1 else 1
                out[k] = (torch.randn(v.shape, generator=g) / fan_in ** 0.5 if v.ndim > 1 else torch.zeros(v.shape)).contiguous()
            return out

        save_file(randomised(taesd.taesd_encoder), str(approx / "taesd_encoder.safetensors"))
        save_file(randomised(taesd.taesd_decoder), str(approx / "taesd_decoder.safetensors"))
    return "taesd"


def with_denoiser(model, denoiser):
    """Clone ``model`` so that every UNet call returns ``denoiser(x, sigma)`` (x0) instead.

    Uses the host's ``model_function_wrapper``: ``calc_cond_batch`` calls it in place of
    ``apply_model`` with the batched window input and the per-item sigmas.
    """
    model = model.clone()
    model.set_model_unet_function_wrapper(lambda apply_model, args: denoiser(args["input"], args["timestep"]))
    return model


def text_cond(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, 77, 1024, generator=g), {}]]


@pytest.fixture(scope="module", autouse=True)
def _booted_host(comfy_host):
    """Every test here reads the pack's modules as the host imported them (pack_module), so the host is booted
    first whatever ran before: the module passes alone, in any subset and any order."""
    return comfy_host


@pytest.fixture(scope="module")
def refiner(comfy_host):
    return load_tiny_refiner(comfy_host)


# ----------------------------------------------------------------------------- the node
def test_windows_node_clones_the_model_and_installs_the_handler(comfy_host, refiner):
    blend = pack_module("context_blend")
    node = comfy_host.node_class("StreamingT2VRandomizedBlendingWindows")
    out = node.execute(model=refiner, chunk=24, overlap=8, blend_mode="randomized", seed=3, guidance_rescale=0.2,
                       max_batch=3).result[0]
    assert "context_handler" not in refiner.model_options  # input untouched
    handler = out.model_options["context_handler"]
    assert isinstance(handler, blend.RandomizedBlendContextHandler)
    assert (handler.chunk, handler.overlap, handler.mode, handler.dim, handler.max_batch) == (24, 8, "randomized", 2, 3)
    schema = node.define_schema()
    assert schema.category == "StreamingT2V/model_patches"
    assert [o.display_name for o in schema.outputs] == ["model"]
    assert "sampler_cfg_function" in out.model_options and "sampler_cfg_function" not in refiner.model_options
    assert handler.windows_for(60) == [(0, 24), (16, 40), (32, 56), (36, 60)]


def test_windows_node_rejects_bad_settings_and_image_models(comfy_host, refiner):
    node = comfy_host.node_class("StreamingT2VRandomizedBlendingWindows")
    with pytest.raises(ValueError, match="overlap"):
        node.execute(model=refiner, chunk=8, overlap=8, blend_mode="randomized", seed=0, guidance_rescale=0.0)
    with pytest.raises(ValueError, match="blend_mode"):
        node.execute(model=refiner, chunk=8, overlap=2, blend_mode="median", seed=0, guidance_rescale=0.0)
    with pytest.raises(ValueError, match="model must be a video model"):
        node.execute(model=tiny_image_model(), chunk=8, overlap=2, blend_mode="randomized", seed=0, guidance_rescale=0.0)
    with pytest.raises(ValueError, match="max_batch must be an integer >= 0"):
        node.execute(model=refiner, chunk=8, overlap=2, blend_mode="randomized", seed=0, guidance_rescale=0.0,
                     max_batch=-2)


def tiny_image_model():
    """A real host 2-D image model (SD1.5 architecture, tiny): what the video nodes must refuse."""
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    config = dict(comfy.supported_models.SD15.unet_config)
    config.update({"model_channels": 32, "in_channels": 4, "out_channels": 4, "num_res_blocks": [1],
                   "channel_mult": [1], "transformer_depth": [0], "transformer_depth_output": [0, 0],
                   "transformer_depth_middle": 0, "num_head_channels": 32, "num_heads": -1, "image_size": 32,
                   "use_spatial_transformer": True, "legacy": False})
    base = comfy.supported_models.SD15(config).get_model({})
    return comfy.model_patcher.ModelPatcher(base, load_device=comfy.model_management.get_torch_device(),
                                            offload_device=comfy.model_management.unet_offload_device())


# ----------------------------------------------------------------------------- the handler
def test_execute_fuses_window_outputs_with_the_steps_offsets():
    """Every output frame comes from the window the blend offsets of that step pick."""
    blend = pack_module("context_blend")
    handler = blend.RandomizedBlendContextHandler(chunk=6, overlap=3, mode="randomized", seed=5)
    x = torch.zeros(1, 2, 20, 2, 2)
    sigmas = torch.tensor([3.0, 2.0, 1.0, 0.0])
    options = {"transformer_options": {"sample_sigmas": sigmas}}
    windows = handler.windows_for(20)

    def fake_calc(model, conds, sub_x, timestep, model_options):
        start = model_options["transformer_options"]["context_window"].index_list[0]
        index = [s for s, _ in windows].index(start)
        return [torch.full_like(sub_x, 100.0 * c + index) for c in range(len(conds))]

    seen_offsets = []
    for step in range(3):
        out = handler.execute(fake_calc, None, [[{}], [{}]], x, sigmas[step:step + 1], options)
        offsets = handler.blend_offsets(windows, step)
        seen_offsets.append(offsets.tolist())
        expected = torch.zeros(20)
        for i, (s, e) in enumerate(windows):
            skip = int(offsets[i - 1]) if i else 0
            expected[s + skip:e] = i
        assert torch.equal(out[0][0, 0, :, 0, 0], expected)
        assert torch.equal(out[1][0, 0, :, 0, 0], expected + 100.0)
    assert len({tuple(o) for o in seen_offsets}) > 1, "offsets must be redrawn per step"
    # Reproducible: the same (seed, step) gives the same offsets.
    assert handler.blend_offsets(windows, 1).tolist() == seen_offsets[1]


@pytest.mark.parametrize("max_batch", [2, 3, 8])
def test_batched_windows_equal_one_window_per_call(comfy_host, max_batch):
    """Several windows per model call: stacked on the batch axis with the timestep repeated per window; the
    fused result is that of one window per call, to fp32 round-off."""
    blend = pack_module("context_blend")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 23, 2, 2, generator=g)
    sigmas = torch.tensor([3.0, 2.0, 0.0])
    weight = torch.randn(2, 2, generator=g)

    def model_like(sub_x):  # per-item and per-frame, like a video UNet: depends on the window's own content
        return torch.einsum("oc,bcthw->bothw", weight, sub_x) + sub_x.mean(dim=2, keepdim=True)

    def run(per_call):
        handler = blend.RandomizedBlendContextHandler(chunk=6, overlap=3, mode="randomized", seed=5,
                                                      max_batch=per_call)
        calls = []

        def fake_calc(model, conds, sub_x, timestep, model_options):
            calls.append((sub_x.shape[0], timestep.tolist()))
            return [model_like(sub_x) + 10.0 * c for c in range(len(conds))]

        out = handler.execute(fake_calc, None, [[{}], [{}]], x, sigmas[:1],
                              {"transformer_options": {"sample_sigmas": sigmas}})
        return out, calls, handler

    single, single_calls, handler = run(1)
    batched, batched_calls, _ = run(max_batch)
    windows = len(handler.windows_for(23))
    assert windows == 7 and len(single_calls) == windows and all(b == 1 for b, _ in single_calls)
    per_call = min(max_batch, windows)
    assert [b for b, _ in batched_calls] == [min(per_call, windows - i) for i in range(0, windows, per_call)]
    assert all(t == [3.0] * b for b, t in batched_calls)  # one timestep per window in the call
    # Not bit-equal by construction: BLAS picks its einsum kernel by the batch's shape, so 8 windows in one call
    # may round differently from 1 per call (seen on another CPU). The fused value is a weighted sum of a few
    # fp32 terms of size |out|, so any kernel's result lies within a few ulps of |out|: 16 ulps is a stated bound,
    # while a wrong window, offset or timestep moves values by O(1).
    for a, b in zip(single, batched):
        bound = 16 * torch.finfo(torch.float32).eps * a.abs().max().item()
        assert (a - b).abs().max().item() <= bound, (max_batch, (a - b).abs().max().item(), bound)


def test_per_frame_conditioning_keeps_one_window_per_call(comfy_host):
    """Conditioning sliced per window (image-to-video concat latents, ControlNet) cannot share a call."""
    import comfy.conds

    blend = pack_module("context_blend")
    handler = blend.RandomizedBlendContextHandler(chunk=6, overlap=3, max_batch=4)
    x = torch.zeros(1, 2, 20, 2, 2)
    text = [[{"model_conds": {"c_crossattn": comfy.conds.CONDCrossAttn(torch.zeros(1, 77, 8))}}]]
    per_frame = [[{"model_conds": {"concat": comfy.conds.CONDNoiseShape(torch.zeros(1, 2, 20, 2, 2))}}]]
    assert handler.windows_per_call(None, text, x, 6) == 4
    assert handler.windows_per_call(None, per_frame, x, 6) == 1
    assert handler.windows_per_call(None, [[{"control": object()}]], x, 6) == 1
    with pytest.raises(ValueError, match="max_batch must be an integer >= 0"):
        blend.RandomizedBlendContextHandler(chunk=6, overlap=3, max_batch=-1)


def test_automatic_batch_follows_the_models_memory_estimate(comfy_host):
    """max_batch 0: the largest number of windows whose estimate x 1.5 fits in free memory (the host's rule)."""
    import comfy.model_management

    blend = pack_module("context_blend")
    handler = blend.RandomizedBlendContextHandler(chunk=6, overlap=3, max_batch=0)
    x = torch.zeros(1, 2, 40, 2, 2)
    free = comfy.model_management.get_free_memory(x.device)

    class Model:
        def __init__(self, per_item):
            self.per_item, self.shapes = per_item, []

        def memory_required(self, shape):
            self.shapes.append(list(shape))
            return shape[0] * self.per_item

    conds = [[{}], [{}]]
    # 3 windows' worth of items (cond + uncond each) fit, 4 do not
    model = Model(free / (1.5 * 2 * 3.5))
    assert handler.windows_per_call(model, conds, x, 10) == 3
    assert all(s[2] == 6 for s in model.shapes)  # estimated per window of 6 frames, never the whole video
    assert handler.windows_per_call(Model(free), conds, x, 10) == 1
    assert handler.windows_per_call(Model(1.0), conds, x, 10) == blend.AUTO_MAX_BATCH


@pytest.mark.parametrize("mode", ["randomized", "linear", "none"])
def test_fusing_x0_equals_fusing_v_outputs_for_one_global_x(mode):
    """The linear-map argument of the module docstring, checked with the host's own v-prediction
    conversion: same sigma, same global x on shared frames, per-frame weights summing to 1."""
    import comfy.model_sampling
    from streamingt2v_core.sampling.blending import draw_blend_offsets, fuse_windows
    from streamingt2v_core.sampling.plans import refiner_plan, window_overlaps

    class VSampling(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.V_PREDICTION):
        pass

    ms = VSampling()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 40, 3, 3, generator=g)
    sigma = torch.tensor([2.5])
    windows = refiner_plan(40, 12, 4)
    offsets = draw_blend_offsets(len(windows) - 1, window_overlaps(windows), g)
    v = [torch.randn(1, 4, e - s, 3, 3, generator=g) for s, e in windows]
    x0 = [ms.calculate_denoised(sigma, vw, x[:, :, s:e]) for vw, (s, e) in zip(v, windows)]
    fused_x0 = fuse_windows(x0, windows, 40, mode, offsets)
    x0_of_fused_v = ms.calculate_denoised(sigma, fuse_windows(v, windows, 40, mode, offsets), x)
    torch.testing.assert_close(fused_x0, x0_of_fused_v, rtol=1e-5, atol=1e-5)


def test_guidance_rescale_matches_the_official_formula_in_v_space():
    """One window: cfg function == official ``out = u + g (c - u); out *= r std(c)/std(out) + 1 - r`` on v."""
    blend = pack_module("context_blend")
    handler = blend.RandomizedBlendContextHandler(chunk=24, overlap=8)
    fn = blend.windowed_guidance_rescale(handler, 0.2)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 10, 4, 4, generator=g) * 3
    s = torch.tensor([2.0])
    v_c, v_u = torch.randn(2, 1, 4, 10, 4, 4, generator=g)
    to_x0 = lambda v: x / (s * s + 1) - v * s / (s * s + 1).sqrt()  # host V_PREDICTION, sigma_data 1
    result = x - fn({"input": x, "sigma": s, "cond_scale": 7.5, "cond_denoised": to_x0(v_c), "uncond_denoised": to_x0(v_u)})
    out = v_u + 7.5 * (v_c - v_u)
    out = out * (0.2 * v_c.std() / out.std() + 0.8)
    torch.testing.assert_close(result, to_x0(out), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- through the host sampler
def run_host_refine(model, latent, *, blend_mode="randomized", steps=6, cfg=1.0, seed=0, chunk=24, overlap=8,
                    hook=None, guidance_rescale=0.0):
    """The node's sampling core (host sampler + our handler + shared noise) on a latent in model space."""
    refine = pack_module("refine")
    latent_format = model.get_model_object("latent_format")
    refine.handler_hook = hook
    try:
        return refine.refine_latent(model, latent_format.process_out(latent), text_cond(0), text_cond(1), seed=seed,
                                    steps=steps, cfg=cfg, denoise=0.6, sampler_name="dpmpp_2m_sde",
                                    scheduler="streamingt2v_trailing", chunk=chunk, overlap=overlap,
                                    blend_mode=blend_mode, guidance_rescale=guidance_rescale)
    finally:
        refine.handler_hook = None


def test_overlapping_windows_see_identical_noise(refiner):
    """Shared noise: at every step the inputs of neighbouring windows agree on their shared frames,
    and at the first step they are exactly the one whole-video noise tensor (latent + sigma0 * noise)."""
    import comfy.sample

    g = torch.Generator().manual_seed(0)
    latent = torch.randn(1, 4, 40, 4, 4, generator=g)
    model = with_denoiser(refiner, lambda x, sigma: torch.zeros_like(x))
    seen: dict[tuple[int, int], tuple[tuple[int, int], torch.Tensor, float]] = {}

    def hook(handler):
        handler.window_observer = lambda step, i, span, sub_x, sigma: seen.__setitem__((step, i), (span, sub_x.clone(), float(sigma[0])))

    run_host_refine(model, latent, steps=4, seed=11, chunk=16, overlap=6, hook=hook)
    steps = sorted({s for s, _ in seen})
    assert steps == [0, 1, 2, 3]
    windows = [seen[(0, i)][0] for i in range(len([k for k in seen if k[0] == 0]))]
    assert windows == [(0, 16), (10, 26), (20, 36), (24, 40)]
    for step in steps:
        for i in range(len(windows) - 1):
            (s0, e0), x_left, _ = seen[(step, i)]
            (s1, e1), x_right, _ = seen[(step, i + 1)]
            assert torch.equal(x_left[:, :, s1 - s0:], x_right[:, :, :e0 - s1]), (step, i)
    # Step 0: the noise each window sees is the slice of one global noise tensor.
    noise = comfy.sample.prepare_noise(refiner.get_model_object("latent_format").process_out(latent), 11)
    sigma0 = seen[(0, 0)][2]
    for i, (s, e) in enumerate(windows):
        torch.testing.assert_close(seen[(0, i)][1], (latent + sigma0 * noise)[:, :, s:e], rtol=1e-5, atol=1e-5)


def test_blend_modes_keep_the_cores_seam_ordering_through_the_host(refiner):
    """With the closed-form optimal denoiser, randomized blending leaves smaller seams than none.

    Measured here (88 frames, 15 steps, seeds 0/1): randomized ~1.06, none ~1.23 (1.0 = seamless).
    """
    from streamingt2v_core.sampling.synthetic import OptimalDenoiser, moving_pattern_dataset, seam_score, synthetic_long_video

    clips = moving_pattern_dataset(num_frames=24, channels=4, height=6, width=6)
    denoiser = OptimalDenoiser(clips)
    model = with_denoiser(refiner, lambda x, sigma: denoiser(x, sigma.reshape(-1)[0]))
    video = synthetic_long_video(88, channels=4, height=6, width=6)
    windows = pack_module("context_blend").RandomizedBlendContextHandler(24, 8).windows_for(88)
    scores = {}
    for mode in ("randomized", "none"):
        per_seed = [seam_score(run_host_refine(model, video, blend_mode=mode, steps=15, seed=seed), windows)
                    for seed in range(2)]
        scores[mode] = sum(per_seed) / len(per_seed)
    assert scores["randomized"] < scores["none"], scores


@pytest.mark.parametrize("max_batch", [1, 2])
def test_cancel_stops_between_windows(refiner, max_batch):
    """The host's interrupt flag is honoured before the next model call (of 1 or 2 windows), not only at the
    next step."""
    import comfy.model_management

    model = with_denoiser(refiner, lambda x, sigma: torch.zeros_like(x))
    calls = []

    def hook(handler):
        handler.max_batch = max_batch

        def observe(step, i, span, sub_x, sigma):
            calls.append((step, i))
            if (step, i) == (0, 1):
                comfy.model_management.interrupt_current_processing(True)
        handler.window_observer = observe

    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            run_host_refine(model, torch.zeros(1, 4, 60, 4, 4), steps=3, hook=hook)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    assert calls == [(0, 0), (0, 1)]
