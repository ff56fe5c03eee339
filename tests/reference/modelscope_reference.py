"""The reference implementations our models and refiner are compared with: files of the PyPI ``modelscope`` package.

``modelscope`` (a test-only dependency, pinned in ``pyproject.toml``) ships the original code of the two ModelScope
models this pack re-implements:

* ``models/multi_modal/video_to_video/``: MS-Vid2Vid-XL, the StreamingT2V refiner: ``modules/unet_v2v.py``
  (``Vid2VidSDUNet``) and ``utils/schedules_sdedit.py`` / ``diffusion_sdedit.py`` / ``solvers_sdedit.py`` (the noise
  schedule, the SDEdit sampler and DPM-Solver++(2M) SDE);
* ``models/multi_modal/video_synthesis/unet_sd.py``: ``UNetSD``, the original ModelScope text-to-video UNet (the
  layout of ``text2video_pytorch_model.pth``).

The package's own ``__init__`` pulls in its whole model zoo (and datasets/transformers at import time), so the files
are loaded by path into private package names, never through ``import modelscope``. Their optional GPU imports get
small test shims while they load, and the shims are removed from ``sys.modules`` again afterwards so nothing else in
the test process (e.g. the ComfyUI host, which probes for xformers) ever sees them:

* ``xformers.ops.memory_efficient_attention(q, k, v)``: exact softmax attention with scale ``1/sqrt(head_dim)``
  (what xformers computes, up to float rounding), through ``torch.nn.functional.scaled_dot_product_attention``;
* ``fairscale.nn.checkpoint.checkpoint_wrapper``: the identity (gradient checkpointing changes no values);
* ``rotary_embedding_torch.RotaryEmbedding``: refuses to be used (the refiner runs with temporal transformers,
  ``USE_TEMPORAL_TRANSFORMER = True``, which take no rotary embedding).
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

#: The pinned version the tests were written against (see pyproject's test extras).
MODELSCOPE_VERSION = "1.40.2"

_LOADED: dict[str, types.ModuleType] = {}


def modelscope_root() -> Path:
    """Folder of the installed ``modelscope`` package (found without running its ``__init__``); skips if absent."""
    spec = importlib.util.find_spec("modelscope")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("modelscope is not installed (pip install -e .[test])")
    return Path(list(spec.submodule_search_locations)[0])


def _memory_efficient_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_bias: Any = None,
                                op: Any = None, **_: Any) -> torch.Tensor:
    if attn_bias is not None:
        raise NotImplementedError("test shim of xformers: attn_bias is not supported")
    # xformers takes [B, M, K] (or [B, M, H, K]); SDPA wants the sequence second to last in both cases.
    if q.dim() == 4:
        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v)


class _NoRotaryEmbedding:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("test shim: RotaryEmbedding is only used without temporal transformers")


def _shim_modules() -> dict[str, types.ModuleType]:
    xformers = types.ModuleType("xformers")
    xformers_ops = types.ModuleType("xformers.ops")
    xformers_ops.memory_efficient_attention = _memory_efficient_attention
    xformers.ops = xformers_ops
    fairscale = types.ModuleType("fairscale")
    fairscale_nn = types.ModuleType("fairscale.nn")
    fairscale_checkpoint = types.ModuleType("fairscale.nn.checkpoint")
    fairscale_checkpoint.checkpoint_wrapper = lambda module, *args, **kwargs: module
    fairscale.nn = fairscale_nn
    fairscale_nn.checkpoint = fairscale_checkpoint
    rotary = types.ModuleType("rotary_embedding_torch")
    rotary.RotaryEmbedding = _NoRotaryEmbedding
    return {
        "xformers": xformers,
        "xformers.ops": xformers_ops,
        "fairscale": fairscale,
        "fairscale.nn": fairscale_nn,
        "fairscale.nn.checkpoint": fairscale_checkpoint,
        "rotary_embedding_torch": rotary,
    }


def _package(name: str, folder: Path) -> None:
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        sys.modules[name] = package


def load_reference(relative: str) -> types.ModuleType:
    """Load ``modelscope/<relative>.py`` by path (cached), with the shims present only while it executes.

    The file becomes a module of a private package named after its folder, so its relative imports
    (``from .schedules_sdedit import ...``) resolve to the sibling files, also loaded by path.
    """
    if relative in _LOADED:
        return _LOADED[relative]
    root = modelscope_root()
    path = root / (relative + ".py")
    if not path.is_file():
        pytest.fail(f"modelscope {MODELSCOPE_VERSION}: {path} is missing; the pinned version ships it")
    package = "_modelscope_reference." + relative.rsplit("/", 1)[0].replace("/", ".")
    parts = package.split(".")
    for i in range(1, len(parts) + 1):
        _package(".".join(parts[:i]), root.joinpath(*parts[1:i]) if i > 1 else root)
    name = f"{package}.{Path(relative).name}"
    shims = _shim_modules()
    saved = {key: sys.modules.get(key) for key in shims}
    sys.modules.update(shims)
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    finally:
        for key, previous in saved.items():
            if previous is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = previous
    _LOADED[relative] = module
    return module


def vid2vid_unet_module() -> types.ModuleType:
    """``modelscope/models/multi_modal/video_to_video/modules/unet_v2v.py`` (``Vid2VidSDUNet``)."""
    return load_reference("models/multi_modal/video_to_video/modules/unet_v2v")


def sdedit_modules() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    """(``schedules_sdedit``, ``diffusion_sdedit``, ``solvers_sdedit``) of MS-Vid2Vid-XL."""
    base = "models/multi_modal/video_to_video/utils/"
    schedules = load_reference(base + "schedules_sdedit")
    solvers = load_reference(base + "solvers_sdedit")
    diffusion = load_reference(base + "diffusion_sdedit")
    return schedules, diffusion, solvers


def unet_sd_module() -> types.ModuleType:
    """``modelscope/models/multi_modal/video_synthesis/unet_sd.py`` (``UNetSD``, the original T2V UNet)."""
    return load_reference("models/multi_modal/video_synthesis/unet_sd")


def randomize_(module: torch.nn.Module, seed: int) -> None:
    """Seeded random weights for every tensor, zero-initialised ones included (a zero ``out`` conv or temporal
    conv would hide a key-map mistake): matrices/kernels ~ N(0, 1/fan_in), norm scales ~ 1 + N(0, 0.02^2),
    biases ~ N(0, 0.02^2); activations stay O(1) through the whole UNet."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            values = torch.randn(tensor.shape, generator=generator)
            if tensor.dim() >= 2:
                values *= tensor[0].numel() ** -0.5
            elif name.endswith("weight"):
                values = 1.0 + 0.02 * values
            else:
                values *= 0.02
            tensor.copy_(values)


#: Tiny ``Vid2VidSDUNet`` arguments: the published structure (4 levels, 2 res blocks, attention on 3 levels, temporal
#: transformers) with 32 base channels (the original's GroupNorms have 32 groups, hard-coded) and head size 8.
TINY_VID2VID = dict(in_dim=4, dim=32, y_dim=1024, context_dim=1024, out_dim=4, dim_mult=[1, 2, 4, 4], num_heads=8,
                    head_dim=8, num_res_blocks=2, use_checkpoint=False)


def tiny_vid2vid_unet(seed: int = 0) -> torch.nn.Module:
    """A tiny MS-Vid2Vid-XL ``Vid2VidSDUNet`` in eval mode with seeded random weights in every tensor."""
    module = vid2vid_unet_module()
    torch.manual_seed(seed)
    unet = module.Vid2VidSDUNet(**TINY_VID2VID).eval()
    randomize_(unet, seed)
    return unet
