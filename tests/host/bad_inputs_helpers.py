"""Shared machinery of the tests/host/test_bad_inputs_*.py modules (not a test module): bad inputs and faults
through the real host, one prompt per case; docs/RELIABILITY.md is generated from them.

Every case is a prompt the host validates and executes (`run_prompt`): tiny random UNets, the host's own
encoders, 64x64 frames, one sampling step. A case says which node and input it is about, what is wrong, and what the
user must see (a regex); the test records what the user actually sees (the first line of the error, or the note in
the node's output) and checks:

* refusals are our own errors (no Traceback, no bare torch error), name the input, and come before any sampling
  (the host's CFG guider never ran);
* a fault during sampling stops at the step or chunk it happened in, naming it;
* notes and fallbacks are in the node's output, never silent.

Each node's cases live in its own module (test_bad_inputs_loaders, _initial_chunk, _extend, _refine, _metrics,
_runs_plans); test_bad_inputs_table gathers them all for docs/RELIABILITY.md (regenerate:
`.venv/bin/python scripts/reliability_table.py`).

Bad values come from real files (a damaged VAE, NaN weights, weights beyond fp16, a UNet whose output overflows, a
junk RAFT file) and, where no host node can make them (NaN frames, NaN text embeddings), from two test-only nodes
standing in for a broken upstream node. A module that uses `bench` imports it from here (a module-scoped fixture:
each module writes the files and registers the nodes itself, so it passes alone).
"""
from __future__ import annotations

import dataclasses
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


def little_ram(mp: pytest.MonkeyPatch, b: Bench) -> None:
    """A machine with 1 GiB available (deterministic messages)."""
    import streamingt2v_core.runs.memory as memory

    mp.setattr(memory, "available_ram_bytes", lambda: 1 << 30)


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


#: The node column of the table (docs/RELIABILITY.md).
MODEL_LOADER, INITIAL, EXTEND, REFINE = ("Model Loader", "Initial Chunk", "Extend", "Refine")
SCUTS, MAWE, CLIP, DRIFT = "SCuts", "MAWE", "CLIP Score", "Drift & Seams"
LOAD_RUN, WINDOWS, PLAN = "Load Run", "Randomized Blending Windows", "Frame Plan"


# --------------------------------------------------------------------------------------------------------------------
# Running the cases
# --------------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Seen:
    text: str  # the whole user-facing text
    first_line: str  # normalised for the table
    exception_type: str | None
    guider_calls: int


#: What each case showed, for the whole session: the table (test_bad_inputs_table) reuses what the node modules
#: recorded rather than running every prompt twice.
_SEEN: dict[str, Seen] = {}
_GROUP_RUNS: dict[str, tuple[Any, Any, str | None, int]] = {}

#: What the pack's encode_text was asked to encode in the EXTEND_NOTES_2 run (its patch counts). Here, not in
#: test_bad_inputs_extend, so that there is one list however often that module is imported (test_bad_inputs_table
#: imports its cases) and whichever module runs the group first.
ENCODED: list[str] = []


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


def check_case(case: Case, b: Bench) -> None:
    """What every bad-input case must show: no traceback; a first line that matches and names the input; our error
    type; and where it was caught (before any sampling, in the first sampling run, by the host, or not at all)."""
    seen = run_case(case, b)
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
