"""Checkpoint loading: detect the format of a file, check its keys strictly, build our module with its weights.

Formats read (``CheckpointInfo.format``):

``official_streaming_t2v_ckpt``
    ``streaming_t2v.ckpt``: a Lightning zip pickle ``{"state_dict": {...}, "optimizer_states": [...], ...}`` with
    prefixes ``base_model.`` / ``unet.`` (CAM) / ``resampler.`` (what we load) and ``image_encoder.`` /
    ``text_encoder.`` / ``vae.`` (skipped: ComfyUI's own loaders provide those encoders). Read with
    ``torch.load(weights_only=True, mmap=True)``: no pickled code runs, and tensors we never touch (optimizer
    moments, encoders) are never read from disk, so the 25.6 GB file needs neither 25 GB of RAM nor trust.
``community_repack``
    The VidXTend-style repack (``unet.`` = base model, ``controlnet.`` = CAM, ``resampler.``), safetensors.
``diffusers_unet3d``
    The stock ModelScope text-to-video UNet (``diffusion_pytorch_model.safetensors`` / ``.bin``, or its folder).
``ms_vid2vid_xl``
    The MS-Vid2Vid-XL UNet ``non_ema_0035000.pth`` (raw dict or under ``state_dict``), LDM names mapped by
    :mod:`.key_maps`.
``converted_safetensors``
    Our own files (:func:`save_converted`, ``python -m streamingt2v_core convert``) with metadata
    ``streamingt2v_kind``, ``streamingt2v_config`` (JSON) and ``format_version``.

Without metadata the config (full, tiny or other channel sizes) is inferred from tensor shapes. Every load checks
keys and shapes strictly; a wrong file raises :class:`CheckpointError` naming what the file looks like and what
was expected. Safetensors are read with ``safe_open`` so that only the tensors a part needs are read.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
from torch import nn

from .config import ExtenderConfig, RefinerUNetConfig, UNet3DConfig
from .key_maps import (
    LDM_TEMPORAL_CONV_NAME,
    OFFICIAL_EXTENDER_PARTS,
    OFFICIAL_SKIPPED_PARTS,
    REPACK_PREFIX_TO_OFFICIAL,
    REPACK_SKIPPED_PARTS,
    UNetKeyMap,
    UNetLayout,
    official_to_repack_key,
)

__all__ = [
    "KINDS",
    "FORMATS",
    "FORMAT_VERSION",
    "CheckpointError",
    "PartInfo",
    "CheckpointInfo",
    "LoadedModel",
    "detect_checkpoint_format",
    "load_model",
    "load_state_dict",
    "save_converted",
    "convert_checkpoint",
    "build_model",
    "default_config",
    "parse_dtype",
    "SafetensorsStreamWriter",
]

#: What a checkpoint can hold for us.
KINDS = ("base_unet3d", "extender", "refiner_unet")

#: Checkpoint layouts we read (see the module docstring).
FORMATS = (
    "official_streaming_t2v_ckpt",
    "community_repack",
    "diffusers_unet3d",
    "ms_vid2vid_xl",
    "converted_safetensors",
)

#: Version of our converted-safetensors metadata. Bump when the key layout of a kind changes.
FORMAT_VERSION = "1"

#: Which kind each format holds (diffusers_unet3d may also be read as a refiner when asked: the layout carries no
#: prediction type).
_FORMAT_KIND = {
    "official_streaming_t2v_ckpt": "extender",
    "community_repack": "extender",
    "diffusers_unet3d": "base_unet3d",
    "ms_vid2vid_xl": "refiner_unet",
}
_EXTRA_ALLOWED_KINDS = {"diffusers_unet3d": ("refiner_unet",)}

_EXPECTED_FOR_KIND = {
    "extender": "a StreamingT2V extender checkpoint: streaming_t2v.ckpt (state_dict with base_model./unet./"
    "resampler.), the community repack (unet./controlnet./resampler.) or a file converted by this pack",
    "base_unet3d": "the ModelScope text-to-video UNet3D in diffusers layout (diffusion_pytorch_model.safetensors or "
    ".bin: conv_in, down_blocks.*.temp_convs, transformer_in, ...) or a file converted by this pack",
    "refiner_unet": "the MS-Vid2Vid-XL UNet (non_ema_0035000.pth: input_blocks, middle_block, output_blocks with "
    "temopral_conv) or a file converted by this pack",
}

_SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
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
_DTYPE_TO_SAFETENSORS = {v: k for k, v in _SAFETENSORS_DTYPES.items()}

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


# --------------------------------------------------------------------------------------------------------------------
# Tensor sources: key listing, shapes and dtypes without reading tensor data
# --------------------------------------------------------------------------------------------------------------------


class _TensorSource:
    """Uniform read access to the state dict inside a file. Listing keys, shapes and dtypes reads no tensor data."""

    container: str = ""
    metadata: dict[str, str]
    # Top-level entries of a torch checkpoint other than the state dict: name -> number of tensors inside.
    extras: dict[str, int]

    def keys(self) -> list[str]:
        raise NotImplementedError

    def shape(self, key: str) -> tuple[int, ...]:
        raise NotImplementedError

    def dtype(self, key: str) -> torch.dtype:
        raise NotImplementedError

    def get(self, key: str) -> torch.Tensor:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _SafetensorsSource(_TensorSource):
    container = "safetensors"

    def __init__(self, path: Path) -> None:
        from safetensors import safe_open

        _check_safetensors_header(path)
        try:
            self._file = safe_open(str(path), framework="pt", device="cpu")
            self._keys = list(self._file.keys())
        except Exception as error:  # safetensors raises its own error types
            raise CheckpointError(
                f"{path}: not a readable safetensors file (truncated or corrupt?): {error}", format="safetensors"
            ) from error
        self.metadata = dict(self._file.metadata() or {})
        self.extras = {}
        self._slices: dict[str, Any] = {}

    def _slice(self, key: str) -> Any:
        if key not in self._slices:
            self._slices[key] = self._file.get_slice(key)
        return self._slices[key]

    def keys(self) -> list[str]:
        return list(self._keys)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._slice(key).get_shape())

    def dtype(self, key: str) -> torch.dtype:
        name = self._slice(key).get_dtype()
        if name not in _SAFETENSORS_DTYPES:
            raise CheckpointError(f"tensor {key!r} has unsupported dtype {name}")
        return _SAFETENSORS_DTYPES[name]

    def get(self, key: str) -> torch.Tensor:
        return self._file.get_tensor(key)

    def close(self) -> None:
        self._slices.clear()
        self._file = None


def _check_safetensors_header(path: Path) -> None:
    """Reject a truncated safetensors file with a clear message before safetensors' own (terser) error."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes)", format="safetensors")
        (header_len,) = struct.unpack("<Q", head)
        if 8 + header_len > size:
            raise CheckpointError(
                f"{path}: truncated safetensors file: header needs {header_len} bytes, file has {size}",
                format="safetensors",
            )
        try:
            header = json.loads(f.read(header_len))
        except ValueError as error:
            raise CheckpointError(f"{path}: corrupt safetensors header: {error}", format="safetensors") from error
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + header_len + end > size:
        raise CheckpointError(
            f"{path}: truncated safetensors file: tensor data needs {8 + header_len + end} bytes, file has {size}",
            format="safetensors",
        )


class _InertGlobal:
    """Stand-in for a class a checkpoint references outside its tensors (e.g. Lightning hyper-parameters held as
    a jsonargparse Namespace). It accepts any construction and state and runs no code of the original class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:  # for dict subclasses rebuilt with SETITEMS
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value: Any) -> None:  # for list subclasses rebuilt with APPENDS
        self.__dict__.setdefault("list", []).append(value)

    def extend(self, values: Iterable[Any]) -> None:
        self.__dict__.setdefault("list", []).extend(values)


def _torch_load_weights_only(path: Path, mmap: bool) -> Any:
    """``torch.load(weights_only=True)``; pickled globals outside torch's allow-list become :class:`_InertGlobal`."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        if "global" not in str(error).lower():
            raise
        # A Lightning checkpoint may carry hyper-parameters or callback states as arbitrary objects. We never need
        # them: replace each such global by an inert stand-in (never importing or running the original).
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        stand_ins = [(type(name.rsplit(".", 1)[-1], (_InertGlobal,), {}), name) for name in names]
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)


def _count_tensors(obj: Any, _depth: int = 0) -> int:
    """Number of tensors inside a nested container (touches no tensor data)."""
    if isinstance(obj, torch.Tensor):
        return 1
    if _depth > 20:
        return 0
    if isinstance(obj, Mapping):
        return sum(_count_tensors(v, _depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_count_tensors(v, _depth + 1) for v in obj)
    return 0


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


class _TorchSource(_TensorSource):
    def __init__(self, path: Path, zip_container: bool) -> None:
        self.container = "torch_zip" if zip_container else "torch_legacy"
        try:
            obj = _torch_load_weights_only(path, mmap=zip_container)
        except CheckpointError:
            raise
        except Exception as error:
            full_text = " ".join(str(error).split())
            # torch appends a long advice paragraph to its zip errors; keep the first sentence for the message.
            text = full_text.split(". This is")[0][:300]
            truncated_signs = ("central directory", "failed reading zip archive", "EOF", "truncated")
            if any(sign in full_text for sign in truncated_signs) or isinstance(error, EOFError):
                raise CheckpointError(
                    f"{path}: truncated or corrupt PyTorch checkpoint: the file ends early ({text})",
                    format=self.container,
                ) from error
            if zip_container and ("data.pkl" in full_text or "not in a subdirectory" in full_text):
                raise CheckpointError(
                    f"{path}: not a checkpoint: a zip archive without a PyTorch pickle (data.pkl) in it",
                    format=self.container,
                ) from error
            raise CheckpointError(
                f"{path}: could not read this PyTorch checkpoint safely (weights_only): {text}",
                format=self.container,
            ) from error
        self.metadata = {}
        self.extras = {}
        if _is_tensor_dict(obj):
            self._state: Mapping[str, torch.Tensor] = obj
            self.state_dict_location = "top level"
        elif isinstance(obj, Mapping) and _is_tensor_dict(obj.get("state_dict")):
            self._state = obj["state_dict"]
            self.state_dict_location = "state_dict"
            for name, value in obj.items():
                if name != "state_dict":
                    self.extras[str(name)] = _count_tensors(value)
        else:
            what = type(obj).__name__
            if isinstance(obj, Mapping):
                what += f" with keys {sorted(map(str, obj))[:8]}"
            raise CheckpointError(
                f"{path}: a PyTorch file, but it holds no state dict of tensors (found {what})", format=self.container
            )

    def keys(self) -> list[str]:
        return list(self._state.keys())

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._state[key].shape)

    def dtype(self, key: str) -> torch.dtype:
        return self._state[key].dtype

    def get(self, key: str) -> torch.Tensor:
        return self._state[key]

    def close(self) -> None:
        self._state = {}


_DIFFUSERS_WEIGHT_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.bin",
)


def _resolve_file(path: Path) -> Path:
    """A diffusers folder (the pipeline's or its ``unet/``) resolves to its weights file."""
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.is_dir():
        for folder in (path, path / "unet"):
            for name in _DIFFUSERS_WEIGHT_NAMES:
                if (folder / name).is_file():
                    return folder / name
        raise CheckpointError(
            f"{path}: a folder without {_DIFFUSERS_WEIGHT_NAMES[0]} (or .bin) in it or in unet/; "
            "give the checkpoint file itself"
        )
    return path


def _open_source(path: Path) -> _TensorSource:
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        return _TorchSource(path, zip_container=True)
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and header_len > 1:
            return _SafetensorsSource(path)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return _TorchSource(path, zip_container=False)  # legacy (pre-zip) torch.save / plain pickle
    raise CheckpointError(
        f"{path}: not a checkpoint: neither a safetensors file nor a PyTorch (zip or legacy pickle) file "
        f"(first bytes {head[:8]!r})"
    )


# --------------------------------------------------------------------------------------------------------------------
# Format detection
# --------------------------------------------------------------------------------------------------------------------


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


def _describe_foreign(keys: list[str], metadata: Mapping[str, str]) -> str | None:
    """A short description of a checkpoint we do not load (image models etc.), or None if it looks like ours."""
    keyset = set(keys)

    def any_prefix(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    def any_contains(text: str) -> bool:
        return any(text in k for k in keys)

    if any_prefix("model.diffusion_model."):
        if any_prefix("cross_attention_merger_") or any_contains("cross_attention_merger_input_blocks"):
            return "a StreamingSVD checkpoint (main branch, SVD-based), which this pack does not run"
        if any_contains("time_stack") or any_contains("time_mixer"):
            return "a Stable Video Diffusion checkpoint (model.diffusion_model.* with time_stack layers)"
        if any_prefix("model.diffusion_model.label_emb.") or any_prefix("conditioner.embedders.1."):
            return "a 2-D image-model checkpoint: Stable Diffusion XL (model.diffusion_model.* keys with label_emb)"
        if any_prefix("cond_stage_model.model."):
            return "a 2-D image-model checkpoint: Stable Diffusion 2.x (model.diffusion_model.* keys, OpenCLIP text)"
        return "a 2-D image-model checkpoint: Stable Diffusion 1.x-style LDM (model.diffusion_model.* keys)"
    if "conv_in.weight" in keyset and any_prefix("down_blocks.") and not any_contains("temp_convs"):
        if any_prefix("add_embedding."):
            return "a 2-D image model: diffusers UNet2DConditionModel (SDXL-style, no temporal layers)"
        return "a 2-D image model: diffusers UNet2DConditionModel (e.g. Stable Diffusion; no temp_convs/transformer_in)"
    if any_prefix("input_blocks.") and not any_contains(LDM_TEMPORAL_CONV_NAME):
        if any_prefix("label_emb."):
            return "a 2-D image model: an SDXL UNet in LDM naming (input_blocks without temporal layers)"
        return "a 2-D image model: a Stable Diffusion UNet in LDM naming (input_blocks without temporal layers)"
    if any_prefix("encoder.down.") or any_prefix("decoder.up.") or any_prefix("encoder.down_blocks."):
        return "a VAE (autoencoder) checkpoint"
    if any_prefix("text_model.") or any_prefix("transformer.resblocks.") or any_prefix("visual."):
        return "a CLIP text/vision encoder checkpoint"
    return None


def _classify(keys: list[str], metadata: Mapping[str, str]) -> tuple[str | None, str]:
    """(format or None, description)."""
    if "streamingt2v_kind" in metadata:
        return "converted_safetensors", f"a file converted by this pack (kind={metadata['streamingt2v_kind']})"
    foreign = _describe_foreign(keys, metadata)
    prefixes = {k.split(".", 1)[0] + "." for k in keys}
    if "base_model." in prefixes:
        return "official_streaming_t2v_ckpt", "the official StreamingT2V checkpoint layout (base_model./unet./...)"
    if "controlnet." in prefixes and ("unet." in prefixes or "resampler." in prefixes):
        return "community_repack", "the community repack layout (unet./controlnet./resampler.)"
    if any(k.startswith("input_blocks.") for k in keys) and any(LDM_TEMPORAL_CONV_NAME in k for k in keys):
        return "ms_vid2vid_xl", "the MS-Vid2Vid-XL UNet (LDM naming with temopral_conv)"
    if foreign is None and "conv_in.weight" in keys and any("temp_convs" in k for k in keys):
        return "diffusers_unet3d", "a ModelScope UNet3D in diffusers layout"
    if foreign is None and prefixes == {"unet."} and any("temp_convs" in k for k in keys):
        return "diffusers_unet3d", "a ModelScope UNet3D in diffusers layout under a unet. prefix"
    if foreign is not None:
        return None, foreign
    sample = ", ".join(sorted(keys)[:5])
    return None, f"an unknown checkpoint ({len(keys)} tensors, e.g. {sample})"


# --------------------------------------------------------------------------------------------------------------------
# Config inference from shapes
# --------------------------------------------------------------------------------------------------------------------


def _need(shapes: Mapping[str, tuple[int, ...]], key: str, what: str) -> tuple[int, ...]:
    if key not in shapes:
        raise CheckpointError(f"cannot infer {what}: tensor {key!r} is missing", missing=[key])
    return shapes[key]


def _infer_unet_fields(shapes: Mapping[str, tuple[int, ...]], with_up: bool = True) -> dict[str, Any]:
    """UNet3DConfig fields readable from diffusers-named shapes (prefix already stripped)."""
    levels = sorted({int(k.split(".")[1]) for k in shapes if k.startswith("down_blocks.")})
    if not levels or levels != list(range(len(levels))):
        raise CheckpointError("cannot infer the UNet config: no down_blocks.N tensors", missing=["down_blocks.0.*"])
    n = len(levels)
    channels = tuple(
        _need(shapes, f"down_blocks.{i}.resnets.0.conv1.weight", "block_out_channels")[0] for i in range(n)
    )
    layers = len({k.split(".")[3] for k in shapes if k.startswith("down_blocks.0.resnets.")})
    down_types = tuple(
        "CrossAttnDownBlock3D" if any(k.startswith(f"down_blocks.{i}.attentions.") for k in shapes) else "DownBlock3D"
        for i in range(n)
    )
    fields: dict[str, Any] = {
        "block_out_channels": channels,
        "layers_per_block": layers,
        "down_block_types": down_types,
        "in_channels": _need(shapes, "conv_in.weight", "in_channels")[1],
    }
    if with_up:
        fields["up_block_types"] = tuple(
            "CrossAttnUpBlock3D" if any(k.startswith(f"up_blocks.{i}.attentions.") for k in shapes) else "UpBlock3D"
            for i in range(n)
        )
        fields["out_channels"] = _need(shapes, "conv_out.weight", "out_channels")[0]
    else:  # the CAM has no up path: mirror the encoder, as the ModelScope UNet does
        fields["up_block_types"] = tuple(
            "CrossAttnUpBlock3D" if t == "CrossAttnDownBlock3D" else "UpBlock3D" for t in reversed(down_types)
        )
    to_k = next((k for k in sorted(shapes) if k.endswith("attn2.to_k.weight") and ".attentions." in k), None)
    if to_k is not None:
        fields["cross_attention_dim"] = shapes[to_k][1]
    fields["_transformer_in_inner"] = _need(shapes, "transformer_in.proj_in.weight", "transformer_in width")[0]
    return fields


def _unet_config_from_fields(cls: type, fields: dict[str, Any], presets: Iterable[tuple[str, Any]]) -> tuple[Any, str]:
    """Pick a preset whose readable fields all match, else build a config from the fields.

    Group-norm groups and head sizes are not visible in shapes; a preset match recovers them exactly. Otherwise the
    head size is the ``transformer_in`` width over its head count (8 in ModelScope) and the groups are the largest
    of 32/16/8/4/2/1 dividing every width.
    """
    inner = fields.pop("_transformer_in_inner")
    for name, preset in presets:
        if all(getattr(preset, k) == v for k, v in fields.items()) and (
            preset.transformer_in_heads * preset.attention_head_dim == inner
        ):
            return preset, f"preset:{name}"
    base = cls.full()
    head_dim = inner // base.transformer_in_heads if inner % base.transformer_in_heads == 0 else inner
    channels = fields["block_out_channels"]
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if all(c % g == 0 for c in channels))
    try:
        config = dataclasses.replace(base, **fields, attention_head_dim=head_dim, norm_num_groups=groups)
    except ValueError as error:
        raise CheckpointError(f"the tensor shapes give no valid UNet config: {error}") from error
    return config, "inferred from shapes"


def _infer_unet_config(shapes: Mapping[str, tuple[int, ...]], cls: type) -> tuple[Any, str]:
    fields = _infer_unet_fields(shapes)
    return _unet_config_from_fields(cls, fields, (("full", cls.full()), ("tiny", cls.tiny())))


def _infer_extender_config(shapes: Mapping[str, tuple[int, ...]]) -> tuple[ExtenderConfig, str]:
    """ExtenderConfig from official-named shapes (``base_model.`` / ``unet.`` / ``resampler.``)."""
    base = {k[len("base_model."):]: v for k, v in shapes.items() if k.startswith("base_model.")}
    if not base:
        raise CheckpointError("cannot infer the extender config: no base_model.* tensors", missing=["base_model.*"])
    unet_fields = _infer_unet_fields(base)
    fields: dict[str, Any] = {}
    emb = "unet.controlnet_cond_embedding."
    conv_in = _need(shapes, emb + "conv_in.weight", "cond_embedding_channels")
    blocks = [b for b in range(0, 16) if f"{emb}blocks.{b}.weight" in shapes]
    stage_outs = [shapes[f"{emb}blocks.{b}.weight"][0] for b in blocks if b % 2 == 1]
    fields["cond_embedding_channels"] = (conv_in[0], *stage_outs)
    fields["cond_in_channels"] = conv_in[1]
    res0 = _need(shapes, "resampler.context_embedding.0.weight", "resampler size")
    res2 = _need(shapes, "resampler.context_embedding.2.weight", "resampler size")
    fields["resampler_inner_dim"], fields["image_embed_dim"] = res0[0], res0[1]
    cross = unet_fields.get("cross_attention_dim", 1024)
    fields["num_image_tokens"] = res2[0] // cross
    conv = next((v for k, v in sorted(base.items()) if k.endswith("attn2.conv.weight")), None)
    if conv is not None:
        unet_fields["text_tokens"] = conv[0]
        fields["apm_kernel_size"] = conv[2]
    presets = (("full", ExtenderConfig.full()), ("tiny", ExtenderConfig.tiny()))
    unet_presets = [(name, p.unet) for name, p in presets]
    unet_config, unet_source = _unet_config_from_fields(UNet3DConfig, dict(unet_fields), unet_presets)
    for name, preset in presets:
        if unet_source == f"preset:{name}" and all(getattr(preset, k) == v for k, v in fields.items()):
            return preset, f"preset:{name}"
    try:
        config = dataclasses.replace(
            ExtenderConfig.full(), unet=unet_config, merger_head_dim=unet_config.attention_head_dim, **fields
        )
    except ValueError as error:
        raise CheckpointError(f"the tensor shapes give no valid extender config: {error}") from error
    return config, "inferred from shapes"


def _ldm_layout_from_keys(keys: Iterable[str]) -> UNetLayout:
    """The UNet layout of an LDM-named (MS-Vid2Vid-XL) state dict, read from its input block numbering."""
    children: dict[int, set[str]] = {}
    for key in keys:
        parts = key.split(".")
        if parts[0] == "input_blocks" and len(parts) > 2:
            children.setdefault(int(parts[1]), set()).add(parts[2])
    if not children:
        raise CheckpointError("cannot infer the UNet layout: no input_blocks.* tensors", missing=["input_blocks.*"])
    downsamplers = sorted(i for i, c in children.items() if "op" in c)
    last = max(children)
    layers = (downsamplers[0] - 1) if downsamplers else last
    if layers < 1:
        raise CheckpointError("cannot infer the UNet layout from the input_blocks numbering")
    num_levels = len(downsamplers) + 1
    attention = []
    for level in range(num_levels):
        first = 1 + level * (layers + 1)
        attention.append("1" in children.get(first, set()))
    return UNetLayout(num_levels=num_levels, layers_per_block=layers, attention_levels=tuple(attention))


# --------------------------------------------------------------------------------------------------------------------
# Plans: how each key of our module is read from the file
# --------------------------------------------------------------------------------------------------------------------

_Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class _Plan:
    format: str
    kind: str
    config: Any
    config_source: str
    # our key -> (file key, reshape applied to the file tensor or None)
    entries: dict[str, tuple[str, _Transform | None]]
    parts: dict[str, PartInfo]
    skipped_parts: dict[str, int]
    unexpected: list[str]
    to_file_key: Callable[[str], str]  # our key -> its name in the file (for "missing" messages)


def _part_of_our_key(kind: str, key: str) -> str:
    if kind == "extender":
        prefix = key.split(".", 1)[0] + "."
        return OFFICIAL_EXTENDER_PARTS.get(prefix, prefix.rstrip("."))
    return "unet"


def _build_plan(source: _TensorSource, fmt: str, kind: str) -> _Plan:
    keys = source.keys()
    entries: dict[str, tuple[str, _Transform | None]] = {}
    skipped: dict[str, int] = {}
    unexpected: list[str] = []
    to_file_key: Callable[[str], str] = lambda k: k

    def skip(part: str) -> None:
        skipped[part] = skipped.get(part, 0) + 1

    if fmt == "official_streaming_t2v_ckpt":
        for key in keys:
            prefix = key.split(".", 1)[0] + "."
            if prefix in OFFICIAL_EXTENDER_PARTS:
                entries[key] = (key, None)
            elif prefix in OFFICIAL_SKIPPED_PARTS:
                skip(OFFICIAL_SKIPPED_PARTS[prefix])
            else:
                unexpected.append(key)
        config, config_source = _infer_extender_config({k: source.shape(k) for k in entries})
    elif fmt == "community_repack":
        for key in keys:
            prefix = key.split(".", 1)[0] + "."
            if prefix in REPACK_PREFIX_TO_OFFICIAL:
                entries[REPACK_PREFIX_TO_OFFICIAL[prefix] + key[len(prefix):]] = (key, None)
            elif prefix in REPACK_SKIPPED_PARTS:
                skip(REPACK_SKIPPED_PARTS[prefix])
            else:
                unexpected.append(key)
        to_file_key = official_to_repack_key
        config, config_source = _infer_extender_config({k: source.shape(v[0]) for k, v in entries.items()})
    elif fmt == "diffusers_unet3d":
        strip = "unet." if all(k.startswith("unet.") for k in keys) else ""
        for key in keys:
            entries[key[len(strip):]] = (key, None)
        to_file_key = lambda k, s=strip: s + k
        cls = RefinerUNetConfig if kind == "refiner_unet" else UNet3DConfig
        config, config_source = _infer_unet_config({k: source.shape(v[0]) for k, v in entries.items()}, cls)
    elif fmt == "ms_vid2vid_xl":
        key_map = UNetKeyMap(_ldm_layout_from_keys(keys))
        for key in keys:
            try:
                ours = key_map.ldm_to_diffusers_key(key)
            except KeyError:
                unexpected.append(key)
                continue
            transform: _Transform | None = None
            if key_map.is_conv1d_projection_ldm(key):
                transform = lambda t, k=key, m=key_map: m.ldm_to_diffusers_tensor(k, t)
            entries[ours] = (key, transform)
        to_file_key = key_map.diffusers_to_ldm_key
        shapes = {ours: _mapped_shape(source, f, t) for ours, (f, t) in entries.items()}
        config, config_source = _infer_unet_config(shapes, RefinerUNetConfig)
    elif fmt == "converted_safetensors":
        meta_kind = source.metadata.get("streamingt2v_kind", "")
        version = source.metadata.get("format_version", "")
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"converted file has format_version={version!r}; this version of the pack reads {FORMAT_VERSION!r}",
                format=fmt,
            )
        if meta_kind not in KINDS:
            raise CheckpointError(f"converted file has unknown streamingt2v_kind={meta_kind!r}", format=fmt)
        try:
            config = _config_class(meta_kind).from_dict(json.loads(source.metadata.get("streamingt2v_config", "")))
        except (ValueError, TypeError) as error:
            message = f"converted file has an unreadable streamingt2v_config: {error}"
            raise CheckpointError(message, format=fmt) from error
        config_source = "metadata"
        for key in keys:
            entries[key] = (key, None)
    else:
        raise AssertionError(fmt)

    parts: dict[str, PartInfo] = {}
    for ours, (file_key, _) in entries.items():
        parts.setdefault(_part_of_our_key(kind, ours), PartInfo()).add(source.shape(file_key), source.dtype(file_key))
    for name, count in source.extras.items():
        if count:
            skipped["optimizer" if name == "optimizer_states" else name] = count
    return _Plan(fmt, kind, config, config_source, entries, parts, skipped, unexpected, to_file_key)


def _mapped_shape(source: _TensorSource, file_key: str, transform: _Transform | None) -> tuple[int, ...]:
    shape = source.shape(file_key)
    if transform is None:
        return shape
    return tuple(transform(torch.empty(shape, device="meta")).shape)


def _config_class(kind: str) -> type:
    return {"base_unet3d": UNet3DConfig, "extender": ExtenderConfig, "refiner_unet": RefinerUNetConfig}[kind]


def _check_kind(kind: str | None) -> None:
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS} or None, got {kind!r}")


def _resolve_kind(fmt: str, requested: str | None, metadata: Mapping[str, str], path: Path, description: str) -> str:
    detected = metadata.get("streamingt2v_kind") if fmt == "converted_safetensors" else _FORMAT_KIND[fmt]
    if requested is None or requested == detected:
        return detected  # type: ignore[return-value]
    if requested in _EXTRA_ALLOWED_KINDS.get(fmt, ()):
        return requested
    raise CheckpointError(
        f"{path}: kind mismatch: kind={requested!r} was asked for ({_EXPECTED_FOR_KIND[requested]}), but this file "
        f"is {description} (format {fmt}, which holds kind={detected!r})",
        format=fmt,
    )


def _inspect(path: str | os.PathLike, kind: str | None) -> tuple[_TensorSource, _Plan, CheckpointInfo]:
    _check_kind(kind)
    file = _resolve_file(Path(path))
    source = _open_source(file)
    try:
        keys = source.keys()
        fmt, description = _classify(keys, source.metadata)
        if fmt is None:
            expected = _EXPECTED_FOR_KIND[kind] if kind else "one of: " + "; ".join(_EXPECTED_FOR_KIND.values())
            raise CheckpointError(f"{file}: this looks like {description}; expected {expected}", format=description)
        resolved = _resolve_kind(fmt, kind, source.metadata, file, description)
        try:
            plan = _build_plan(source, fmt, resolved)
        except CheckpointError as error:
            raise CheckpointError(
                f"{file} (detected format {fmt}): {error}",
                format=fmt,
                missing=error.missing,
                unexpected=error.unexpected,
            ) from error
    except BaseException:
        source.close()
        raise
    info = CheckpointInfo(
        path=str(file),
        format=fmt,
        container=source.container,
        kind=resolved,
        parts=plan.parts,
        skipped_parts=dict(plan.skipped_parts),
        config=plan.config,
        config_source=plan.config_source,
        metadata=dict(source.metadata),
        unexpected=list(plan.unexpected),
    )
    return source, plan, info


def detect_checkpoint_format(path: str | os.PathLike, kind: str | None = None) -> CheckpointInfo:
    """Identify a checkpoint file (or diffusers folder) without reading tensor data.

    Args:
        path: the file (``.ckpt``, ``.pth``, ``.bin``, ``.safetensors``) or a diffusers folder.
        kind: if given, the kind the caller needs; a file of another kind raises :class:`CheckpointError`.

    Returns:
        :class:`CheckpointInfo` with format, container, kind, parts (tensor/parameter counts and dtypes), skipped
        parts and the config (from metadata or inferred from shapes).

    Raises:
        CheckpointError: not a checkpoint, truncated, or not one of our formats (the message says what it looks
        like and what was expected).
    """
    source, _, info = _inspect(path, kind)
    source.close()
    return info


# --------------------------------------------------------------------------------------------------------------------
# Building and loading
# --------------------------------------------------------------------------------------------------------------------


def default_config(kind: str, preset: str = "full") -> Any:
    """The ``full`` or ``tiny`` config of a kind."""
    _check_kind(kind)
    if kind is None:
        raise ValueError("kind: expected one of " + ", ".join(KINDS))
    if preset not in ("full", "tiny"):
        raise ValueError(f"preset: expected 'full' or 'tiny', got {preset!r}")
    return getattr(_config_class(kind), preset)()


def build_model(kind: str, config: Any, device: torch.device | str | None = None) -> nn.Module:
    """Our module for a kind (randomly initialised; on ``device``, e.g. ``"meta"`` to count without memory)."""
    _check_kind(kind)
    if kind == "extender":
        from .extender import StreamingT2VExtender

        factory: Callable[[Any], nn.Module] = StreamingT2VExtender
    else:
        from .unet3d import UNet3D

        factory = UNet3D
    if device is None:
        return factory(config)
    with torch.device(device):
        return factory(config)


def _strict_check(plan: _Plan, source: _TensorSource, path: str, meta_model: nn.Module | None = None) -> nn.Module:
    """Compare the file's keys and shapes with our module's; returns the meta-device module it built."""
    if meta_model is None:
        meta_model = build_model(plan.kind, plan.config, device="meta")
    expected = {k: tuple(v.shape) for k, v in meta_model.state_dict().items()}
    missing = [plan.to_file_key(k) for k in sorted(set(expected) - set(plan.entries))]
    unexpected = sorted(plan.unexpected) + sorted(plan.entries[k][0] for k in set(plan.entries) - set(expected))
    mismatched = []
    for key in sorted(set(expected) & set(plan.entries)):
        file_key, transform = plan.entries[key]
        shape = _mapped_shape(source, file_key, transform)
        if shape != expected[key]:
            mismatched.append(f"{file_key}: file {list(source.shape(file_key))}, expected {list(expected[key])}")
    if missing or unexpected or mismatched:
        lines = [
            f"{path}: detected format {plan.format} (kind {plan.kind}, config {plan.config_source}), "
            f"but its keys do not match: {len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(mismatched)} with a wrong shape"
        ]
        if missing:
            lines.append("first missing keys: " + ", ".join(missing[:8]))
        if unexpected:
            lines.append("first unexpected keys: " + ", ".join(unexpected[:8]))
        if mismatched:
            lines.append("first shape mismatches: " + "; ".join(mismatched[:5]))
        raise CheckpointError("\n".join(lines), format=plan.format, missing=missing, unexpected=unexpected)
    return meta_model


def _iter_state(plan: _Plan, source: _TensorSource, dtype: torch.dtype | None) -> Iterator[tuple[str, torch.Tensor]]:
    """Our (key, tensor) pairs, read and converted one tensor at a time."""
    for key in sorted(plan.entries):
        file_key, transform = plan.entries[key]
        tensor = source.get(file_key)
        if transform is not None:
            tensor = transform(tensor)
        if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
            tensor = tensor.to(dtype)
        yield key, tensor


def _file_dtype(plan: _Plan, source: _TensorSource) -> torch.dtype:
    counts: dict[torch.dtype, int] = {}
    for file_key, _ in plan.entries.values():
        dt = source.dtype(file_key)
        if dt.is_floating_point:
            counts[dt] = counts.get(dt, 0) + 1
    return max(counts, key=counts.get) if counts else torch.float32  # type: ignore[arg-type]


def _load_checked(
    path: str | os.PathLike, kind: str | None, dtype: torch.dtype | str | None
) -> tuple[dict[str, torch.Tensor], CheckpointInfo, nn.Module]:
    dtype = parse_dtype(dtype)
    source, plan, info = _inspect(path, kind)
    try:
        meta_model = _strict_check(plan, source, info.path)
        target = dtype or _file_dtype(plan, source)
        return dict(_iter_state(plan, source, target)), info, meta_model
    finally:
        source.close()


def load_state_dict(
    path: str | os.PathLike, kind: str | None = None, dtype: torch.dtype | str | None = None
) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """The strictly checked state dict of our module (our key names), and the file's :class:`CheckpointInfo`.

    Tensors from a zip ``.ckpt``/``.pth`` stay memory-mapped when no dtype conversion is needed.
    """
    state, info, _ = _load_checked(path, kind, dtype)
    return state, info


def load_model(
    path: str | os.PathLike,
    kind: str | None = None,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str = "cpu",
) -> LoadedModel:
    """Load a checkpoint of any supported format into our module.

    Args:
        path: checkpoint file or diffusers folder.
        kind: ``"base_unet3d"``, ``"extender"``, ``"refiner_unet"`` or None (take what the file holds).
        dtype: weight dtype (``torch.float16``, ``"bf16"``...); None keeps the file's dtype.
        device: where the module ends up.

    The module is built on the meta device and receives the file's tensors directly (``assign=True``), so no
    random initialisation runs and no second copy of the weights exists. Skipped parts (encoders, optimizer
    states) are counted in ``skipped_parts`` and never read.

    Raises:
        CheckpointError: wrong, truncated or foreign file, kind mismatch, or keys/shapes that do not match.
    """
    state, info, model = _load_checked(path, kind, dtype)
    model.load_state_dict(state, strict=True, assign=True)
    leftover = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftover:
        # A module with non-persistent buffers cannot be filled from a state dict alone: build it for real.
        model = build_model(info.kind, info.config)
        model.load_state_dict(state, strict=True)
        floating = [t.dtype for t in state.values() if t.is_floating_point()]
        if floating:
            model.to(floating[0])
    del state
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    return LoadedModel(
        kind=info.kind,
        format=info.format,
        config=info.config,
        model=model,
        skipped_parts=dict(info.skipped_parts),
        info=info,
    )


# --------------------------------------------------------------------------------------------------------------------
# Writing our converted safetensors (streaming: one tensor in memory at a time)
# --------------------------------------------------------------------------------------------------------------------


class SafetensorsStreamWriter:
    """Write a safetensors file tensor by tensor.

    The header (names, dtypes, shapes, offsets) is written first from ``specs``; :meth:`write` then appends each
    tensor's bytes in the same order, so the caller never holds more than one tensor. The result is an ordinary
    safetensors file.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        specs: list[tuple[str, tuple[int, ...], torch.dtype]],
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        header: dict[str, Any] = {}
        if metadata:
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        offset = 0
        self._order: list[tuple[str, tuple[int, ...], torch.dtype, int]] = []
        for name, shape, dtype in specs:
            if dtype not in _DTYPE_TO_SAFETENSORS:
                raise ValueError(f"specs: tensor {name!r} has unsupported dtype {dtype}")
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            header[name] = {
                "dtype": _DTYPE_TO_SAFETENSORS[dtype],
                "shape": list(shape),
                "data_offsets": [offset, offset + nbytes],
            }
            self._order.append((name, tuple(shape), dtype, nbytes))
            offset += nbytes
        encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
        encoded += b" " * (-len(encoded) % 8)
        self._path = Path(path)
        self._tmp = self._path.with_name(self._path.name + ".partial")
        self._file = open(self._tmp, "wb")
        self._file.write(struct.pack("<Q", len(encoded)))
        self._file.write(encoded)
        self._next = 0

    def write(self, name: str, tensor: torch.Tensor) -> None:
        if self._next >= len(self._order):
            raise ValueError(f"name: all tensors already written, got {name!r}")
        expected_name, shape, dtype, nbytes = self._order[self._next]
        if name != expected_name or tuple(tensor.shape) != shape or tensor.dtype != dtype:
            raise ValueError(
                f"tensor: expected {expected_name} {list(shape)} {dtype}, got {name} {list(tensor.shape)} "
                f"{tensor.dtype}"
            )
        data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        if data.numel() != nbytes:
            raise AssertionError("byte count mismatch")
        if nbytes:
            self._file.write(memoryview(data.numpy()))
        self._next += 1

    def close(self) -> None:
        if self._file.closed:
            return
        complete = self._next == len(self._order)
        self._file.close()
        if not complete:
            self._tmp.unlink(missing_ok=True)
            raise ValueError(f"only {self._next} of {len(self._order)} tensors were written; file discarded")
        os.replace(self._tmp, self._path)

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "SafetensorsStreamWriter":
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()


def _converted_metadata(kind: str, config: Any) -> dict[str, str]:
    return {
        "streamingt2v_kind": kind,
        "streamingt2v_config": json.dumps(config.to_dict(), sort_keys=True),
        "format_version": FORMAT_VERSION,
    }


def save_converted(
    model_or_state: nn.Module | Mapping[str, torch.Tensor],
    kind: str,
    config: Any,
    path: str | os.PathLike,
    dtype: torch.dtype | str | None = None,
) -> Path:
    """Save our module's weights as safetensors with the metadata :func:`load_model` reads back.

    Args:
        model_or_state: our module, or its ``state_dict()`` (our key names).
        kind: one of :data:`KINDS`.
        config: the module's config (stored as JSON).
        path: output ``.safetensors`` path.
        dtype: convert floating tensors to this dtype (None keeps each tensor's dtype).
    """
    _check_kind(kind)
    if kind is None:
        raise ValueError("kind: expected one of " + ", ".join(KINDS))
    if not isinstance(config, _config_class(kind)):
        expected = _config_class(kind).__name__
        raise ValueError(f"config: expected a {expected} for kind={kind}, got {type(config).__name__}")
    target = parse_dtype(dtype)
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state

    def out_dtype(t: torch.Tensor) -> torch.dtype:
        return target if (target is not None and t.is_floating_point()) else t.dtype

    names = sorted(state)
    specs = [(k, tuple(state[k].shape), out_dtype(state[k])) for k in names]
    with SafetensorsStreamWriter(path, specs, _converted_metadata(kind, config)) as writer:
        for k in names:
            writer.write(k, state[k].to(out_dtype(state[k])))
    return Path(path)


def convert_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    dtype: torch.dtype | str | None = None,
    kind: str | None = None,
) -> CheckpointInfo:
    """Convert any supported checkpoint into our safetensors (strict key check first; streams tensor by tensor).

    Only the parts the pack needs are read; the source stays memory-mapped (``.ckpt``/``.pth``) or is read one
    tensor at a time (safetensors), and only one converted tensor is in memory at a time.
    """
    target = parse_dtype(dtype)
    source, plan, info = _inspect(src, kind)
    try:
        if Path(dst).resolve() == Path(info.path).resolve():
            raise ValueError("dst: must differ from the source file")
        _strict_check(plan, source, info.path)
        names = sorted(plan.entries)

        def out_dtype(key: str) -> torch.dtype:
            dt = source.dtype(plan.entries[key][0])
            return target if (target is not None and dt.is_floating_point) else dt

        specs = [(k, _mapped_shape(source, *plan.entries[k]), out_dtype(k)) for k in names]
        with SafetensorsStreamWriter(dst, specs, _converted_metadata(plan.kind, plan.config)) as writer:
            for key, tensor in _iter_state(plan, source, target):
                writer.write(key, tensor)
                del tensor
    finally:
        source.close()
    return info
