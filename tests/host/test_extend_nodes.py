"""The model loader, initial-chunk and extend nodes in the real host, on tiny random UNets.

The host's own encoders (OpenCLIP-H text, CLIP ViT-H vision, SD VAE) and our UNets are tiny with random weights
(`host_weights`, loaded by the host's own loaders); frames are 64x64 (8x8 latents) and sampling takes 1-2 steps, so the numbers are
noise but every path (host loaders, conditioning, sampler, LoRA patches, interrupt, cache) is the real one.
"""
from __future__ import annotations

import copy
import importlib
import math
import uuid

import pytest
import torch
from harness import WORKFLOWS_DIR, PromptExecutionError, PromptValidationError
from safetensors.torch import save_file
from scripts.workflow_format import workflow_to_api

SIZE = 64


def pack_module(comfy_host, name: str):
    """A module of the pack's `nodes` package as the host imported it."""
    package = comfy_host.node_class("StreamingT2VExtend").__module__.rsplit(".", 1)[0]
    return importlib.import_module(f"{package}.{name}")


def extend_graph(first_chunk: list | None = None, **extend_inputs) -> dict:
    """API prompt: host loaders + our extender + StreamingT2V Extend (+ a PreviewAny output)."""
    api = {
        "1": {"class_type": "CLIPLoader", "inputs": {"clip_name": "open_clip_h_text.safetensors", "type": "stable_diffusion"}},
        "2": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "clip_vision_vit_h.safetensors"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "sd_vae.safetensors"}},
        "5": {"class_type": "StreamingT2VModelLoader", "inputs": {"model_name": "streaming_t2v.safetensors", "weight_dtype": "fp32", "kind": "auto"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 0], "text": "a cat walks on the street"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 0], "text": ""}},
        "8": {"class_type": "EmptyImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 16, "color": 0x8844CC}},
        "9": {"class_type": "StreamingT2VExtend", "inputs": {
            "model": ["5", 0], "positive": ["6", 0], "negative": ["7", 0], "clip_vision": ["2", 0], "vae": ["3", 0],
            "first_chunk": first_chunk or ["8", 0], "total_frames": 24, "seed": 5, "steps": 1, "cfg": 7.5,
            "sampler_name": "ddpm", "scheduler": "ddim_uniform", "width": SIZE, "height": SIZE, "disk_cache": False}},
        "10": {"class_type": "PreviewAny", "inputs": {"source": ["9", 1]}},
    }
    api["9"]["inputs"].update(extend_inputs)
    return api


class ChunkCounter:
    """Counts the chunks the extend node samples (cache hits are not counted); can interrupt chunk k."""

    def __init__(self, monkeypatch, comfy_host, interrupt_at: int | None = None):
        self.extend = pack_module(comfy_host, "extend")
        self.original = self.extend._sample_chunk
        self.calls = 0
        self.interrupt_at = interrupt_at
        self.host = comfy_host
        monkeypatch.setattr(self.extend, "_sample_chunk", self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.interrupt_at is not None and self.calls == self.interrupt_at:
            # The host's own interrupt (the UI's Cancel): the next op inside the sampler raises.
            self.host.interrupt()
        return self.original(*args, **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# Pure helpers (no sampling)
# --------------------------------------------------------------------------------------------------------------------

def test_prompt_schedule_parsing_and_selection(comfy_host):
    extend = pack_module(comfy_host, "extend")
    schedule = extend.parse_prompt_schedule("0: a cat walks | 120: the cat sleeps\n 64 : a dog: runs")
    assert schedule == [(0, "a cat walks"), (64, "a dog: runs"), (120, "the cat sleeps")]
    assert extend.scheduled_prompt_index(schedule, 63) == 0
    assert extend.scheduled_prompt_index(schedule, 64) == 1
    assert extend.scheduled_prompt_index([(24, "x")], 16) is None
    assert extend.parse_prompt_schedule("  ") == []
    for bad in ("a cat without frame", "0: a | 0: b", "8:"):
        with pytest.raises(ValueError, match="prompt_schedule"):
            extend.parse_prompt_schedule(bad)


def test_ddpm_with_ddim_uniform_gives_the_official_leading_timesteps(comfy_host, host_weights):
    import comfy.samplers

    loader = pack_module(comfy_host, "loader")
    model, _ = loader.load_streamingt2v_model(str(host_weights["extender"]), dtype=torch.float32)
    sampling = model.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, "ddim_uniform", 50)
    timesteps = sampling.timestep(sigmas[:-1]).tolist()
    assert timesteps == list(range(981, 0, -20))
    assert float(sigmas[-1]) == 0.0
    # ModelScope scaled_linear betas: abar_999 = 0.00466 (diffusers DDPMScheduler value)
    abar = 1.0 / (1.0 + sampling.sigmas.double() ** 2)
    assert math.isclose(float(abar[-1]), 0.0046601, rel_tol=1e-3)


# --------------------------------------------------------------------------------------------------------------------
# The workflow
# --------------------------------------------------------------------------------------------------------------------

def test_text_to_long_video_workflow_gives_the_planned_frames(object_info, host_weights, comfy_host, run_prompt):
    api = workflow_to_api(WORKFLOWS_DIR / "text_to_long_video.json", object_info)
    by_type = {node["class_type"]: node_id for node_id, node in api.items() if node["class_type"] != "StreamingT2VModelLoader"}
    initial, extend = by_type["StreamingT2VInitialChunk"], by_type["StreamingT2VExtend"]
    for node_id in (initial, extend):
        api[node_id]["inputs"].update(width=SIZE, height=SIZE, steps=2)
    api[extend]["inputs"]["total_frames"] = 29  # 16 + 8 + a last chunk trimmed to 5 frames
    # A run folder of its own: other tests (the demo, the workflows) may have stored the same first chunk's run.
    api[extend]["inputs"]["run_name"] = f"workflow-test-{uuid.uuid4().hex[:8]}"
    outputs = run_prompt(api)
    first = outputs[initial][0]
    video = outputs[extend][0]
    assert first.shape == (16, SIZE, SIZE, 3)
    assert video.shape == (29, SIZE, SIZE, 3)
    assert bool(video.isfinite().all())
    assert torch.equal(video[:16], first), "the first chunk's frames must come through unchanged"
    assert "2 sampled" in outputs[extend][1]
    saved = comfy_host.ui_outputs()[by_type["SaveVideo"]]
    assert saved, "SaveVideo wrote nothing"


# --------------------------------------------------------------------------------------------------------------------
# Conditioning through the host's conditioning mechanism
# --------------------------------------------------------------------------------------------------------------------

def _sample(comfy_model, initial_chunk, model, cond_frames, image_embeds, seed=3):
    g = torch.Generator().manual_seed(0)
    text = torch.randn(1, 77, 1024, generator=g)
    uncond = torch.randn(1, 77, 1024, generator=g)
    grey = torch.randn(1, 1024, generator=g)
    pos = comfy_model.set_extender_conditioning([[text, {}]], cond_frames, image_embeds)
    neg = comfy_model.set_extender_conditioning([[uncond, {}]], cond_frames, grey)
    return initial_chunk.sample_video_latent(model, pos, neg, (1, 4, 16, SIZE // 8, SIZE // 8), seed, 1, 4.0,
                                             "ddpm", "ddim_uniform")


def _relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_cam_frames_and_apm_anchor_reach_the_extender_through_conditioning(comfy_host, host_weights):
    comfy_model = pack_module(comfy_host, "comfy_model")
    initial_chunk = pack_module(comfy_host, "initial_chunk")
    loader = pack_module(comfy_host, "loader")
    model, _ = loader.load_streamingt2v_model(str(host_weights["extender"]), dtype=torch.float32)
    net = model.model.diffusion_model
    g = torch.Generator().manual_seed(1)
    frames_a = torch.rand(8, 3, SIZE, SIZE, generator=g) * 2 - 1
    frames_b = torch.rand(8, 3, SIZE, SIZE, generator=g) * 2 - 1
    embeds_a = torch.randn(1, 1024, generator=g)
    embeds_b = torch.randn(1, 1024, generator=g)
    with torch.no_grad():
        # Random test weights: merger P_out and APM alpha are small but non-zero; make their paths strong.
        for name, p in net.named_parameters():
            if name.endswith("attn2.alpha"):
                p.fill_(2.0)
            if "cross_attention_merger" in name and "proj_out" in name:
                p.mul_(20.0)
    ref = _sample(comfy_model, initial_chunk, model, frames_a, embeds_a)
    assert bool(ref.isfinite().all())
    assert _relative_change(_sample(comfy_model, initial_chunk, model, frames_b, embeds_a), ref) > 1e-3
    assert _relative_change(_sample(comfy_model, initial_chunk, model, frames_a, embeds_b), ref) > 1e-3
    assert torch.equal(_sample(comfy_model, initial_chunk, model, frames_a, embeds_a), ref)  # deterministic
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("attn2.alpha"):
                p.zero_()  # SiLU(0) = 0: the APM mixing is off, the anchor cannot matter
            if "cross_attention_merger" in name and "proj_out" in name:
                p.zero_()  # zero P_out: the CAM cannot reach the UNet
    off = _sample(comfy_model, initial_chunk, model, frames_a, embeds_a)
    assert torch.equal(_sample(comfy_model, initial_chunk, model, frames_b, embeds_b), off)


def test_extender_refuses_a_plain_ksampler_conditioning(comfy_host, host_weights):
    initial_chunk = pack_module(comfy_host, "initial_chunk")
    loader = pack_module(comfy_host, "loader")
    model, _ = loader.load_streamingt2v_model(str(host_weights["extender"]), dtype=torch.float32)
    text = [[torch.zeros(1, 77, 1024), {}]]
    with pytest.raises(ValueError, match="conditioning frames.*StreamingT2V Extend"):
        initial_chunk.sample_video_latent(model, text, text, (1, 4, 16, 8, 8), 0, 1, 2.0, "ddpm", "ddim_uniform")


# --------------------------------------------------------------------------------------------------------------------
# LoRA through the host's LoraLoaderModelOnly
# --------------------------------------------------------------------------------------------------------------------

def _write_extender_lora(models_dir, host_weights) -> str:
    from safetensors import safe_open

    lora = {}
    g = torch.Generator().manual_seed(7)
    with safe_open(str(host_weights["extender"]), "pt") as f:
        targets = [k for k in f.keys() if k.startswith("base_model.") and k.endswith(("attn1.to_q.weight", "attn2.to_v.weight"))]
        for key in targets:
            out_dim, in_dim = f.get_slice(key).get_shape()
            name = key[: -len(".weight")]  # official checkpoint names, as a LoRA trained on the extender has them
            lora[f"{name}.lora_down.weight"] = torch.randn(4, in_dim, generator=g) * 0.5
            lora[f"{name}.lora_up.weight"] = torch.randn(out_dim, 4, generator=g) * 0.5
    path = models_dir / "loras" / "streamingt2v_test_lora.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(lora, str(path))
    return path.name, len(lora) // 2


def test_lora_on_the_extender_changes_the_video_and_strength_zero_does_not(comfy_host, host_weights, models_dir, run_prompt):
    lora_name, n_layers = _write_extender_lora(models_dir, host_weights)
    assert n_layers > 10
    base = extend_graph(seed=11)
    plain = run_prompt(base)["9"][0]

    def with_lora(strength: float) -> torch.Tensor:
        api = copy.deepcopy(base)
        api["20"] = {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["5", 0], "lora_name": lora_name, "strength_model": strength}}
        api["9"]["inputs"]["model"] = ["20", 0]
        out = run_prompt(api)
        if strength:
            patched = out["20"][0]
            mapped = [k for k in patched.patches if k.startswith("diffusion_model.base_model.")]
            assert len(mapped) == n_layers, f"LoRA keys did not map onto the extender ({len(patched.patches)} patches)"
        return out["9"][0]

    changed = with_lora(1.0)
    assert _relative_change(changed[16:], plain[16:]) > 1e-3
    assert torch.equal(changed[:16], plain[:16])
    assert torch.equal(with_lora(0.0), plain)


# --------------------------------------------------------------------------------------------------------------------
# Interrupt + resume, prompt travel
# --------------------------------------------------------------------------------------------------------------------

def test_interrupt_then_requeue_resumes_from_finished_chunks_bit_exact(comfy_host, host_weights, run_prompt, monkeypatch):
    extend = pack_module(comfy_host, "extend")
    api = extend_graph(total_frames=40, seed=21, disk_cache=True, run_name="interrupt-resume")  # chunks 1..3
    reference_api = copy.deepcopy(api)
    reference_api["9"]["inputs"]["disk_cache"] = False
    extend.CHUNK_CACHE.clear()
    reference = run_prompt(reference_api)["9"][0]
    extend.CHUNK_CACHE.clear()  # the reference run must not feed the resume

    counter = ChunkCounter(monkeypatch, comfy_host, interrupt_at=2)
    with pytest.raises(PromptExecutionError) as err:
        run_prompt(api)
    assert err.value.exception_type == "InterruptProcessingException"
    assert counter.calls == 2  # chunk 1 finished, chunk 2 interrupted

    counter.calls, counter.interrupt_at = 0, None
    outputs = run_prompt(api)
    assert counter.calls == 2, "chunk 1 must be reused, chunks 2 and 3 are sampled"
    assert "chunk 1: frames 16-23, seed" in outputs["9"][1] and "reused (memory)" in outputs["9"][1]
    assert "(2 sampled, 1 reused" in outputs["9"][1]
    assert torch.equal(outputs["9"][0], reference)

    # Prompt travel from frame 24 on: chunk 1 (frames 16..23) is the same computation, hence a cache hit; the
    # chunks after it follow the new prompt.
    counter.calls = 0
    travel = copy.deepcopy(api)
    travel["9"]["inputs"].update(clip=["1", 0], prompt_schedule="24: a red car at night")
    video = run_prompt(travel)["9"][0]
    assert counter.calls == 2
    assert torch.equal(video[:24], reference[:24])
    assert _relative_change(video[24:], reference[24:]) > 1e-3


# --------------------------------------------------------------------------------------------------------------------
# Bad input: clear errors naming the input
# --------------------------------------------------------------------------------------------------------------------

def _error(run_prompt, api) -> str:
    with pytest.raises((PromptExecutionError, PromptValidationError)) as err:
        run_prompt(api)
    return str(err.value)


def test_first_chunk_with_fewer_than_8_frames_is_refused(host_weights, run_prompt):
    api = extend_graph()
    api["8"]["inputs"]["batch_size"] = 4
    message = _error(run_prompt, api)
    assert "first_chunk" in message and "at least 8" in message


def test_total_frames_below_the_first_chunk_is_refused(host_weights, run_prompt):
    message = _error(run_prompt, extend_graph(total_frames=12))
    assert "total_frames" in message and "16" in message


def test_refiner_or_base_unet_given_to_the_extender_is_refused(host_weights, run_prompt):
    for file_name, what in (("ms_vid2vid_xl.safetensors", "refiner"), ("modelscope_t2v_unet.safetensors", "UNet3D")):
        api = extend_graph()
        api["5"]["inputs"]["model_name"] = file_name
        message = _error(run_prompt, api)
        assert "model:" in message and "extender" in message and what in message


def test_loader_refuses_a_file_of_the_wrong_kind(host_weights, models_dir, run_prompt):
    api = extend_graph()
    api["5"]["inputs"].update(model_name="ms_vid2vid_xl.safetensors", kind="extender")
    message = _error(run_prompt, api)
    assert "model_name" in message and "ms_vid2vid_xl" in message
    # an image model's UNet (SD1.5 names) is no StreamingT2V checkpoint at all
    image_ckpt = models_dir / "streamingt2v" / "sd15_unet.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
               "model.diffusion_model.out.2.weight": torch.zeros(4, 320, 3, 3)}, str(image_ckpt))
    api["5"]["inputs"].update(model_name=image_ckpt.name, kind="auto")
    message = _error(run_prompt, api)
    assert "model_name" in message and "sd15_unet.safetensors" in message


def test_missing_clip_vision_is_named(host_weights, run_prompt, comfy_host):
    api = extend_graph()
    del api["9"]["inputs"]["clip_vision"]
    message = _error(run_prompt, api)
    assert "clip_vision" in message
    node = comfy_host.node_class("StreamingT2VExtend")
    model, _ = pack_module(comfy_host, "loader").load_streamingt2v_model(str(host_weights["extender"]))
    with pytest.raises(ValueError, match="clip_vision"):
        node.execute(model=model, positive=[], negative=[], clip_vision=None, vae=object(),
                     first_chunk=torch.zeros(16, SIZE, SIZE, 3), total_frames=24, seed=0, steps=1, cfg=1.0,
                     sampler_name="ddpm", scheduler="ddim_uniform")
