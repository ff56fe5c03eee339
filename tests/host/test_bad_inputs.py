"""Bad inputs and faults through the real host, one prompt per case; docs/RELIABILITY.md is generated from them.

Every case is a prompt the host validates and executes (`run_prompt`): tiny random UNets, the host's own
encoders, 64x64 frames, one sampling step. A case says which node and input it is about, what is wrong, and what the
user must see (a regex); the test records what the user actually sees (the first line of the error, or the note in
the node's output) and checks:

* refusals are our own errors (no Traceback, no bare torch error), name the input, and come before any sampling
  (the host's CFG guider never ran);
* a fault during sampling stops at the step or chunk it happened in, naming it;
* notes and fallbacks are in the node's output, never silent.

`test_reliability_table_is_up_to_date` renders the table from the cases and the recorded texts and compares it with
docs/RELIABILITY.md (regenerate: `.venv/bin/python scripts/reliability_table.py`).

Bad values come from real files (a damaged VAE, NaN weights, weights beyond fp16, a UNet whose output overflows, a
junk RAFT file) and, where no host node can make them (NaN frames, NaN text embeddings), from two test-only nodes
standing in for a broken upstream node.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from harness import PromptExecutionError, PromptValidationError
from safetensors import safe_open
from safetensors.torch import save_file
from test_extend_nodes import SIZE, extend_graph

from scripts.reliability_table import TABLE_PATH, WRITE_ENV, Row, render
from streamingt2v_core.metrics.synthetic import SAMPLE_CLIP_NAME

REPO_ROOT = Path(__file__).resolve().parents[2]
BAD = "bad_inputs"  # sub-folder of the model folders for this module's files (removed afterwards)

#: Exceptions a user may see: ours, deliberately raised with a message (a torch RuntimeError or KeyError is a bug).
OUR_ERRORS = {"ValueError", "NonFiniteError", "ChunkFailedError", "CheckpointError", "FileNotFoundError"}


# --------------------------------------------------------------------------------------------------------------------
# Test-only upstream nodes (what no host node makes: NaN frames, NaN text embeddings, out-of-range frames)
# --------------------------------------------------------------------------------------------------------------------

class SpoilImage:
    """An IMAGE with NaN/inf in some frames, multiplied by a factor (a broken upstream node), grey (one channel, as
    a mask or a grayscale loader gives) or RGBA (an alpha channel of ones, as LoadImage of a PNG with alpha)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "mode": (["nan", "inf", "scale", "gray", "rgba"],),
                             "frames": ("STRING", {"default": ""}),
                             "factor": ("FLOAT", {"default": 1.0, "min": -1e6, "max": 1e6, "step": 0.001})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "spoil"
    CATEGORY = "testing"

    def spoil(self, images, mode, frames, factor):
        if mode == "gray":
            return (images.mean(dim=-1, keepdim=True),)
        if mode == "rgba":
            return (torch.cat([images, torch.ones_like(images[..., :1])], dim=-1),)
        out = images.clone()
        index = [int(f) for f in frames.split(",") if f.strip()] or list(range(out.shape[0]))
        if mode == "scale":
            out[index] = out[index] * factor
        else:
            out[index, : out.shape[1] // 4, : out.shape[2] // 4] = float("nan") if mode == "nan" else float("inf")
        return (out,)


class SpoilConditioning:
    """A CONDITIONING whose text embedding holds NaN (a text encoder that overflowed)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "spoil"
    CATEGORY = "testing"

    def spoil(self, conditioning):
        out = []
        for tensor, extras in conditioning:
            bad = tensor.clone()
            bad[:, 3] = float("nan")
            out.append([bad, dict(extras)])
        return (out,)


#: Text embeddings as other text encoders make them: (tokens, width, pooled width).
TEXT_ENCODERS = {"sd15": (77, 768, 768), "sdxl": (77, 2048, 1280), "no_tokens": (0, 1024, 1024)}


class OtherTextEncoder:
    """A CONDITIONING as CLIPTextEncode gives it with another text encoder: an SD1.5 CLIP-L (768 wide), SDXL's
    CLIP-L + bigG (2048 wide, pooled 1280), or one with no tokens (a stand-in: those encoders are hundreds of MB)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"encoder": (list(TEXT_ENCODERS),)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "testing"

    def encode(self, encoder):
        tokens, width, pooled = TEXT_ENCODERS[encoder]
        g = torch.Generator().manual_seed(0)
        return ([[torch.randn(1, tokens, width, generator=g), {"pooled_output": torch.randn(1, pooled, generator=g)}]],)


class ClipVisionOfWidth:
    """The host's own CLIP vision model (comfy.clip_vision.ClipVisionModel) built from a ViT-L/14-like config with
    one small layer and ViT-L's 768-wide projection: what CLIPVisionLoader gives for a ViT-L file, minus the weights
    (never used: the width is refused before anything is encoded)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"projection_dim": ("INT", {"default": 768, "min": 8, "max": 4096})}}

    RETURN_TYPES = ("CLIP_VISION",)
    FUNCTION = "load"
    CATEGORY = "testing"

    def load(self, projection_dim):
        import json
        import tempfile

        import comfy.clip_vision

        config = dict(attention_dropout=0.0, dropout=0.0, hidden_act="quick_gelu", hidden_size=64, image_size=224,
                      initializer_factor=1.0, initializer_range=0.02, intermediate_size=128, layer_norm_eps=1e-5,
                      model_type="clip_vision_model", num_attention_heads=2, num_channels=3, num_hidden_layers=1,
                      patch_size=14, projection_dim=projection_dim, torch_dtype="float32")
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(config, f)
        try:
            return (comfy.clip_vision.ClipVisionModel(f.name),)
        finally:
            os.unlink(f.name)


TEST_NODES = {"TestSpoilImage": SpoilImage, "TestSpoilConditioning": SpoilConditioning,
              "TestOtherTextEncoder": OtherTextEncoder, "TestClipVisionOfWidth": ClipVisionOfWidth}


# --------------------------------------------------------------------------------------------------------------------
# Files: damaged copies of the demo weights
# --------------------------------------------------------------------------------------------------------------------

def _copy_with(src: Path, dst: Path, change: Callable[[str, torch.Tensor], torch.Tensor]) -> None:
    with safe_open(str(src), "pt") as f:
        tensors = {k: change(k, f.get_tensor(k)) for k in f.keys()}
        metadata = f.metadata()
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(dst), metadata=metadata)


def _write_files(models: Path, host_weights: dict) -> dict[str, str]:
    from torchvision.models.optical_flow import raft_large

    from streamingt2v_core.models.tiny_checkpoints import write_tiny_checkpoint

    unets = models / "streamingt2v" / BAD
    files = {}
    # NaN in one weight tensor: a damaged file.
    _copy_with(host_weights["extender"], unets / "nan_extender.safetensors",
               lambda k, t: torch.full_like(t, float("nan")) if k == "base_model.conv_in.bias" else t)
    # A weight beyond fp16's 65504: finite in the file, inf once loaded with weight_dtype fp16.
    _copy_with(host_weights["base_unet3d"], unets / "big_weights_base.safetensors",
               lambda k, t: t * 1e6 if k == "conv_out.weight" else t)
    # Finite weights whose output overflows float32 at the first step (a diverged fine-tune).
    huge = lambda k, t: t * 1e37 if k.endswith("conv_out.weight") and "controlnet" not in k else t  # noqa: E731
    _copy_with(host_weights["base_unet3d"], unets / "overflow_base.safetensors", huge)
    _copy_with(host_weights["extender"], unets / "overflow_extender.safetensors", huge)
    refiner = unets / "refiner.safetensors"
    write_tiny_checkpoint(refiner, "refiner_unet", "converted", seed=0)
    _copy_with(refiner, unets / "overflow_refiner.safetensors", huge)
    refiner.unlink()
    for name in ("nan_extender", "big_weights_base", "overflow_base", "overflow_extender", "overflow_refiner"):
        files[name] = f"{BAD}/{name}.safetensors"
    # A VAE with NaN in one tensor.
    _copy_with(host_weights["vae"], models / "vae" / BAD / "damaged_vae.safetensors",
               lambda k, t: torch.full_like(t, float("nan")) if k == "decoder.conv_out.bias" else t)
    files["damaged_vae"] = f"{BAD}/damaged_vae.safetensors"
    # RAFT folder: a file with RAFT-large's tensor names but wrong shapes (listed, cannot load), and junk bytes.
    raft = models / "raft" / BAD
    raft.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.zeros(1) for k in raft_large(weights=None, progress=False).state_dict()},
              str(raft / "raft_wrong_shapes.safetensors"))
    files["raft_wrong_shapes"] = f"{BAD}/raft_wrong_shapes.safetensors"
    (raft / "junk.pth").write_bytes(os.urandom(2048))
    # A zip checkpoint with the official refiner's keys whose pickle also calls os.system when unpickled.
    state = write_tiny_checkpoint(unets / "good_refiner.pth", "refiner_unet", "ms_vid2vid_xl")
    (unets / "good_refiner.pth").unlink()
    torch.save({"state_dict": state, "payload": RunsCode()}, unets / "code_refiner.ckpt")
    files["code_refiner"] = f"{BAD}/code_refiner.ckpt"
    # A diffusers-layout UNet3D trained with 16 norm groups, its config.json left behind: the shapes fit 32 too.
    from streamingt2v_core.models import UNet3D, UNet3DConfig

    torch.manual_seed(3)
    groups16 = UNet3D(dataclasses.replace(UNet3DConfig.tiny(), block_out_channels=(32, 64, 64, 64),
                                          norm_num_groups=16))
    save_file({k: v.contiguous() for k, v in groups16.state_dict().items()}, str(unets / "groups16_unet3d.safetensors"))
    files["groups16_unet3d"] = f"{BAD}/groups16_unet3d.safetensors"
    _write_random_taef1(models)
    return files


#: The host's 16-channel TAESD (Flux latents), written at random as models/vae_approx/taef1_*: VAELoader("taef1").
TAEF1_FILES = ("taef1_encoder.safetensors", "taef1_decoder.safetensors")


def _write_random_taef1(models: Path) -> None:
    import comfy.taesd.taesd

    taef1 = comfy.taesd.taesd.TAESD(latent_channels=16)  # host ops leave parameters uninitialised: fill them
    g = torch.Generator().manual_seed(0)
    approx = models / "vae_approx"
    approx.mkdir(parents=True, exist_ok=True)
    for module, name in ((taef1.taesd_encoder, TAEF1_FILES[0]), (taef1.taesd_decoder, TAEF1_FILES[1])):
        save_file({k: (torch.randn(v.shape, generator=g) * 0.05).contiguous() for k, v in module.state_dict().items()},
                  str(approx / name))


class RunsCode:
    """Unpickling this would run a shell command: what a malicious checkpoint does."""

    def __reduce__(self):
        return (os.system, ("echo this must never run",))


@dataclasses.dataclass
class Bench:
    host: Any
    files: dict[str, str]
    guider_calls: list[int]


@pytest.fixture(scope="module")
def bench(comfy_host, host_weights):
    import comfy.samplers
    from test_context_blend import write_random_taesd, write_tiny_refiner

    write_random_taesd(comfy_host.models_dir)
    write_tiny_refiner(comfy_host.models_dir)
    files = _write_files(comfy_host.models_dir, host_weights)
    for name, cls in TEST_NODES.items():
        comfy_host.nodes.NODE_CLASS_MAPPINGS[name] = cls
    # Count the host's sampling runs: a refusal must come before any.
    calls = [0]
    original = comfy.samplers.CFGGuider.sample

    def counting(self, *args, **kwargs):
        calls[0] += 1
        return original(self, *args, **kwargs)

    comfy.samplers.CFGGuider.sample = counting
    try:
        yield Bench(comfy_host, files, calls)
    finally:
        comfy.samplers.CFGGuider.sample = original
        for name in TEST_NODES:
            comfy_host.nodes.NODE_CLASS_MAPPINGS.pop(name, None)
        for folder in ("streamingt2v", "vae", "raft"):
            shutil.rmtree(comfy_host.models_dir / folder / BAD, ignore_errors=True)
        for name in TAEF1_FILES:
            (comfy_host.models_dir / "vae_approx" / name).unlink(missing_ok=True)
        comfy_host.executor.reset()


# --------------------------------------------------------------------------------------------------------------------
# Graphs
# --------------------------------------------------------------------------------------------------------------------

def spoiled(api: dict, source: list, mode: str, frames: str = "", factor: float = 1.0, node: str = "sp") -> list:
    api[node] = {"class_type": "TestSpoilImage", "inputs": {"images": source, "mode": mode, "frames": frames,
                                                            "factor": factor}}
    return [node, 0]


def extend(**inputs) -> Callable[[Bench], dict]:
    """Extend graph (test_extend_nodes.extend_graph: 16 frames 64x64, 24 frames out, 1 step), inputs changed."""
    def build(b: Bench) -> dict:
        api = extend_graph()
        api["9"]["inputs"].update({k: v for k, v in inputs.items() if not callable(v)})
        for k, v in inputs.items():
            if callable(v):
                api["9"]["inputs"][k] = v(api, b)
        return api
    return build


def spoiled_first_chunk(mode: str, frames: str = "", factor: float = 1.0):
    return lambda api, b: spoiled(api, ["8", 0], mode, frames, factor)


def model_file(name: str, kind: str = "auto", dtype: str = "fp32"):
    def make(api, b):
        api["m"] = {"class_type": "StreamingT2VModelLoader",
                    "inputs": {"model_name": b.files.get(name, name), "weight_dtype": dtype, "kind": kind}}
        return ["m", 0]
    return make


def damaged_vae(api, b):
    api["dv"] = {"class_type": "VAELoader", "inputs": {"vae_name": b.files["damaged_vae"]}}
    return ["dv", 0]


def nan_text(api, b):
    api["nc"] = {"class_type": "TestSpoilConditioning", "inputs": {"conditioning": ["6", 0]}}
    return ["nc", 0]


def text_of(encoder: str):
    """CONDITIONING from another text encoder (TEXT_ENCODERS)."""
    def make(api, b):
        api["te"] = {"class_type": "TestOtherTextEncoder", "inputs": {"encoder": encoder}}
        return ["te", 0]
    return make


def taef1_vae(api, b):
    api["fv"] = {"class_type": "VAELoader", "inputs": {"vae_name": "taef1"}}
    return ["fv", 0]


def vit_l_vision(api, b):
    api["cv"] = {"class_type": "TestClipVisionOfWidth", "inputs": {"projection_dim": 768}}
    return ["cv", 0]


def initial(**inputs) -> Callable[[Bench], dict]:
    """Initial Chunk: tiny base UNet, 8 frames at 64x64, 1 step, the frames previewed."""
    def build(b: Bench) -> dict:
        api = extend_graph()
        for k in ("2", "5", "8", "9", "10"):
            api.pop(k)
        api["4"] = {"class_type": "StreamingT2VModelLoader",
                    "inputs": {"model_name": "modelscope_t2v_unet.safetensors", "weight_dtype": "fp32", "kind": "auto"}}
        api["11"] = {"class_type": "StreamingT2VInitialChunk", "inputs": {
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "vae": ["3", 0], "width": SIZE,
            "height": SIZE, "frames": 8, "seed": 0, "steps": 1, "cfg": 9.0, "sampler_name": "euler",
            "scheduler": "normal"}}
        api["12"] = {"class_type": "PreviewImage", "inputs": {"images": ["11", 0]}}
        for k, v in inputs.items():
            api["11"]["inputs"][k] = v(api, b) if callable(v) else v
        return api
    return build


def loader(model_name: str, kind: str = "auto", dtype: str = "fp32") -> Callable[[Bench], dict]:
    def build(b: Bench) -> dict:
        return {"m": {"class_type": "StreamingT2VModelLoader",
                      "inputs": {"model_name": b.files.get(model_name, model_name), "weight_dtype": dtype,
                                 "kind": kind}},
                "p": {"class_type": "PreviewAny", "inputs": {"source": ["m", 1]}}}
    return build


REFINE_SETTINGS = dict(width=128, height=80, resize_mode="pad", upscale_method="bilinear", chunk=8, overlap=2,
                       denoise=0.6, steps=1, cfg=7.5, guidance_rescale=0.2, sampler_name="dpmpp_2m_sde",
                       scheduler="streamingt2v_trailing", seed=0, blend_mode="randomized", crop_padding=True,
                       output="images", fps=8.0)


def refine(frames: int = 20, **inputs) -> Callable[[Bench], dict]:
    """Refine: the tiny MS-Vid2Vid-XL UNet, TAESD, 20 frames of 32x32 refined at 128x80 in windows of 8, 1 step."""
    def build(b: Bench) -> dict:
        api = {
            "1": {"class_type": "StreamingT2VModelLoader",
                  "inputs": {"model_name": "tiny_refiner_non_ema_0035000.pth", "weight_dtype": "fp32", "kind": "auto"}},
            "2": {"class_type": "VAELoader", "inputs": {"vae_name": "taesd"}},
            "3": {"class_type": "CLIPLoader", "inputs": {"clip_name": "open_clip_h_text.safetensors",
                                                         "type": "stable_diffusion"}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["3", 0], "text": "a cat surfing a wave"}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["3", 0], "text": ""}},
            "8": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": frames,
                                                         "color": 0x808040}},
            "r": {"class_type": "StreamingT2VRefine", "inputs": dict(
                REFINE_SETTINGS, images=["8", 0], model=["1", 0], vae=["2", 0], positive=["6", 0],
                negative=["7", 0])},
            "p": {"class_type": "PreviewImage", "inputs": {"images": ["r", 0]}},
        }
        for k, v in inputs.items():
            api["r"]["inputs"][k] = v(api, b) if callable(v) else v
        return api
    return build


def metric(node: str, frames: int = 20, color: int = 0x8844CC, images=None, **inputs) -> Callable[[Bench], dict]:
    """A metric node on an EmptyImage video (a static one: every frame the same colour)."""
    defaults = {
        "StreamingT2VSCuts": {"fps": 8.0},
        "StreamingT2VMAWE": {"flow_backend": "dis", "raft_weights": "none", "coeff": 9.5, "size": 64},
        "StreamingT2VCLIPScore": {"prompt": "a purple square", "clip_checkpoint": SAMPLE_CLIP_NAME, "architecture": "auto"},
        "StreamingT2VDriftSeams": {"first_chunk": 16, "new_frames_per_chunk": 8, "clip_frames_per_chunk": 2},
    }[node]

    def build(b: Bench) -> dict:
        api = {"e": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": frames,
                                                           "color": color}}}
        source = ["e", 0] if images is None else images(api, b)
        api["n"] = {"class_type": node, "inputs": {"images": source, "chunk_plan": "extension",
                                                   "filename_prefix": "bad_inputs/metric", **defaults}}
        for k, v in inputs.items():
            api["n"]["inputs"][k] = v(api, b) if callable(v) else v
        return api
    return build


def nan_frames(frames: str = "3,5"):
    return lambda api, b: spoiled(api, ["e", 0], "nan", frames)


def with_files(value: str):
    return lambda api, b: b.files[value]


def load_run(**inputs) -> Callable[[Bench], dict]:
    def build(b: Bench) -> dict:
        api = {"1": {"class_type": "StreamingT2VLoadRun", "inputs": {"run_name": "latest", "fps": 8.0,
                                                                     "frames_output": "whole video"}},
               "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 2]}}}
        api["1"]["inputs"].update(inputs)
        return api
    return build


def windows_node(**inputs) -> Callable[[Bench], dict]:
    def build(b: Bench) -> dict:
        api = {"1": {"class_type": "StreamingT2VModelLoader",
                     "inputs": {"model_name": "tiny_refiner_non_ema_0035000.pth", "weight_dtype": "fp32",
                                "kind": "auto"}},
               "w": {"class_type": "StreamingT2VRandomizedBlendingWindows", "inputs": {
                   "model": ["1", 0], "chunk": 8, "overlap": 2, "blend_mode": "randomized", "seed": 0,
                   "guidance_rescale": 0.0, "max_batch": 0}},
               "p": {"class_type": "PreviewAny", "inputs": {"source": ["w", 0]}}}
        api["w"]["inputs"].update(inputs)
        return api
    return build


def frame_plan(**inputs) -> Callable[[Bench], dict]:
    def build(b: Bench) -> dict:
        api = {"1": {"class_type": "StreamingT2VFramePlan", "inputs": {
            "total_frames": 240, "fps": 8.0, "first_chunk": 16, "refine_chunk": 24, "refine_overlap": 8}}}
        api["1"]["inputs"].update(inputs)
        return api
    return build


def little_ram(mp: pytest.MonkeyPatch, b: Bench) -> None:
    """A machine with 1 GiB available (deterministic messages)."""
    import streamingt2v_core.runs.memory as memory

    mp.setattr(memory, "available_ram_bytes", lambda: 1 << 30)


# --------------------------------------------------------------------------------------------------------------------
# The cases
# --------------------------------------------------------------------------------------------------------------------

def info_line(node: str, output: int, contains: str) -> Callable[[dict, Any], str]:
    """What the user sees for a note: the line of a STRING output that holds ``contains``."""
    def read(outputs: dict, host) -> str:
        text = outputs[node][output]
        return next(line for line in str(text).splitlines() if contains in line)
    return read


def ui_line(node: str, contains: str) -> Callable[[dict, Any], str]:
    """A line of the text a metric node shows after its run."""
    def read(outputs: dict, host) -> str:
        text = "\n".join(host.ui_outputs()[node]["text"])
        return next(line for line in text.splitlines() if contains in line)
    return read


def output_value(node: str, output: int, label: str) -> Callable[[dict, Any], str]:
    def read(outputs: dict, host) -> str:
        return f"{label} = {outputs[node][output]}"
    return read


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input or fault: ``build`` makes the prompt, ``expect`` (regex) is what the user must see."""

    id: str
    node: str
    input: str
    bad: str
    expect: str
    build: Callable[[Bench], dict]
    outcome: str = "refused"  # refused (before sampling) | host (refused by the host's validation) | stopped
    #                           (a fault during sampling stops the run) | note | fallback | defined
    read: Callable[[dict, Any], str] | None = None  # for note/fallback/defined: the text the user sees
    patch: Callable[[pytest.MonkeyPatch, Bench], None] | None = None
    group: str | None = None  # cases of one group share one prompt (notes of one run)


#: One Extend run for both notes (cases of one group share one prompt): the TAESD VAE decodes in milliseconds.
EXTEND_NOTES = extend(first_chunk=spoiled_first_chunk("scale", factor=1.5), vae=lambda api, b: (
    api.__setitem__("tv", {"class_type": "VAELoader", "inputs": {"vae_name": "taesd"}}), ["tv", 0])[1],
    prompt_schedule="16: a cat walks | 17: a cat jumps", clip=lambda api, b: ["1", 0])

#: A long scheduled prompt (154 tokens: two CLIP windows; the extender takes 77).
LONG_PROMPT = "a cat walks on a long street past red houses, " * 12
#: What the pack's encode_text was asked to encode in the EXTEND_NOTES_2 run (its patch counts).
ENCODED: list[str] = []


def count_encodes(mp: pytest.MonkeyPatch, b: Bench) -> None:
    from test_extend_nodes import pack_module

    extend_module = pack_module(b.host, "extend")
    original = extend_module.encode_text

    def counting(clip, text):
        ENCODED.append(text)
        return original(clip, text)

    mp.setattr(extend_module, "encode_text", counting)


def _anchor_batch(api, b):
    api["an"] = {"class_type": "EmptyImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 3,
                                                        "color": 0x40C080}}
    return ["an", 0]


#: One Extend run for the quiet changes it names: an RGBA first chunk, an anchor batch of 3, and a schedule of 24
#: entries on a 24-frame video (chunk 1 uses only entry 16, a prompt of 154 tokens).
EXTEND_NOTES_2 = extend(
    first_chunk=spoiled_first_chunk("rgba"), anchor=_anchor_batch, clip=lambda api, b: ["1", 0],
    vae=lambda api, b: (api.__setitem__("tv", {"class_type": "VAELoader", "inputs": {"vae_name": "taesd"}}),
                        ["tv", 0])[1],
    prompt_schedule=" | ".join(f"{i}: {LONG_PROMPT if i == 16 else f'scene {i}'}" for i in range(24)))

MODEL_LOADER, INITIAL, EXTEND, REFINE = ("Model Loader", "Initial Chunk", "Extend", "Refine")
SCUTS, MAWE, CLIP, DRIFT = "SCuts", "MAWE", "CLIP Score", "Drift & Seams"
LOAD_RUN, WINDOWS, PLAN = "Load Run", "Randomized Blending Windows", "Frame Plan"

CASES: list[Case] = [
    # Model Loader
    Case("loader-nan", MODEL_LOADER, "model_name", "a checkpoint with NaN in a weight tensor",
         r"^model_name: .*holds NaN or inf values in 1 weight tensor \(e.g. base_model.conv_in.bias\)",
         loader("nan_extender")),
    Case("loader-fp16-range", MODEL_LOADER, "model_name", "weights beyond fp16's range, weight_dtype fp16",
         r"^model_name: .*beyond fp16's range.*bf16 or fp32", loader("big_weights_base", dtype="fp16")),
    Case("loader-kind", MODEL_LOADER, "kind", "kind extender for a base UNet3D file",
         r"^model_name: cannot load 'modelscope_t2v_unet.safetensors' .*kind mismatch: kind='extender' was asked for",
         loader("modelscope_t2v_unet.safetensors", kind="extender")),
    Case("loader-code", MODEL_LOADER, "model_name", "a .ckpt whose pickle would call os.system",
         r"^model_name: .*refused for safety", loader("code_refiner")),
    Case("loader-groups", MODEL_LOADER, "norm_num_groups", "a diffusers UNet3D with 16 norm groups, no config.json",
         r"^assumed: norm_num_groups=32 assumed", loader("groups16_unet3d"), outcome="note",
         read=lambda outputs, host: next(line for line in outputs["m"][1].splitlines() if "assumed" in line)),
    Case("loader-missing", MODEL_LOADER, "model_name", "a file name that is not in the list",
         r"^model_name: 'no_such_model.safetensors' not found in \['<ComfyUI>/models/streamingt2v'",
         loader("no_such_model.safetensors")),
    # Initial Chunk
    Case("initial-kind", INITIAL, "model", "the extender instead of the base UNet3D",
         r"^model: ", initial(model=model_file("streaming_t2v.safetensors"))),
    Case("initial-width", INITIAL, "width", "width 100 (not a multiple of 8)",
         r"^width: must be a multiple of 8, got 100", initial(width=100)),
    Case("initial-nan-text", INITIAL, "positive", "NaN in the text embedding",
         r"^positive: the text embedding holds NaN or inf", initial(positive=nan_text)),
    Case("initial-vae", INITIAL, "vae", "a VAE file with NaN in its weights",
         r"^vae: 1 weight tensor of the VAE holds NaN or inf", initial(vae=damaged_vae)),
    Case("initial-sd15-text", INITIAL, "positive", "768-wide text embeddings (an SD1.5 CLIP-L text encoder)",
         r"^positive: the text embedding is 768 wide \(SD1\.x's CLIP-L text encoder\), but the ModelScope T2V "
         r"UNet3D takes 1024-wide ones", initial(positive=text_of("sd15"))),
    Case("initial-sdxl-text", INITIAL, "negative", "2048-wide text embeddings (SDXL's text encoders)",
         r"^negative: the text embedding is 2048 wide \(SDXL's text encoders, CLIP-L \+ OpenCLIP-bigG\)",
         initial(negative=text_of("sdxl"))),
    Case("initial-no-tokens", INITIAL, "positive", "text embeddings with 0 tokens",
         r"^positive: the text embedding has 0 tokens", initial(positive=text_of("no_tokens"))),
    Case("initial-vae-16ch", INITIAL, "vae", "a 16-channel VAE (Flux's TAEF1)",
         r"^vae makes 16-channel latents but the model expects 4 channels", initial(vae=taef1_vae)),
    Case("initial-overflow", INITIAL, "model", "finite weights whose output overflows at step 1",
         r"^model: the sampled latent went NaN or inf at step 1 of 1 in latent frames 0-7 of 8; .*computes in fp32",
         initial(model=model_file("overflow_base")), outcome="stopped"),
    # Extend
    Case("extend-short-first-chunk", EXTEND, "first_chunk", "5 frames",
         r"^first_chunk: needs at least 8 frames \(the CAM conditions each chunk on the last 8\), got 5",
         extend(first_chunk=lambda api, b: (api["8"]["inputs"].update(batch_size=5), ["8", 0])[1])),
    Case("extend-nan-first-chunk", EXTEND, "first_chunk", "NaN in frames 3 and 5",
         r"^first_chunk: frames 3, 5 of 16 hold NaN or inf values", extend(first_chunk=spoiled_first_chunk("nan", "3,5"))),
    Case("extend-inf-first-chunk", EXTEND, "first_chunk", "inf in every frame",
         r"^first_chunk: every frame holds NaN or inf values", extend(first_chunk=spoiled_first_chunk("inf"))),
    Case("extend-255-first-chunk", EXTEND, "first_chunk", "0..255 values instead of [0, 1]",
         r"^first_chunk: expected an IMAGE with values in \[0, 1\], got values from .* \(this looks like 0\.\.255",
         extend(first_chunk=spoiled_first_chunk("scale", factor=255.0))),
    Case("extend-overshoot-first-chunk", EXTEND, "first_chunk", "values up to 1.2 (resampling overshoot)",
         r"^first_chunk: \d+ values from .* to 1\.2\d* were outside \[0, 1\] .*clamped", EXTEND_NOTES,
         outcome="note", read=info_line("9", 1, "first_chunk:"), group="extend-notes"),
    Case("extend-nan-anchor", EXTEND, "anchor", "NaN in the anchor frame",
         r"^anchor: frame 0 holds NaN or inf values .*APM",
         extend(anchor=lambda api, b: spoiled(api, ["8", 0], "nan", "0", node="sa"))),
    Case("extend-total-frames", EXTEND, "total_frames", "10, fewer than the first chunk's 16",
         r"^total_frames: must be >= the first chunk's 16 frames, got 10", extend(total_frames=10)),
    Case("extend-total-frames-max", EXTEND, "total_frames", "200000 (above the widget's maximum)",
         r"total_frames", extend(total_frames=200000), outcome="host"),
    Case("extend-ram", EXTEND, "total_frames", "100000 frames at 64x64 on a machine with 1 GiB free",
         r"^total_frames: 100000 frames at 64x64 need .* of RAM .*'last 16 frames", extend(total_frames=100000),
         patch=little_ram),
    Case("extend-height", EXTEND, "height", "height 100 (not a multiple of 8)",
         r"^height: must be a multiple of 8, got 100", extend(height=100)),
    Case("extend-kind", EXTEND, "model", "the base UNet3D instead of the extender",
         r"^model: ", extend(model=model_file("modelscope_t2v_unet.safetensors"))),
    Case("extend-nan-text", EXTEND, "positive", "NaN in the text embedding",
         r"^positive: the text embedding holds NaN or inf", extend(positive=nan_text)),
    Case("extend-vae", EXTEND, "vae", "a VAE file with NaN in its weights",
         r"^vae: 1 weight tensor of the VAE holds NaN or inf", extend(vae=damaged_vae)),
    Case("extend-sd15-text", EXTEND, "positive", "768-wide text embeddings (an SD1.5 CLIP-L text encoder)",
         r"^positive: the text embedding is 768 wide \(SD1\.x's CLIP-L text encoder\), but the extender takes "
         r"1024-wide ones", extend(positive=text_of("sd15"))),
    Case("extend-sdxl-text", EXTEND, "negative", "2048-wide text embeddings (SDXL's text encoders)",
         r"^negative: the text embedding is 2048 wide \(SDXL's text encoders, CLIP-L \+ OpenCLIP-bigG\)",
         extend(negative=text_of("sdxl"))),
    Case("extend-no-tokens", EXTEND, "negative", "text embeddings with 0 tokens",
         r"^negative: the text embedding has 0 tokens", extend(negative=text_of("no_tokens"))),
    Case("extend-vae-16ch", EXTEND, "vae", "a 16-channel VAE (Flux's TAEF1)",
         r"^vae makes 16-channel latents but the model expects 4 channels", extend(vae=taef1_vae)),
    Case("extend-clip-vision-vit-l", EXTEND, "clip_vision", "a CLIP ViT-L/14 vision model (768-wide embeddings)",
         r"^clip_vision: this image encoder gives 768-wide image embeddings \(CLIP ViT-L/14\), but the extender's APM "
         r"takes 1024", extend(clip_vision=vit_l_vision)),
    Case("extend-gray-first-chunk", EXTEND, "first_chunk", "grayscale frames (1 channel)",
         r"^first_chunk: expected RGB frames \[frames, height, width, 3\], got \(16, 64, 64, 1\): 1 channel "
         r"\(grayscale\?\)", extend(first_chunk=spoiled_first_chunk("gray"))),
    Case("extend-rgba-first-chunk", EXTEND, "first_chunk", "RGBA frames",
         r"^first_chunk: the frames have 4 channels \(RGBA\); the alpha channel was dropped", EXTEND_NOTES_2,
         outcome="note", read=info_line("9", 1, "RGBA"), group="extend-notes-2", patch=count_encodes),
    Case("extend-anchor-batch", EXTEND, "anchor", "a batch of 3 images",
         r"^anchor: 3 images given; only the first is used", EXTEND_NOTES_2,
         outcome="note", read=info_line("9", 1, "images given"), group="extend-notes-2", patch=count_encodes),
    Case("extend-schedule-long-prompt", EXTEND, "prompt_schedule", "a scheduled prompt of 154 tokens",
         r"^prompt_schedule: the entry '16: a cat walks .*': the prompt is 154 tokens long; the extender uses the "
         r"first 77", EXTEND_NOTES_2, outcome="note", read=info_line("9", 1, "tokens long"), group="extend-notes-2",
         patch=count_encodes),
    Case("extend-schedule-many", EXTEND, "prompt_schedule", "24 entries on a 24-frame video (one chunk to sample)",
         r"^prompt_schedule: 23 of its 24 entries are used by no chunk", EXTEND_NOTES_2, outcome="note",
         read=info_line("9", 1, "entries are used by no chunk"), group="extend-notes-2", patch=count_encodes),
    Case("extend-schedule-syntax", EXTEND, "prompt_schedule", "an entry without a frame number",
         r"^prompt_schedule: expected entries like '0: a cat walks'",
         extend(prompt_schedule="a dog runs", clip=lambda api, b: ["1", 0])),
    Case("extend-schedule-past-end", EXTEND, "prompt_schedule", "an entry at frame 40 of a 24-frame video",
         r"^prompt_schedule: the entry '40: the cat sleeps' starts at frame 40, past the end of the video "
         r"\(total_frames 24",
         extend(prompt_schedule="0: a cat walks | 40: the cat sleeps", clip=lambda api, b: ["1", 0])),
    Case("extend-schedule-unused", EXTEND, "prompt_schedule", "two entries inside one chunk",
         r"^prompt_schedule: the entry '17: a cat jumps' is used by no chunk", EXTEND_NOTES, outcome="note",
         read=info_line("9", 1, "is used by no chunk"), group="extend-notes"),
    Case("extend-schedule-no-clip", EXTEND, "clip", "prompt_schedule without a CLIP",
         r"^clip: prompt_schedule needs a CLIP", extend(prompt_schedule="0: a cat")),
    Case("extend-chunk-seeds", EXTEND, "chunk_seeds", "a chunk beyond the last one",
         r"^chunk_seeds: chunk 9 is beyond the last chunk \(1\) of 24 frames", extend(chunk_seeds="9: 5")),
    Case("extend-regenerate", EXTEND, "regenerate_from", "regenerate_from without the run store",
         r"^regenerate_from: keeps chunks stored in the run store; turn disk_cache on", extend(regenerate_from=2)),
    Case("extend-run-name", EXTEND, "run_name", "a name leaving the runs folder",
         r"^run_name: ", extend(disk_cache=True, run_name="../escape")),
    Case("extend-overflow", EXTEND, "model", "finite weights whose output overflows in chunk 1",
         r"^run 'bad-inputs-overflow', chunk 1 failed: model: the sampled latent holds values up to .* after the last "
         r"step .*computes in fp32.*nothing of this chunk was kept",
         extend(model=model_file("overflow_extender"), disk_cache=True, run_name="bad-inputs-overflow"),
         outcome="stopped"),
    # Refine
    Case("refine-nan-images", REFINE, "images", "NaN in frames 4-6",
         r"^images: frames 4-6 of 20 hold NaN or inf values", refine(images=lambda api, b: spoiled(
             api, ["8", 0], "nan", "4,5,6"))),
    Case("refine-height", REFINE, "height", "height 700 for MS-Vid2Vid-XL",
         r"^height must be a multiple of 8 .* got 700; it takes heights of 16 \+ a multiple of 64 px; the nearest "
         r"are 656 and 720", refine(height=700)),
    Case("refine-width", REFINE, "width", "width 1000 for MS-Vid2Vid-XL",
         r"^width/height: 1000x720 pixels cannot be taken by this model: width 1000 is refused: it takes widths that "
         r"are multiples of 64 px; the nearest are 960 and 1024", refine(width=1000, height=720)),
    Case("refine-short", REFINE, "images", "6 frames for windows of 8",
         r"^images has 6 frames .*fewer than one chunk", refine(frames=6)),
    Case("refine-overlap", REFINE, "overlap", "overlap 8 with chunk 8",
         r"^overlap must be an integer in \[0, chunk - 1\]", refine(overlap=8)),
    Case("refine-vae", REFINE, "vae", "a VAE file with NaN in its weights",
         r"^vae: 1 weight tensor of the VAE holds NaN or inf", refine(vae=damaged_vae)),
    Case("refine-nan-text", REFINE, "negative", "NaN in the text embedding",
         r"^negative: the text embedding holds NaN or inf", refine(negative=lambda api, b: (
             api.__setitem__("nc", {"class_type": "TestSpoilConditioning", "inputs": {"conditioning": ["7", 0]}}),
             ["nc", 0])[1])),
    Case("refine-sd15-text", REFINE, "positive", "768-wide text embeddings (an SD1.5 CLIP-L text encoder)",
         r"^positive: the text embedding is 768 wide \(SD1\.x's CLIP-L text encoder\), but the refiner takes "
         r"1024-wide ones", refine(positive=text_of("sd15"))),
    Case("refine-sdxl-text", REFINE, "negative", "2048-wide text embeddings (SDXL's text encoders)",
         r"^negative: the text embedding is 2048 wide \(SDXL's text encoders, CLIP-L \+ OpenCLIP-bigG\)",
         refine(negative=text_of("sdxl"))),
    Case("refine-no-tokens", REFINE, "positive", "text embeddings with 0 tokens",
         r"^positive: the text embedding has 0 tokens", refine(positive=text_of("no_tokens"))),
    Case("refine-255-images", REFINE, "images", "0..255 values instead of [0, 1]",
         r"^images: expected an IMAGE with values in \[0, 1\], got values from .* \(this looks like 0\.\.255",
         refine(images=lambda api, b: spoiled(api, ["8", 0], "scale", factor=255.0))),
    Case("refine-ram-output", REFINE, "output", "all frames as IMAGE on a machine with 1 GiB free",
         r"^output: the 20 refined frames at 4096x4096 need .*set output to 'video_file'",
         refine(width=4096, height=4112), patch=little_ram),
    Case("refine-overflow", REFINE, "model", "finite weights whose output overflows at step 1",
         r"^model: the refined latent went NaN or inf at step 1 of 1 in latent frames 0-19 of 20, windows 0-2 of 3 "
         r"\(counted from 0\); .*nothing was written",
         refine(model=model_file("overflow_refiner")), outcome="stopped"),
    # Metrics
    Case("scuts-nan", SCUTS, "images", "NaN in frames 3 and 5",
         r"^images: frames 3, 5 of 20 hold NaN or inf values .*SCuts", metric("StreamingT2VSCuts", images=nan_frames())),
    Case("scuts-one-frame", SCUTS, "images", "a single frame",
         r"a single frame: there is no pair of frames to compare, so SCuts is 0 by construction",
         metric("StreamingT2VSCuts", frames=1), outcome="note", read=ui_line("n", "single frame")),
    Case("scuts-short", SCUTS, "images", "12 frames",
         r"12 frames are too few for AdaptiveDetector to find any cut \(it needs at least 18",
         metric("StreamingT2VSCuts", frames=12), outcome="note", read=ui_line("n", "too few")),
    Case("scuts-255", SCUTS, "images", "0..255 values instead of [0, 1]",
         r"^images: expected an IMAGE with values in \[0, 1\], got values from .* \(this looks like 0\.\.255",
         metric("StreamingT2VSCuts", images=lambda api, b: spoiled(api, ["e", 0], "scale", factor=255.0))),
    Case("scuts-gray", SCUTS, "images", "grayscale frames (1 channel)",
         r"^images: expected RGB frames .*1 channel \(grayscale\?\)",
         metric("StreamingT2VSCuts", images=lambda api, b: spoiled(api, ["e", 0], "gray"))),
    Case("scuts-rgba", SCUTS, "images", "RGBA frames",
         r"^note: images: the frames have 4 channels \(RGBA\); the alpha channel was dropped",
         metric("StreamingT2VSCuts", images=lambda api, b: spoiled(api, ["e", 0], "rgba")), outcome="note",
         read=ui_line("n", "RGBA")),
    Case("mawe-one-frame", MAWE, "images", "a single frame",
         r"^images: needs at least 2 frames \(MAWE compares pairs of consecutive frames\), got 1",
         metric("StreamingT2VMAWE", frames=1)),
    Case("mawe-nan", MAWE, "images", "NaN in frames 3 and 5",
         r"^images: frames 3, 5 of 20 hold NaN or inf values .*MAWE", metric("StreamingT2VMAWE", images=nan_frames())),
    Case("mawe-static", MAWE, "images", "a static video (no motion)",
         r"no motion: the video is static .*MAWE is 0 by definition", metric("StreamingT2VMAWE"),
         outcome="defined", read=ui_line("n", "no motion")),
    Case("mawe-junk-raft", MAWE, "flow_backend", "a junk file in models/raft, flow_backend auto",
         r"^flow_used = opencv_dis_medium \(flow_backend auto fell back: models/raft holds no RAFT-large state dict "
         r"\('bad_inputs/junk.pth'",
         metric("StreamingT2VMAWE", flow_backend="auto"), outcome="fallback", read=output_value("n", 2, "flow_used"),
         patch=lambda mp, b: mp.setattr(b.host.folder_paths, "get_filename_list",
                                        _only_raft(b.host.folder_paths.get_filename_list, f"{BAD}/junk.pth"))),
    Case("mawe-bad-raft-auto", MAWE, "flow_backend", "a file with RAFT's tensor names but wrong shapes, auto",
         r"^flow_used = opencv_dis_medium \(flow_backend auto fell back: raft_weights 'raft_wrong_shapes.safetensors' "
         r"could not be loaded \(the file does not fit RAFT-large: \d+ tensors have other shapes",
         metric("StreamingT2VMAWE", flow_backend="auto", raft_weights=with_files("raft_wrong_shapes")),
         outcome="fallback", read=output_value("n", 2, "flow_used")),
    Case("mawe-bad-raft", MAWE, "raft_weights", "the same file with flow_backend raft",
         r"^raft_weights: 'raft_wrong_shapes.safetensors' cannot be used: the file does not fit RAFT-large: \d+ tensors",
         metric("StreamingT2VMAWE", flow_backend="raft", size=128, raft_weights=with_files("raft_wrong_shapes"))),
    Case("mawe-no-raft", MAWE, "raft_weights", "flow_backend raft and no weights selected",
         r"^raft_weights: flow_backend is 'raft' but no RAFT-large weights file is selected",
         metric("StreamingT2VMAWE", flow_backend="raft", size=128),
         patch=lambda mp, b: mp.setattr(b.host.folder_paths, "get_filename_list",
                                        _without_raft(b.host.folder_paths.get_filename_list))),
    Case("clip-empty-prompt", CLIP, "prompt", "an empty prompt",
         r"^prompt: the CLIP score needs the text the video was generated from",
         metric("StreamingT2VCLIPScore", prompt="  ")),
    Case("clip-nan", CLIP, "images", "NaN in frames 3 and 5",
         r"^images: frames 3, 5 of 20 hold NaN or inf values .*CLIP", metric("StreamingT2VCLIPScore",
                                                                            images=nan_frames())),
    Case("drift-one-chunk", DRIFT, "images", "12 frames (one chunk)",
         r"^images: .*at least 2 chunks", metric("StreamingT2VDriftSeams", frames=12)),
    Case("drift-one-frame", DRIFT, "images", "a single frame",
         r"^images: .*at least 2 chunks", metric("StreamingT2VDriftSeams", frames=1)),
    Case("drift-nan-anchor", DRIFT, "images", "NaN in every frame of the anchor chunk",
         r"^images: every frame of the anchor chunk \(frames 0..15\) holds NaN",
         metric("StreamingT2VDriftSeams", frames=32, images=lambda api, b: spoiled(
             api, ["e", 0], "nan", ",".join(str(i) for i in range(16))))),
    Case("drift-nan-frames", DRIFT, "images", "NaN in frames 20 and 21",
         r"NaN", metric("StreamingT2VDriftSeams", frames=32, images=lambda api, b: spoiled(
             api, ["e", 0], "nan", "20,21")), outcome="note", read=ui_line("n", "NaN")),
    Case("drift-255", DRIFT, "images", "0..255 values instead of [0, 1]",
         r"^images: expected an IMAGE with values in \[0, 1\], got values from .* \(this looks like 0\.\.255",
         metric("StreamingT2VDriftSeams", frames=32, images=lambda api, b: spoiled(api, ["e", 0], "scale",
                                                                                  factor=255.0))),
    # Load Run, windows, plan
    Case("load-run-missing", LOAD_RUN, "run", "a run name that does not exist",
         r"^run: run 'no-such-run': no such run in <ComfyUI>/output/StreamingT2V/runs", load_run(run="no-such-run")),
    Case("windows-overlap", WINDOWS, "overlap", "overlap 8 with chunk 8",
         r"^overlap must be an integer in \[0, chunk - 1\]", windows_node(overlap=8)),
    Case("plan-overlap", PLAN, "refine_overlap", "refine_overlap 24 with refine_chunk 24",
         r"^refine_overlap: ", frame_plan(refine_overlap=24)),
]


def _without_raft(original):
    return _only_raft(original)


def _only_raft(original, *names: str):
    """models/raft as if it held only ``names``."""
    return lambda folder, *a, **k: list(names) if folder == "raft" else original(folder, *a, **k)


# --------------------------------------------------------------------------------------------------------------------
# Running the cases
# --------------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Seen:
    text: str  # the whole user-facing text
    first_line: str  # normalised for the table
    exception_type: str | None
    guider_calls: int


_SEEN: dict[str, Seen] = {}
_GROUP_RUNS: dict[str, tuple[Any, Any, str | None, int]] = {}


def _normalise(text: str, host) -> str:
    """The text as the table shows it: the test's temporary ComfyUI folder as <ComfyUI>, and overflowed values
    (1.57e+37: how far an overflow goes differs between machines and thread counts) as <overflowed value>."""
    text = text.replace(str(host.base_dir), "<ComfyUI>")
    text = re.sub(r"\b\d(\.\d+)?e\+\d+\b", "<overflowed value>", text)
    return re.sub(r"\s+", " ", text).strip()


def run_case(case: Case, b: Bench) -> Seen:
    if case.id in _SEEN:
        return _SEEN[case.id]
    if case.group in _GROUP_RUNS:
        error, outputs, exception_type, calls = _GROUP_RUNS[case.group]
    else:
        b.guider_calls[0] = 0
        error, outputs, exception_type = None, None, None
        with pytest.MonkeyPatch.context() as mp:
            if case.patch is not None:
                case.patch(mp, b)
            try:
                outputs = b.host.run_prompt(case.build(b))
            except PromptExecutionError as err:
                error, exception_type = err, err.exception_type
            except PromptValidationError as err:
                error, exception_type = err, "PromptValidationError"
        calls = b.guider_calls[0]
        if case.group is not None:
            _GROUP_RUNS[case.group] = (error, outputs, exception_type, calls)
    if error is not None:
        text = str(error)
        if isinstance(error, PromptExecutionError):
            text = text.split(f"{error.exception_type}: ", 1)[-1]  # what the node raised, without the host's prefix
        else:
            text = text.splitlines()[-1]  # the node's line of the host's validation report
    else:
        assert case.read is not None, f"{case.id}: the prompt ran, but the case expects an error"
        text = case.read(outputs, b.host)
    first = _normalise(text.splitlines()[0] if text.strip() else text, b.host)
    seen = Seen(text, first, exception_type, calls)
    _SEEN[case.id] = seen
    return seen


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_a_clear_answer(case: Case, bench):
    seen = run_case(case, bench)
    assert "Traceback" not in seen.text, seen.text
    assert re.search(case.expect, seen.first_line), f"{case.id}: expected /{case.expect}/, the user sees:\n{seen.text}"
    assert case.input in seen.text, f"{case.id}: the text does not name the input {case.input!r}: {seen.text}"
    if case.outcome in ("refused", "stopped"):
        assert str(seen.exception_type).rsplit(".", 1)[-1] in OUR_ERRORS, f"{case.id}: {seen.exception_type}: {seen.text}"
    if case.outcome == "refused":
        assert seen.guider_calls == 0, f"{case.id}: refused only after sampling ({seen.guider_calls} runs)"
    elif case.outcome == "stopped":
        assert seen.guider_calls == 1, f"{case.id}: expected to stop in the first sampling run"
    elif case.outcome == "host":
        assert seen.exception_type == "PromptValidationError"
    else:
        assert seen.exception_type is None


def test_the_case_list_covers_enough_ground():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.outcome for c in CASES} >= {"refused", "stopped", "note", "fallback", "defined", "host"}


def test_a_checkpoint_that_would_run_code_is_refused_without_unsafe_advice(bench):
    """The refusal names the global, says why, and what to use instead; never PyTorch's advice to turn
    weights_only off (which would run the code)."""
    seen = run_case(next(c for c in CASES if c.id == "loader-code"), bench)
    assert "system" in seen.text and "safetensors" in seen.text, seen.text
    assert "weights_only" not in seen.text.replace("weights_only=True", ""), seen.text


def test_extend_overflow_keeps_what_was_finished(bench):
    """The chunk that went NaN was not stored; the first chunk was (a later queue resumes from chunk 1)."""
    run_case(next(c for c in CASES if c.id == "extend-overflow"), bench)
    from test_run_store_nodes import store_of

    run = store_of(bench.host).open("bad-inputs-overflow")
    assert [r.index for r in run.manifest().timeline_records()] == [0]


def test_a_static_video_has_mawe_zero_and_a_flickering_one_says_why_it_is_inf(bench):
    outputs = bench.host.run_prompt(metric("StreamingT2VMAWE")(bench))
    mawe, robust, flow, series, _ = outputs["n"]
    assert mawe == 0.0 and robust == 0.0 and flow == "opencv_dis_medium"
    assert not any(math.isnan(v) for v in series["values"])
    # Two colours alternating without motion: warp error > 0 over 0 motion -> inf, with a note saying why.
    flicker = metric("StreamingT2VMAWE", images=lambda api, b: spoiled(api, ["e", 0], "scale", "1,3,5,7,9", 0.5))
    mawe, robust, _, _, _ = bench.host.run_prompt(flicker(bench))["n"]
    assert math.isinf(mawe) and math.isinf(robust)
    assert "change without any motion" in "\n".join(bench.host.ui_outputs()["n"]["text"])


def test_nan_from_the_image_encoder_is_named(comfy_host, bench):
    """A CLIP vision model giving NaN for a finite anchor is refused before sampling, naming clip_vision."""
    extend_node = comfy_host.node_class("StreamingT2VExtend")

    class NaNVision:
        def encode_image(self, images, crop=True):
            return {"image_embeds": torch.full((images.shape[0], 1024), float("nan"))}

    api = extend_graph()
    bench.guider_calls[0] = 0
    outputs = comfy_host.run_prompt({k: api[k] for k in ("1", "3", "5", "6", "7")}, outputs=["5", "6", "7", "3"])
    with pytest.raises(ValueError, match=r"^clip_vision: gave NaN or inf embeddings for the anchor frame"):
        extend_node.execute(model=outputs["5"][0], positive=outputs["6"][0], negative=outputs["7"][0],
                            clip_vision=NaNVision(), vae=outputs["3"][0], first_chunk=torch.rand(16, SIZE, SIZE, 3),
                            total_frames=24, seed=0, steps=1, cfg=7.5, sampler_name="ddpm",
                            scheduler="ddim_uniform", width=SIZE, height=SIZE, disk_cache=False)
    assert bench.guider_calls[0] == 0


def test_a_schedule_encodes_only_the_entries_chunks_use_once_each(bench):
    """24 entries on a 24-frame video: chunk 1 (new frames 16..23) uses entry 16 only, so that one is encoded, once
    (the first chunk is given and needs none); every entry was encoded before."""
    run_case(next(c for c in CASES if c.id == "extend-schedule-many"), bench)
    assert ENCODED == [LONG_PROMPT.strip()]
    info = _GROUP_RUNS["extend-notes-2"][1]["9"][1]
    assert f"prompt schedule: 16: {LONG_PROMPT.strip()} (the entries chunks use, of 24)" in info.splitlines(), info


def test_mismatched_model_inputs_are_refused_before_the_host_sampler(bench, monkeypatch):
    """The wrong-width text, VAE and image encoder never reach comfy.sample.sample (counted directly, besides the
    guider count every refused case checks)."""
    import comfy.sample

    calls = []
    original = comfy.sample.sample
    monkeypatch.setattr(comfy.sample, "sample", lambda *a, **k: calls.append(1) or original(*a, **k))
    ids = ["initial-sd15-text", "initial-no-tokens", "initial-vae-16ch", "extend-sdxl-text", "extend-vae-16ch",
           "extend-clip-vision-vit-l", "extend-gray-first-chunk"]
    for case in (c for c in CASES if c.id in ids):
        _SEEN.pop(case.id, None)
        seen = run_case(case, bench)
        assert seen.exception_type == "ValueError" and re.search(case.expect, seen.first_line), seen.text
    assert calls == []


def test_the_tests_the_table_refers_to_exist():
    from scripts.reliability_table import ALSO_COVERED

    refs = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", ALSO_COVERED)
    assert len(refs) >= 8
    for path, name in refs:
        source = (REPO_ROOT / path).read_text(encoding="utf-8")
        assert not name or f"def {name}(" in source, f"{path} has no test {name}"


def test_reliability_table_is_up_to_date(bench):
    rows = [Row(c.node, c.input, c.bad, c.outcome, run_case(c, bench).first_line) for c in CASES]
    text = render(rows)
    if os.environ.get(WRITE_ENV):
        TABLE_PATH.write_text(text, encoding="utf-8")
    committed = TABLE_PATH.read_text(encoding="utf-8") if TABLE_PATH.exists() else ""
    assert committed == text, ("docs/RELIABILITY.md is not what the cases produce; regenerate it with "
                               "`.venv/bin/python scripts/reliability_table.py`")
