"""The loader's shared vocabulary: the formats, the error it raises, dtype names and what a load reports."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = [
    "FORMATS",
    "FORMAT_DESCRIPTIONS",
    "FORMAT_VERSION",
    "SAFETENSORS_DTYPES",
    "DTYPE_TO_SAFETENSORS",
    "CheckpointError",
    "parse_dtype",
    "PartInfo",
    "CheckpointInfo",
    "LoadedModel",
]


#: Checkpoint layouts we read (see the module docstring).
FORMATS = (
    "official_streaming_t2v_ckpt",
    "community_repack",
    "diffusers_unet3d",
    "ms_vid2vid_xl",
    "converted_safetensors",
    "modelscope_t2v",
)

#: What each format is, in words (``python -m streamingt2v_core inspect`` prints it next to the format's name).
FORMAT_DESCRIPTIONS = {
    "official_streaming_t2v_ckpt": "the official StreamingT2V Lightning checkpoint (streaming_t2v.ckpt)",
    "community_repack": "the community repack of the extender (unet./controlnet./resampler., VidXTend style)",
    "diffusers_unet3d": "a diffusers UNet3DConditionModel (diffusion_pytorch_model.safetensors / .bin)",
    "ms_vid2vid_xl": "the MS-Vid2Vid-XL refiner UNet in the original ModelScope naming (non_ema_0035000.pth)",
    "converted_safetensors": "a file converted by this pack (safetensors with its config in the metadata)",
    "modelscope_t2v": "the original ModelScope text-to-video release's UNet (text2video_pytorch_model.pth, UNetSD)",
}

#: Version of our converted-safetensors metadata. Bump when the key layout of a kind changes.
FORMAT_VERSION = "1"


SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_TO_SAFETENSORS = {v: k for k, v in SAFETENSORS_DTYPES.items()}

_DTYPE_NAMES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


class CheckpointError(ValueError):
    """A file that is not (or not completely) the checkpoint that was asked for.

    ``format`` is the detected format (or a description of what the file looks like), ``missing`` and
    ``unexpected`` the keys found by the strict check (in the file's own naming).
    """

    def __init__(
        self,
        message: str,
        *,
        format: str | None = None,
        missing: list[str] | None = None,
        unexpected: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.format = format
        self.missing = list(missing or [])
        self.unexpected = list(unexpected or [])


def parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``None`` / a ``torch.dtype`` / a name (``fp16``, ``bf16``, ``fp32``, ``float16`` ...) -> ``torch.dtype``."""
    if dtype is None or isinstance(dtype, torch.dtype):
        if isinstance(dtype, torch.dtype) and not dtype.is_floating_point:
            raise ValueError(f"dtype: expected a floating dtype, got {dtype}")
        return dtype
    if isinstance(dtype, str):
        name = dtype.lower().removeprefix("torch.")
        if name in _DTYPE_NAMES:
            return _DTYPE_NAMES[name]
    raise ValueError(f"dtype: expected one of fp16, bf16, fp32 (or a torch.dtype), got {dtype!r}")


@dataclass
class PartInfo:
    """Tensors of one part of a checkpoint (e.g. ``base_model``, ``cam``, ``resampler``, ``unet``)."""

    tensors: int = 0
    parameters: int = 0
    dtypes: dict[str, int] = field(default_factory=dict)  # dtype name -> tensor count

    def add(self, shape: tuple[int, ...], dtype: torch.dtype) -> None:
        self.tensors += 1
        self.parameters += math.prod(shape)
        name = str(dtype).removeprefix("torch.")
        self.dtypes[name] = self.dtypes.get(name, 0) + 1


@dataclass
class CheckpointInfo:
    """What :func:`detect_checkpoint_format` found out about a file (no tensor data read)."""

    path: str
    format: str  # one of FORMATS
    container: str  # "torch_zip" | "torch_legacy" | "safetensors"
    kind: str  # one of KINDS
    parts: dict[str, PartInfo]  # loadable parts
    skipped_parts: dict[str, int]  # parts present but not loaded -> tensor count
    config: Any  # UNet3DConfig / RefinerUNetConfig / ExtenderConfig
    config_source: str  # "metadata" | "preset:full" | "preset:tiny" | "inferred from shapes"
    metadata: dict[str, str] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)  # keys belonging to no known part (file naming)
    # Settings the file does not show and that were assumed (each a sentence naming the value and why); shown by
    # inspect, logged and put in the Model Loader's info output.
    assumptions: list[str] = field(default_factory=list)
    # Classes outside tensors and plain containers in a torch pickle, read as inert stand-ins and never run.
    foreign_objects: list[str] = field(default_factory=list)
    # A config file read beside the weights (diffusers config.json), or None.
    config_file: str | None = None

    @property
    def parameters(self) -> int:
        return sum(p.parameters for p in self.parts.values())


@dataclass
class LoadedModel:
    """Result of :func:`load_model`."""

    kind: str
    format: str
    config: Any
    model: nn.Module
    skipped_parts: dict[str, int]
    info: CheckpointInfo | None = None
